"""Streaming data jobs for an autonomous-driving alliance's vehicle events.

Events arrive on Azure Event Hubs, are decoded against ``schemas/``, checked by the Great
Expectations suites in ``expectations/`` and published as Delta Lake tables. Run
``python -m jobs --help`` for the commands.
"""

__version__ = "0.1.0"


def register_data_sources(spark: object) -> None:
    """Register the project's Spark data sources (``deltars``, ``eventhubs``) on a session.

    Also turns on Python data source filter pushdown, which ``deltars`` uses to prune
    partitions (Spark 4.1 refuses a reader with ``pushFilters`` while it is off).
    """
    from jobs.delta.source import DeltaRsDataSource
    from jobs.sources.eventhubs import EventHubsDataSource

    spark.conf.set("spark.sql.python.filterPushdown.enabled", "true")  # type: ignore[attr-defined]
    spark.dataSource.register(DeltaRsDataSource)  # type: ignore[attr-defined]
    spark.dataSource.register(EventHubsDataSource)  # type: ignore[attr-defined]
