"""The ingest job: events from the configured source to bronze, silver, quarantine and the
quality tables (``python -m jobs ingest``).

``query`` runs the streaming query, ``batch`` processes one micro-batch, ``accounting`` checks
that a batch accounts for every event before it commits, ``gx`` validates committed batches with
Great Expectations in the background, ``progress`` draws the live line, ``summary`` reports.
"""
