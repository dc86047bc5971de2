"""The ``deltars`` options, parsed and checked in this one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.errors import SourceOptionError
from jobs.options import OptionKeys

FORMAT = "deltars"

KEYS = OptionKeys(
    source=FORMAT,
    fields={
        "path": "path", "txnAppId": "txn_app_id", "txnVersion": "txn_version",
        "partitionBy": "partition_by", "mergeSchema": "merge_schema",
        "targetFileRows": "target_file_rows", "versionAsOf": "version_as_of",
        "startingVersion": "starting_version", "skipChangeCommits": "skip_change_commits",
        "endingVersion": "ending_version", "maxVersionsPerTrigger": "max_versions_per_trigger",
        "checkpointLocation": "checkpoint_location",
    },
    prefix="storage.",
)  # fmt: skip


@dataclass(frozen=True)
class DeltaRsOptions:
    """The ``deltars`` options (see :mod:`jobs.delta.source` for the table)."""

    path: str
    txn_app_id: str | None = None
    txn_version: int | None = None
    partition_by: tuple[str, ...] = ()
    merge_schema: bool = False
    target_file_rows: int = 1_000_000
    version_as_of: int | None = None
    starting_version: int = 0
    ending_version: int | None = None
    max_versions_per_trigger: int | None = None
    skip_change_commits: bool = False
    storage_options: dict[str, str] = field(default_factory=dict)
    checkpoint_location: str | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> DeltaRsOptions:
        """Parse Spark's options; raises :class:`SourceOptionError` naming the bad option."""
        raw, storage = KEYS.read(options)
        values = {name: _parse(name, key, text) for name, (key, text) in raw.items()}
        if not values.get("path"):
            raise SourceOptionError("deltars: a table path is required: .save(path) or .load(path)")
        if (values.get("txn_app_id") is None) != (values.get("txn_version") is None):
            raise SourceOptionError("deltars: txnAppId and txnVersion must be given together")
        return cls(**values, storage_options=storage)


def _parse(name: str, key: str, text: str) -> Any:
    if name in ("txn_version", "version_as_of", "starting_version", "ending_version"):
        return KEYS.integer(key, text)
    if name == "max_versions_per_trigger":
        return KEYS.integer(key, text, minimum=1)
    if name == "target_file_rows":
        return KEYS.integer(key, text, minimum=1)
    if name in ("merge_schema", "skip_change_commits"):
        return KEYS.boolean(key, text)
    if name == "partition_by":
        return KEYS.names(text)
    return text
