"""The configuration file: frozen pydantic models (``sections``), durations (``units``), the
loader that parses, cross-checks and reports errors with file and key (``loader``), and what the
loaded configuration derives once (``derived``).

May import: each feature's settings module (``monitor.alerts.settings``,
``monitor.renewal.settings``, ``monitor.observed.settings``, ``notifications.settings``), the
routing table's type (``monitor.alerts.policy``), ``monitor.errors``, ``monitor.secrets``,
``monitor.files``, ``checks``.  Nothing here does I/O beyond reading files, except graph.py
(the tenant's accepted domains from Microsoft Graph, which the daemon asks for when
``[tenant.graph]`` is set).
"""
