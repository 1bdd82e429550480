"""The network edge: resolve a host to every address (``resolve``), probe one address over SMTP
(STARTTLS or implicit TLS) and capture its chain (``smtp``; the chain as presented is read by
``chain``, the one module that touches CPython's ``_ssl`` internals), read certificate files
(``certfile``) and load trust anchors (``trust``).

May import: ``monitor.config`` section models (never the loaded file: callers pass what a
function needs), ``monitor.results``, ``monitor.errors``, ``monitor.logs``, ``monitor.files``,
``monitor.clock``, ``monitor.aio``, ``checks``.  Never the store.
"""
