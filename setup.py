"""The folders the user keeps at the top (schemas/, expectations/, conf/) go into the wheel as
jobs/data/..., and the project's jar (jobs/jvm) is compiled into it, against the pyspark of the
building environment (``make dist``: the project's virtualenv); everything else is in
pyproject.toml."""

import importlib.util
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

SHIPPED = {"jobs.data.schemas": "schemas", "jobs.data.expectations": "expectations",
           "jobs.data.conf": "conf"}  # fmt: skip


class BuildWithJar(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # a checkout compiles the jar on first use (jobs.jvm.jar)
        # loaded by path: importing the jobs package would need its dependencies
        spec = importlib.util.spec_from_file_location("_jobs_jvm", Path("jobs/jvm/__init__.py"))
        assert spec is not None and spec.loader is not None
        jvm = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(jvm)
        jars = jvm.spark_jars()
        if jars is None:
            raise RuntimeError("building the wheel needs pyspark installed (its jars): build "
                               "without isolation, as make dist does")
        jvm.build(Path(self.build_lib) / "jobs" / "jvm" / jvm.JAR, jars)


setup(
    # the outline's sources are data, a folder without Python: named, so setuptools ships it
    packages=[*find_packages(include=["jobs", "jobs.*"]), "jobs.stages.residency.sources",
              *SHIPPED],  # fmt: skip
    package_dir=SHIPPED,
    package_data={
        **{package: ["**/*.json", "*.toml"] for package in SHIPPED},
        "jobs.stages.residency": ["*.geojson", "README.md"],
        "jobs.stages.residency.sources": ["*.geojson"],
        "jobs.bench": ["*.geojson"],
        "jobs.jvm": ["*.java"],  # the sdist's wheel compiles them
    },
    cmdclass={"build_py": BuildWithJar},
)
