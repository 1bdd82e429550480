"""The store's read models: one module per reader, each holding the SELECTs that reader runs
and returning plain rows and values (never a session):

- ``reports``: what a compliance report gathers over its period (addresses, counters, events,
  the daily chart's figures);
- ``metrics``: what a ``/metrics`` scrape exports;
- ``status``: the open alerts of the status page, and the store's health check.

The newest observation per address, which every reader starts from, is in
:mod:`monitor.store.queries` once.
"""
