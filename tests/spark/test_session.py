"""The session every job builds (``jobs.session.session_builder``)."""

from __future__ import annotations

from pyspark.errors.utils import is_debugging_enabled

from jobs.session import PYTHON_CALL_SITES


def test_dataframe_calls_send_no_python_call_sites(spark) -> None:
    """PySpark's call-site tracking costs a few JVM calls per DataFrame and Column call (a
    quarter of a micro-batch's): the job's sessions turn it off."""
    assert spark.conf.get(PYTHON_CALL_SITES) == "false"
    assert not is_debugging_enabled()
