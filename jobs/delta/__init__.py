"""Delta Lake tables: the facade the jobs write and read through (``tables``), and ``deltars``,
Delta through delta-rs for Spark without the Delta jars.

``options`` parses the ``deltars`` options, ``files`` writes and reads data files (executors),
``log`` reads and commits the Delta log (driver), ``write`` ties the two into one idempotent
write, ``source`` is the Spark data source (its docstring is the manual).
"""
