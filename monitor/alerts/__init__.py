"""Alerts: the pure lifecycle (``lifecycle``: pending, open, reminded, resolved), tracking a
scan's results into alert rows and outbox messages inside the scan's transaction
(``tracking``), and delivering the outbox (``outbox``) through the configured channels
(``channels``).

May import: ``monitor.store``, ``notifications``, ``checks``.
"""
