"""The store's read models: one module per reader, each holding the SELECTs that reader runs
and returning plain rows and values (never a session):

- ``reports``: what a compliance report gathers over its period (addresses, counters, events,
  the daily chart's figures);
- ``status``: what ``relaycert status``, the status page and the health check read;
- ``plugin``: what ``check_relaycert --from-store`` answers from;
- ``metrics``: what a ``/metrics`` scrape exports.

The newest observation per address, which every reader starts from, is in
:mod:`monitor.store.queries` once; the scan's own reads (baselines, the served certificate a
renewal decides by) are there too.
"""
