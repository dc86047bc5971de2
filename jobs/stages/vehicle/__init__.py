"""Per-vehicle checks across events: ``stage`` runs the Java rules per VIN in the ingest query;
``rules`` configures them and runs them on one vehicle's events outside a stream."""
