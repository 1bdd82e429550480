"""The store's read models: one module per reader, each holding the SELECTs that reader runs
and returning plain rows and values (never a session):

- ``reports``: what a compliance report gathers over its period (addresses, counters, events,
  the daily chart's figures);
- ``status``: what ``relaycert status``, the status page and the health check read;
- ``plugin``: what ``check_relaycert --from-store`` answers from;
- ``metrics``: what a ``/metrics`` scrape exports;
- ``renewal``: the recorded attempts, and the served certificate a renewal decides by;
- ``outbound``: the outbound checks' history (consecutive misses for the scan, the state a late
  arrival at the capture listener is judged against).

What every reader shares is in :mod:`monitor.store.queries` once (the newest observation per
address, the scan's baselines); a table with a writer of its own keeps its reads beside it
(``captures``, ``cluster``, ``messages``).

May import: ``monitor.store`` and everything below it.
"""
