"""The project's JVM side: what the ingest job runs inside Spark's JVM because Python cannot do it
fast enough, compiled from the Java sources beside this file into one jar.

* ``VehicleStage`` (with ``VehicleRules``, ``VehicleState`` and ``Rows``): the
  ingest query's stateful stage (``jobs.stages.dedup``, ``jobs.stages.vehicle``), a
  ``transformWithState`` keyed by VIN whose state lives in the state store on the executors:
  deduplication, then the per-vehicle rules.
* ``Decoder`` (with ``JsonTree``): the decoder of event bodies (``jobs.stages.decode``), a SQL
  function that parses each body once.
* ``Outline`` and ``InsideOutline``: the residency test of coordinates
  (``jobs.stages.residency.expression``), a SQL function over a broadcast outline.
* ``LocalFiles``: Hadoop's local file system without a ``chmod`` or ``readlink`` process per
  checkpoint file, for sessions on a local master (``jobs.session``).

A wheel carries the jar, compiled when the wheel is built (``setup.py``); a checkout compiles it
on first use with ``javac`` against the installed pyspark's jars and caches it. Sessions this
project starts put it on Spark's classpath; ``spark-submit`` takes it with ``--jars`` and
Databricks as a jar library (``deploy/``). Standard library only: ``setup.py`` imports this file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
JAR = "vehicle-jobs-jvm.jar"


def missing(name: str) -> str:
    """What to do when a class of the jar is not on Spark's classpath."""
    return (
        f"the project's JVM classes ({name}) are not on Spark's classpath: in a checkout, "
        "install a JDK 17 (javac) and the first session compiles them; on a cluster, pass the "
        "project's jar (python -c 'import jobs.jvm; print(jobs.jvm.jar())') to spark-submit "
        "with --jars, or install it as a jar library on Databricks"
    )


def sources() -> list[Path]:
    return sorted(HERE.glob("*.java"))


def spark_jars() -> Path | None:
    """The jars directory of the installed pyspark (a cluster's Spark may have none)."""
    try:
        import pyspark
    except ImportError:
        return None
    jars = Path(pyspark.__file__).parent / "jars"
    return jars if jars.is_dir() else None


def build(out: Path, jars: Path) -> Path:
    """Compile the sources against Spark's ``jars`` into the jar ``out`` (replaced atomically)."""
    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar_tool is None:
        raise RuntimeError("javac and jar (a JDK 17) are needed to build the project's jar")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        classes = Path(tmp) / "classes"
        subprocess.run([javac, "--release", "17", "-nowarn", "-cp", f"{jars}/*", "-d", str(classes),
                        *map(str, sources())], check=True, capture_output=True, text=True)  # fmt: skip
        built = Path(tmp) / JAR
        subprocess.run([jar_tool, "cf", str(built), "-C", str(classes), "."], check=True)
        os.replace(built, out)
    return out


def jar() -> Path | None:
    """The jar for this installation: the wheel's own, or a checkout's cached build (compiled
    now when missing); None where neither can be had (no JDK, or no pyspark jars)."""
    packaged = HERE / JAR
    if packaged.is_file():
        return packaged
    jars = spark_jars()
    if jars is None or shutil.which("javac") is None:
        return None
    key = hashlib.sha256(str(jars.resolve()).encode())
    for path in sources():
        key.update(path.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vehicle-jobs"
    cached = cache / key.hexdigest()[:16] / JAR
    return cached if cached.is_file() else build(cached, jars)
