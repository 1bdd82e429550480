"""relaycert's monitor: configuration, probes, store, scans and the command line."""

__version__ = "0.1.0"
