"""spark-submit's entry point: ``spark-submit [options] vehicle_jobs.py <command> [args]`` runs
``python -m jobs <command> [args]`` in the driver. The package must be installed in the
interpreter the driver and the executors run (see README.md next to this file)."""

from jobs.__main__ import run

run()
