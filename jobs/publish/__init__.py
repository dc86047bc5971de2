"""The publish job: what partners read (``python -m jobs publish``).

``events`` copies each partner's own events (and rejected events) into its own tables and
writes pseudonymized alliance rows, ``gold`` recomputes the aggregates for the months that
changed, ``keys`` reads the alliance's pseudonym keys, ``query`` runs it all.
"""
