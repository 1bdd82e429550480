"""relaycert's monitor: everything with effects.  Each subpackage owns one role, and imports
run down the floors that ``tools/layers.py`` declares and ``make lint`` checks (top first):

- ``cli/``       one parser, one dispatch table, one module per command, output rendering
- ``service/``   the daemon: lifecycle (signals, reload, shutdown), its job table and job kinds;
  ``demo/`` beside it, the built-in loopback demo fleet
- ``renewal/``   ACME renewal: decide, order (solvers behind a registry), gate, deploy, verify
- ``pipeline/``  the one scan every caller uses: probe, judge, store
- ``alerts/``    tracking the alert lifecycle in the store, delivering the outbox; ``reports/``
  beside it, compliance reports (read, assemble, render, archive)
- ``store/``     the database seam: engine and error mapping, models, writes, read models;
  ``capture/`` beside it, the capture listener
- ``probe/``     the network: resolve, the SMTP/TLS probe, certificates, CRLs, DANE, MTA-STS;
  ``notifications/`` (a top-level package) beside it, the channels
- ``config/``    the configuration file: frozen models, one loader, what it derives
- below it, each feature's ``settings`` module (``alerts``, ``renewal``, ``notifications``) and
  the pure alert lifecycle, built on ``config/common`` and ``config/units``
- ``results``    the vocabulary every package speaks: ``ProbeTarget``, ``ProbeResult``,
  ``ScanRecord``; with ``logs`` (escaped structured logging), ``secrets`` (from the environment
  or files) and ``certview`` (the one view of a certificate for JSON and reports)
- the ground: ``checks`` (a top-level package, the pure rules), ``errors`` (the one exception
  tree), ``files`` (atomic writes), ``clock`` (tz-aware UTC, injected), ``aio`` (the event loop)
"""

__version__ = "0.1.0"
