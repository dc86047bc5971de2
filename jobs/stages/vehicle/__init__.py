"""Per-vehicle checks across events: ``rules`` in plain Python, ``stage`` the stateful Spark
stage that runs them per VIN in the ingest query."""
