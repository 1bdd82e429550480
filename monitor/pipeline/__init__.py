"""The one scan: resolve, probe (``[probe] concurrency`` bounds connections in flight),
judge with the rules, and store, used by ``relaycert scan``, the daemon and renewal
verification alike.  ``records`` holds the domain types a scan produces.

May import: ``monitor.config``, ``monitor.probe``, ``monitor.store``, ``monitor.alerts.tracking``,
``checks``.
"""
