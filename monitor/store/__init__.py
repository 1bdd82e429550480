"""The database seam.  ``engine`` opens (and migrates) the store and maps every database error
to :class:`~monitor.errors.StoreError`; ``models`` are the tables; ``writes`` stores a scan;
``queries`` is the one module every reader uses (the newest observation per address lives there
once); ``baselines``, ``messages`` and ``renewals`` write their own rows; ``retention`` prunes.

No SQL runs outside this package except inside a transaction the store opened.
May import: ``monitor.errors``, ``checks``, ``notifications.base``, ``monitor.results``.
"""
