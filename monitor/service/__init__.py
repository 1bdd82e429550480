"""The daemon (``relaycert run``): ``generation`` is one loaded configuration with what is
derived from it (channels, trust, the scanner); ``jobs`` is the job table (endpoint, outbox,
report and renewal jobs); ``daemon`` is the lifecycle (signals, reload, shutdown).

May import everything below it: pipeline, alerts, reports, renewal, store, config.
"""
