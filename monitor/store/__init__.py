"""The database seam.  ``engine`` opens (and migrates) the store and maps every database error
to :class:`~monitor.errors.StoreError`; ``models`` are the tables; ``writes`` stores a scan
(``rows``: a record's row values); ``alerts``, ``baselines``, ``messages``, ``renewals``,
``captures`` and ``cluster`` write their own rows; ``reads/`` holds one read model per reader
(reports, status, plugin, metrics) and ``queries`` what every reader shares (the newest
observation per address lives there once); ``retention`` prunes.

Every SELECT the product runs is in this package (``tools/layers.py`` refuses SQLAlchemy
elsewhere).  May import: ``monitor.probe``, ``notifications``, ``monitor.config`` and everything
below them (the vocabulary, the alert lifecycle, the rules).
"""
