"""Observed outcomes: what Exchange Online answered to the real mail a relay sent, read from the
relay's own log and queue (issue #36).  Every verdict elsewhere is a prediction; this package
reads the ground truth.

- ``base``: the contract every log format implements (``LogParser``), the record it yields
  (``Delivery``), the outcome classes (``Outcome``) and the package's error.
- ``classes``: each class's Exchange Online text, meaning and fix (the docs and, later, the
  ``observed.<class>`` rules are made from it).
- ``classify``: the pure classification of one delivery attempt (no I/O).
- ``timestamps``: syslog timestamps without year or zone, and RFC 3339 ones, to UTC.
- ``nexthop``: which deliveries are to Exchange Online.
- ``privacy``: domains and keyed hashes instead of mail addresses.
- ``postfix``: Postfix's log lines into ``Delivery`` records (instances by ``syslog_name``).
- ``text``: text from hostile bytes, printable and clipped.
- ``lines``: bounded line reading (no line over the limit is kept whole).
- ``logfiles``: opening logs (one-line errors naming the group to join), fingerprints, rotated
  siblings, bounded gzip reading.
- ``backfill``: whole files once, and the rotated siblings of a followed log.
- ``follow``: following a log across rotation and restarts with a ``Checkpoint``.
- ``postqueue``: ``postqueue -j``, bounded in time and size.
- ``summary``: outcomes per (instance, next hop) and class, JSON-able.
- ``reading``: the sources read once into one summary, and the queues (``relaycert observe``).

May import: ``monitor.errors``, ``monitor.clock``, ``monitor.files``, ``monitor.secrets``.
Never the store or the configuration file: callers pass what a reader needs.
"""
