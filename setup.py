"""The folders the user keeps at the top (schemas/, expectations/, conf/) go into the wheel as
jobs/data/...; everything else is in pyproject.toml."""

from setuptools import find_packages, setup

SHIPPED = {"jobs.data.schemas": "schemas", "jobs.data.expectations": "expectations",
           "jobs.data.conf": "conf"}  # fmt: skip

setup(
    packages=[*find_packages(include=["jobs", "jobs.*"]), *SHIPPED],
    package_dir=SHIPPED,
    package_data={
        **{package: ["**/*.json", "*.toml"] for package in SHIPPED},
        "jobs.stages.residency": ["*.geojson", "sources/*.geojson", "README.md"],
        "jobs.bench": ["*.geojson"],
    },
)
