"""The network edge: resolve a host to every address (``resolve``), probe one address over SMTP
(STARTTLS or implicit TLS) and capture its chain (``smtp``), read certificate files
(``certfile``) and load trust anchors (``trust``).

May import: ``monitor.config``, ``monitor.errors``, ``checks``.  Never the store.
"""
