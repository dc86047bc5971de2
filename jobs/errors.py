"""The project's exception hierarchy.

Bad *events* are never exceptions: they become quarantine rows with reasons. These errors are for
bad configuration, bad options and conditions that must stop a job.
"""

from __future__ import annotations


class JobsError(Exception):
    """Raised when a job cannot go on; the base of every error this package raises."""

    exit_code = 1


class ConfigError(JobsError):
    """Raised when a configuration file or override is missing, malformed or inconsistent."""

    exit_code = 2


class SecretNotFoundError(ConfigError):
    """Raised when a secret is referenced by name but the environment does not provide it."""


class SchemaRegistryError(JobsError):
    """Raised when the schema files under schemas/ are missing or inconsistent."""

    exit_code = 2


class SuiteError(JobsError):
    """Raised when an expectation suite cannot be loaded or uses an unsupported expectation."""

    exit_code = 2


class SourceOptionError(JobsError):
    """Raised when a Spark source is given an unknown or malformed option."""

    exit_code = 2


class SourceError(JobsError):
    """Reading from the event source failed (unreachable, refused, or timed out)."""


class DataLossError(SourceError):
    """Events were removed by retention before the query read them (``failOnDataLoss=true``)."""


class SinkError(JobsError):
    """Raised when a table write cannot be committed."""


class QualityGateError(JobsError):
    """Raised when an expectation whose failure action is 'fail' fails, stopping the stream."""

    exit_code = 3


class SimulatorError(JobsError):
    """Raised when the fleet simulator is given impossible parameters or cannot deliver events."""

    exit_code = 2
