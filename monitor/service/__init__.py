"""The daemon (``relaycert run``): ``generation`` is one loaded configuration with what is
derived from it (channels, trust, the scanner); ``jobs/`` is the job table (``table``) and one
module per kind of job (endpoint, outbox, renewal, report, tenant), all reading the current
generation, which a reload swaps in whole (``Jobs.swap``); ``membership`` is this instance among
several (claims, heartbeat, the site check); ``tenant_watch`` the tenant drift check;
``daemon`` is the lifecycle (signals, reload, shutdown); ``listener``, ``metrics`` and
``statuspage`` serve /metrics, /healthz and the status page, on ``httpd`` (aiohttp's server with
the rules every answer and connection follows; ``http_hosts`` the Host check); ``sdnotify`` talks
to systemd.

May import: everything below it (pipeline, alerts, reports, renewal, store, config).
"""
