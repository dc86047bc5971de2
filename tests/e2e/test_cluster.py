"""The ingest job submitted with spark-submit to a real standalone Spark cluster (a master and a
worker started from the pyspark wheel on 127.0.0.1), the project installed from its wheel in the
interpreter the driver and the executors run. A worker is killed mid-stream and replaced."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pyspark
import pytest

from jobs.config import PROJECT_ROOT, load_config
from jobs.devkit.emulator.process import EmulatorProcess
from jobs.devkit.simulator import SimulationParams, simulate
from tests.conftest import LOCAL_CONF, SIM_END
from tests.e2e.test_ingest import _commits, _expect_exact_tables, _placement_errors, _send

SPARK_HOME = Path(pyspark.__file__).parent
LAUNCHER = PROJECT_ROOT / "deploy" / "spark-submit" / "vehicle_jobs.py"
CLUSTER_CONF = """
environment = "cluster-test"
[source]
max_events_per_trigger = 600
trigger_interval_s = 0.5
[lake]
root = "{root}"
table_format = "deltars"
[spark]
shuffle_partitions = 2
[spark.conf]
"spark.ui.enabled" = "false"
"spark.ui.showConsoleProgress" = "false"
"spark.sql.session.timeZone" = "UTC"
"spark.sql.codegen.wholeStage" = "false"
{partners}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A standalone master and workers, each its own process group, stopped by process id."""

    def __init__(self, root: Path, python: Path) -> None:
        self.root, self.python = root, python
        self.port = _free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "PYSPARK_PYTHON": str(python),
                    "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}  # fmt: skip
        self.processes: list[subprocess.Popen] = []

    def _start(self, *args: str, name: str) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), *args], env=self.env,
                                stdout=log, stderr=log, start_new_session=True)  # fmt: skip
        self.processes.append(proc)
        return proc

    def start_master(self) -> None:
        self._start("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port",
                    str(self.port), "--webui-port", str(_free_port()), name="master")  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("the master did not start: " + (self.root / "master.log").read_text())

    def start_worker(self, name: str) -> subprocess.Popen:
        return self._start("org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                           "--cores", "2", "--memory", "2g", "--webui-port", str(_free_port()),
                           "--work-dir", str(self.root / name), self.url, name=name)  # fmt: skip

    def kill(self, proc: subprocess.Popen) -> None:
        """The worker's machine dies: the worker, its executor and their Python workers."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def _installed_jar(venv: Path) -> Path:
    """The jar the installed wheel carries, as deploy/spark-submit/submit.sh finds it."""
    found = subprocess.run([str(venv / "bin" / "python"), "-c", "import jobs.jvm; print(jobs.jvm.jar())"],
                           check=True, capture_output=True, text=True, cwd="/")  # fmt: skip
    jar = Path(found.stdout.strip())
    assert jar.is_file() and venv in jar.parents, jar  # the wheel's own, not a checkout's
    return jar


@pytest.fixture
def cluster(installed, tmp_path):
    cluster = Cluster(tmp_path, installed / "bin" / "python")
    cluster.start_master()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_spark_submit_on_a_standalone_cluster_survives_a_lost_worker(
    cluster, installed, tmp_path, spark
) -> None:
    base = load_config(LOCAL_CONF)
    partners = "\n".join(
        f'[[partners]]\nid = "{p.id}"\ndisplay_name = "{p.display_name}"\nregion = "{p.region}"'
        for p in base.partners
    )
    root = tmp_path / "lake"
    conf = tmp_path / "cluster.toml"
    conf.write_text(CLUSTER_CONF.format(root=root, partners=partners))
    messages = simulate(
        SimulationParams(vehicles=20, events=1200, bad_rate=0.05, seed=3, end_time=SIM_END),
        list(base.partners),
    )
    work = tmp_path / "submit"  # the jobs run from a directory without the checkout
    work.mkdir()
    log = tmp_path / "submit.log"
    with EmulatorProcess(tmp_path / "eh", fsync="never") as hub:
        _send(hub, messages)
        env = {**cluster.env, "PYSPARK_DRIVER_PYTHON": str(installed / "bin" / "python"),
               "EVENTHUB_CONNECTION_STRING": hub.connection_string}  # fmt: skip
        command = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", cluster.url,
                   "--conf", f"spark.executorEnv.PYSPARK_PYTHON={installed / 'bin' / 'python'}",
                   "--conf", "spark.task.maxFailures=4", "--jars", str(_installed_jar(installed)),
                   str(LAUNCHER), "ingest", "--conf", str(conf), "--available-now", "--no-gx"]  # fmt: skip

        def submit() -> subprocess.Popen:
            with log.open("ab") as out:
                return subprocess.Popen(command, cwd=work, env=env, stdout=out, stderr=out)

        first = cluster.start_worker("worker-1")
        job = submit()
        deadline = time.monotonic() + 300  # until a batch has committed on the cluster
        while _commits(root).get("ingest_batches", 0) < 1 and time.monotonic() < deadline:
            assert job.poll() is None, log.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        cluster.kill(first)  # mid-stream: the next batch is running on it
        cluster.start_worker("worker-2")
        code = job.wait(600)
        if code != 0:
            # a lost executor can fail the batch it was running (its held blocks are gone); as a
            # job scheduler would, submit again: the checkpoint resumes at that batch
            code = submit().wait(600)
        assert code == 0, log.read_text(errors="replace")[-3000:]
    cfg = load_config(conf)
    _expect_exact_tables(spark, cfg, messages)
    assert _placement_errors(spark, cfg, messages) == ([], [])
