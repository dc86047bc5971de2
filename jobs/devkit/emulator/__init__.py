"""A local Event Hubs endpoint that the unmodified ``azure-eventhub`` SDK talks to.

``python -m jobs emulator --help``. AMQP over plain TCP with SASL
ANONYMOUS, ``$cbs`` put-token, ``$management`` READ, senders (single events and batches, by
partition id, partition key or round-robin) and receivers (start by offset, sequence number,
enqueued time or ``@latest``; link credit honoured), the official emulator's ``Config.json``,
per-partition append-only segment files in ``--data-dir`` (fsync policy, torn-tail recovery,
time and size retention), epochs (``amqp:link:stolen``), the 1 MiB message limit and the
receiver runtime-metric annotations.
"""
