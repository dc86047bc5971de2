"""``eventhubs``: Azure Event Hubs as a Spark source, on ``azure-eventhub``.

``options`` parses what a query is given, ``hub`` is the driver's view of the hub, ``read`` what
an executor does, ``source`` the data source and its readers (its docstring is the manual).
"""

from jobs.sources.eventhubs.hub import Hub, HubWatcher, PartitionState
from jobs.sources.eventhubs.options import FORMAT, EventHubsOptions, redact
from jobs.sources.eventhubs.read import SCHEMA
from jobs.sources.eventhubs.source import EventHubsDataSource

__all__ = [
    "FORMAT",
    "SCHEMA",
    "EventHubsDataSource",
    "EventHubsOptions",
    "Hub",
    "HubWatcher",
    "PartitionState",
    "redact",
]
