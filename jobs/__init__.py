"""Streaming data jobs for an autonomous-driving alliance's vehicle events.

Events arrive on Azure Event Hubs, are decoded against ``schemas/``, checked by the Great
Expectations suites in ``expectations/`` and published as Delta Lake tables. Run
``python -m jobs --help`` for the commands.
"""

__version__ = "0.1.0"
