"""The pipeline's stages, each a transform of DataFrames (or of a batch's Arrow keys) that
writes nothing but its own state: ``schemas`` and ``decode``, ``residency``, ``vehicle`` (per
vehicle, across events), ``dedup``, ``quality`` (the suites as row checks, GX's verdict)."""
