"""The configuration file: frozen pydantic models (``sections``), durations (``units``) and the
loader that parses, cross-checks and reports errors with file and key (``loader``).

May import: ``monitor.errors``, ``monitor.secrets``, ``checks``, and the settings models owned by
``notifications`` and ``monitor.renewal.settings``.  Nothing here does I/O beyond reading files.
"""
