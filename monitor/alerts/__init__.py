"""Alerts: the pure lifecycle (``lifecycle``: pending, open, reminded, resolved) and its
settings (``settings``), both on a low floor so the configuration and the store may use them;
tracking a scan's results into alert rows and outbox messages inside the scan's transaction
(``tracking``, with ``policy``: how results feed baselines and alerts), and delivering the
outbox (``outbox``) through the configured channels (``channels``).

May import: ``monitor.store``, ``monitor.capture``, ``notifications``, ``monitor.config`` and
everything below them.
"""
