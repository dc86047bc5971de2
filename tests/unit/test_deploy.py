"""The deployment files: the Databricks bundle's jobs are what Databricks accepts and run what
the project ships."""

from __future__ import annotations

import copy
import tomllib

import pytest
import yaml
from databricks.bundles.jobs import Job

from jobs.config import PROJECT_ROOT, load_config

BUNDLE = PROJECT_ROOT / "deploy" / "databricks"


def _jobs() -> dict[str, dict]:
    docs = [yaml.safe_load(p.read_text()) for p in sorted((BUNDLE / "resources").glob("*.yml"))]
    return {k: v for doc in docs for k, v in doc["resources"]["jobs"].items()}


def test_every_job_of_the_bundle_is_a_valid_databricks_job() -> None:
    jobs = _jobs()
    assert set(jobs) == {"ingest", "publish"}
    for name, spec in jobs.items():
        assert Job.from_dict(copy.deepcopy(spec)).name == spec["name"], name


@pytest.mark.parametrize(
    ("path", "wrong"),
    [(("tasks", 0, "python_wheel_task"), "pyhton_wheel_task"), ((), "job_cluster"),
     (("job_clusters", 0, "new_cluster"), "spark_env_var")],
)  # fmt: skip
def test_a_misspelt_field_is_refused(path, wrong) -> None:
    spec = copy.deepcopy(_jobs()["ingest"])
    node = spec
    for key in path[:-1]:
        node = node[key]
    if path:
        node[wrong] = node.pop(path[-1])
    else:
        spec[wrong] = {}
    with pytest.raises(ValueError, match=wrong):
        Job.from_dict(spec)


def test_the_jobs_run_the_wheel_with_secrets_from_the_scope() -> None:
    scripts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    bundle = yaml.safe_load((BUNDLE / "databricks.yml").read_text())
    assert (
        set(bundle["targets"]) == {"dev", "prod"} and bundle["artifacts"]["wheel"]["type"] == "whl"
    )
    for spec in _jobs().values():
        cluster = spec["job_clusters"][0]["new_cluster"]
        assert (
            cluster["spark_version"].startswith("17.3.")
            and cluster["data_security_mode"] == "SINGLE_USER"
        )
        task = spec["tasks"][0]["python_wheel_task"]
        assert task["entry_point"] in scripts and task["package_name"] == "vehicle_event_jobs"
        conf = task["parameters"][task["parameters"].index("--conf") + 1]
        assert conf.endswith("conf/databricks.toml")
        cfg = load_config(PROJECT_ROOT / "conf" / "databricks.toml")
        for value in cluster["spark_env_vars"].values():
            assert value.startswith("{{secrets/${var.secret_scope}/")  # never a value
        names = set(cluster["spark_env_vars"])
        assert names & {cfg.source.connection_string_env, cfg.sharing.pseudonym_key_env}
    ingest = _jobs()["ingest"]["job_clusters"][0]["new_cluster"]["spark_conf"]
    assert "RocksDBStateStoreProvider" in ingest["spark.sql.streaming.stateStore.providerClass"]
