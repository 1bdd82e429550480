"""``relaycert init``: write the annotated example configuration, and say where the systemd unit
and the deploy hook examples are (they ship inside the package)."""

from __future__ import annotations

import argparse
import shutil

from monitor.errors import ConfigError
from monitor.examples import EXAMPLES


def run(args: argparse.Namespace) -> int:
    target = args.output
    if target.exists():
        raise ConfigError(f"--output: {target} exists; remove it or choose another file")
    try:
        shutil.copyfile(EXAMPLES / "relaycert.example.toml", target)
    except OSError as exc:
        raise ConfigError(f"--output: cannot write {target}: {exc.strerror}") from exc
    print(f"wrote {target}: edit [tenant], [[connectors]] and [[endpoints]], then run")
    print(f"  relaycert scan --config {target}")
    print(f"systemd unit: {EXAMPLES / 'relaycert.service'}")
    print(f"deploy hook examples: {EXAMPLES / 'hooks'}")
    return 0
