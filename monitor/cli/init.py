"""``relaycert init``: write the annotated example configuration, and say where the systemd unit
and the deploy hook examples are (they ship inside the package)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor.errors import ConfigError
from monitor.examples import EXAMPLES

NAME = "init"
HELP = "write the example configuration to start from"
NEEDS_CONFIG = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", "-o", type=Path, default=Path("relaycert.toml"), help="file to write"
    )
    parser.add_argument(
        "--systemd",
        type=Path,
        metavar="DIR",
        help="also write the systemd units (relaycert.service, its low-port drop-in, the "
        "Postfix reload path and service) into DIR, e.g. /etc/systemd/system",
    )


def run(args: argparse.Namespace) -> int:
    import shutil

    target = args.output
    if target.exists():
        raise ConfigError(f"--output: {target} exists; remove it or choose another file")
    try:
        shutil.copyfile(EXAMPLES / "relaycert.example.toml", target)
    except OSError as exc:
        raise ConfigError(f"--output: cannot write {target}: {exc.strerror}") from exc
    print(f"wrote {target}: edit [tenant], [[connectors]] and [[endpoints]], then run")
    print(f"  relaycert scan --config {target}")
    if args.systemd is not None:
        for name in write_units(args.systemd):
            print(f"wrote {name}")
        print("then: systemctl daemon-reload && systemctl enable --now relaycert")
        print("(the drop-in only if the daemon must bind ports below 1024; see docs/service.md)")
    else:
        print(f"systemd unit: {EXAMPLES / 'relaycert.service'} (or: relaycert init --systemd DIR)")
    print(f"deploy hook examples: {EXAMPLES / 'hooks'}")
    return 0


UNITS = (
    "relaycert.service",
    "relaycert-postfix-reload.path",
    "relaycert-postfix-reload.service",
)


def write_units(folder: Path) -> list[Path]:
    """The shipped units into ``folder``, ``ExecStart`` pointing at this installation's
    ``relaycert``; an existing file is never overwritten."""
    import shutil

    installed = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "relaycert" else None
    found = installed or shutil.which("relaycert")
    binary = str(found) if found else f"{sys.executable} -m monitor"
    written: list[Path] = []
    targets = [(EXAMPLES / n, folder / n) for n in UNITS] + [
        (
            EXAMPLES / "relaycert.service.d" / "bind-low-ports.conf",
            folder / "relaycert.service.d" / "bind-low-ports.conf.example",
        )
    ]
    for source, target in targets:
        if target.exists():
            raise ConfigError(f"--systemd: {target} exists; remove it or choose another folder")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            text = source.read_text().replace("/opt/relaycert/bin/relaycert", binary)
            target.write_text(text)
        except OSError as exc:
            raise ConfigError(f"--systemd: cannot write {target}: {exc.strerror}") from exc
        written.append(target)
    return written
