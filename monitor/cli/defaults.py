"""Where a command finds its configuration when ``--config`` is not given."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/relaycert/relaycert.toml")
CONFIG_HELP = "configuration file (default: $RELAYCERT_CONFIG, else /etc/relaycert/relaycert.toml)"


def default_config() -> Path:
    """``$RELAYCERT_CONFIG``, else :data:`DEFAULT_CONFIG`."""
    return Path(os.environ.get("RELAYCERT_CONFIG") or DEFAULT_CONFIG)
