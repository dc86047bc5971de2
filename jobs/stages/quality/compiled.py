"""The suites compiled into row checks: once per inputs, reused within a process and across
processes.

Compiling asks GX for every expectation's Spark condition, tens of thousands of calls into the
JVM. A process reuses a compile for its session while the schema files, the suite files and the
suite parameters stay the same; a new process (a restarted job, the next ``make run``) loads it
from a cache file instead: the conditions as Spark serialized them, keyed by a digest of those
inputs, of the code that builds them and of the Spark and GX versions, so that any change
compiles again. The cache lives in ``$VEHICLE_JOBS_CACHE`` (default ``~/.cache/vehicle-event-
jobs``); ``VEHICLE_JOBS_CACHE=off`` turns it off. A cache that cannot be read or written is
logged and skipped, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

from pyspark.sql import Column, SparkSession

from jobs.config import Config
from jobs.stages.quality.checks import EventTypeChecks, build_checks
from jobs.stages.quality.rows import RowCheck
from jobs.stages.quality.suites import ENVELOPE_SUITE, Suite, load_suites, suite_parameters
from jobs.stages.schemas import SchemaRegistry

logger = logging.getLogger(__name__)

CACHE_ENV = "VEHICLE_JOBS_CACHE"
_CODE = Path(__file__).resolve().parent.parent  # jobs/stages: what builds the conditions
# Recent compiles by digest of their inputs: (session, registry, checks); insertion-ordered.
_compiled: dict[str, tuple[SparkSession, SchemaRegistry, dict[str, EventTypeChecks]]] = {}
_lock = threading.Lock()
COMPILES_KEPT = 4


def compiled_checks(
    spark: SparkSession, cfg: Config
) -> tuple[SchemaRegistry, dict[str, EventTypeChecks]]:
    """The schema registry and every event type's row checks, compiled from the schema and
    suite files with the configuration's suite parameters (or reused: see the module)."""
    digest = inputs_digest(cfg)
    with _lock:  # make run compiles in a thread while the fleet is sent
        hit = _compiled.get(digest)
        if hit is not None and hit[0] is spark:
            return hit[1], hit[2]
        registry = SchemaRegistry.load(cfg.quality.schemas_path)
        cache = _cache_file(spark, digest)
        checks = (
            _load(spark, cfg, registry, cache) if cache is not None and cache.is_file() else None
        )
        if checks is None:
            suites = load_suites(cfg.quality.expectations_path, suite_parameters(cfg))
            checks = build_checks(spark, registry, suites)
            if cache is not None:
                _save(spark, checks, cache)
        for key in [k for k, v in _compiled.items() if v[0] is not spark]:
            del _compiled[key]  # another session's expressions
        _compiled[digest] = (spark, registry, checks)
        while len(_compiled) > COMPILES_KEPT:
            del _compiled[next(iter(_compiled))]
        return registry, checks


def forget() -> None:
    """Forget this process's compiles: the next :func:`compiled_checks` reads the cache file
    (or compiles)."""
    with _lock:
        _compiled.clear()


def inputs_digest(cfg: Config) -> str:
    """SHA-256 over the suite parameters and every schema and suite file (path and bytes)."""
    digest = hashlib.sha256(json.dumps(suite_parameters(cfg), sort_keys=True).encode())
    for root in (Path(cfg.quality.schemas_path), Path(cfg.quality.expectations_path)):
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _cache_file(spark: SparkSession, digest: str) -> Path | None:
    """Where a compile of these inputs is kept, for this code and these versions."""
    setting = os.environ.get(CACHE_ENV, "")
    if setting.lower() == "off" or getattr(spark, "_jvm", None) is None:  # Spark Connect: no JVM
        return None
    root = Path(setting) if setting else Path.home() / ".cache" / "vehicle-event-jobs"
    key = hashlib.sha256(digest.encode())
    versions = [spark.version, *(metadata.version(p) for p in ("pyspark", "great-expectations"))]
    key.update("|".join(versions).encode())
    for path in sorted(_CODE.rglob("*.py")):
        key.update(path.read_bytes())
    return root / f"checks-{key.hexdigest()[:32]}.bin"


def _save(spark: SparkSession, checks: dict[str, EventTypeChecks], cache: Path) -> None:
    jvm: Any = spark._jvm  # type: ignore[attr-defined]
    nodes = jvm.java.util.ArrayList()
    for type_checks in checks.values():
        for check in type_checks.checks:
            for column in (check.condition, check.observed):
                nodes.add(column._jc.node())  # type: ignore[operator]  # py4j, not a Column
    try:
        buffer = jvm.java.io.ByteArrayOutputStream()
        stream = jvm.java.io.ObjectOutputStream(buffer)
        stream.writeObject(nodes)
        stream.close()
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(bytes(buffer.toByteArray()))
        partial.replace(cache)  # readers see the whole file or none
    except Exception as exc:  # a cache is an optimization: never fail the job for it
        logger.debug("compiled checks not cached at %s: %s", cache, exc)


def _load(
    spark: SparkSession, cfg: Config, registry: SchemaRegistry, cache: Path
) -> dict[str, EventTypeChecks] | None:
    """The checks of a cached compile, with the suites read without GX; None if unusable."""
    jvm: Any = spark._jvm  # type: ignore[attr-defined]
    try:
        suites = load_suites(cfg.quality.expectations_path, suite_parameters(cfg), validate=False)
        stream = jvm.java.io.ObjectInputStream(jvm.java.io.ByteArrayInputStream(cache.read_bytes()))
        nodes = stream.readObject()
        columns = [
            Column(jvm.org.apache.spark.sql.Column(nodes.get(i))) for i in range(nodes.size())
        ]
        return _assemble(registry, suites, columns)
    except Exception as exc:
        logger.warning("compiled checks at %s could not be read (%s); compiling again", cache, exc)
        return None


def _assemble(
    registry: SchemaRegistry, suites: dict[str, Suite], columns: list[Column]
) -> dict[str, EventTypeChecks]:
    """The checks in the order :func:`build_checks` made them: per event type, the envelope
    suite's rules, then the type's own; a condition and an observed value each."""
    out: dict[str, EventTypeChecks] = {}
    position = 0
    for event_type in registry.event_types():
        chosen = (suites[ENVELOPE_SUITE], suites[event_type])
        checks = []
        for rule in (r for suite in chosen for r in suite.rules):
            checks.append(RowCheck(rule, columns[position], columns[position + 1]))
            position += 2
        out[event_type] = EventTypeChecks(event_type, chosen, tuple(checks))
    if position != len(columns):
        raise ValueError(f"{len(columns)} cached expressions for {position} checks")
    return out
