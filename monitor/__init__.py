"""relaycert's monitor: everything with effects.  Each subpackage owns one role, and imports
point one way (``cli -> service -> pipeline -> probe / checks / store``):

- ``config/``    the configuration file: frozen models, units, one loader (imports nothing above)
- ``probe/``     the network: resolve, the SMTP/TLS probe, certificate files, trust anchors
- ``pipeline/``  the records of a scan and the one scan (probe, judge, store) every caller uses
- ``store/``     the database seam: engine and error mapping, models, writes, the queries every
                 reader uses, retention, migrations
- ``alerts/``    the pure alert lifecycle, tracking it in the store, delivering the outbox
- ``service/``   the daemon: lifecycle (signals, reload, shutdown) and its job table
- ``reports/``   compliance reports: query, pure assembly, render, archive
- ``renewal/``   ACME renewal: decide, order, gate, deploy, verify, record
- ``cli/``       one parser, one dispatch table, one module per command, output rendering
- ``demo/``      the built-in loopback demo fleet

Shared helpers at this level: ``errors`` (the one exception tree), ``logs`` (escaped
structured logging), ``secrets`` (secrets from the environment or files), ``files`` (atomic
writes), ``clock`` (tz-aware UTC, injected), ``certview`` (the one view of a certificate for
JSON and reports).
"""

__version__ = "0.1.0"
