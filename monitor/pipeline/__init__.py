"""The one scan: resolve, probe (``[probe] concurrency`` bounds connections in flight),
judge with the rules, and store, used by ``relaycert scan``, the daemon and renewal
verification alike.  ``scan.Scanner`` is made once per loaded configuration with its
``options.ScanOptions``; ``streamed`` is the scan probed in worker processes, ``oneshot`` the
run of ``relaycert scan``.  What a scan produces is :mod:`monitor.results`.

May import: ``monitor.alerts``, ``monitor.store``, ``monitor.capture``, ``monitor.probe``,
``notifications``, ``monitor.config`` and everything below them.  Never ``monitor.renewal``,
``monitor.service`` or ``monitor.cli``.
"""
