"""The suites compiled into row checks, once per process for a given session and inputs.

Compiling asks GX for every expectation's Spark condition: tens of thousands of calls into the
JVM. A process that runs several queries on one session (replay after ingest, the benchmarks,
the tests) reuses a compile while the schema files, the suite files and the suite parameters
from the configuration stay the same; changing any of them compiles again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from pyspark.sql import SparkSession

from jobs.config import Config
from jobs.stages.quality.checks import EventTypeChecks, build_checks
from jobs.stages.quality.suites import load_suites, suite_parameters
from jobs.stages.schemas import SchemaRegistry

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
        suites = load_suites(cfg.quality.expectations_path, suite_parameters(cfg))
        checks = build_checks(spark, registry, suites)
        for key in [k for k, v in _compiled.items() if v[0] is not spark]:
            del _compiled[key]  # another session's expressions
        _compiled[digest] = (spark, registry, checks)
        while len(_compiled) > COMPILES_KEPT:
            del _compiled[next(iter(_compiled))]
        return registry, checks


def inputs_digest(cfg: Config) -> str:
    """SHA-256 over the suite parameters and every schema and suite file (path and bytes)."""
    digest = hashlib.sha256(json.dumps(suite_parameters(cfg), sort_keys=True).encode())
    for root in (Path(cfg.quality.schemas_path), Path(cfg.quality.expectations_path)):
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
