"""A local Event Hubs endpoint that the unmodified ``azure-eventhub`` SDK talks to.

``python -m jobs emulator --help``. Work in progress (issue 3): AMQP over plain TCP with SASL
ANONYMOUS, ``$cbs`` put-token, ``$management`` READ, senders (single events and batches, by
partition id, partition key or round-robin) and receivers (start by offset, sequence number,
enqueued time or ``@latest``; link credit honoured), the official emulator's ``Config.json``,
and per-partition append-only files in ``--data-dir`` so a restart keeps the data.
Not yet: epochs, retention, fsync policy and torn-tail recovery, size limits enforcement,
runtime-metric annotations.
"""
