"""The Debian package, built as ``make deb`` builds it (debhelper, dh-virtualenv, the Python
dependencies from the package index) and installed into a throwaway root: an overlay of this
machine's root filesystem in a private mount namespace, its writes on a tmpfs, so the machine's
own system is never touched.  There: ``relaycert --version``, ``relaycert init`` and
``relaycert demo`` from the installed files, the user, the conffile's owner and mode, the
units; then ``dpkg -r`` keeps configuration and state and ``dpkg -P`` removes them."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
TOOLS = ("dpkg-buildpackage", "dh_virtualenv", "lintian", "unshare")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        why = f"needs root and {', '.join(missing) or 'the build tools'}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; .ci/run must install dh-virtualenv, debhelper and lintian")
        pytest.skip(why)
    # A copy of the tracked tree: the build writes debian/ and the parent folder.
    build = tmp_path_factory.mktemp("deb") / "relaycert"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        source, target = ROOT / name.decode(), build / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)
    wheelhouse = ROOT / ".wheelhouse"  # `make wheelhouse` (.ci/run): no network in the test
    if not wheelhouse.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("no .wheelhouse: .ci/run must run `make wheelhouse` before the tests")
        pytest.skip("run `make wheelhouse` first (the test builds the package offline)")
    done = subprocess.run(
        # in a network namespace of its own: loopback only, so nothing is fetched from outside
        ["unshare", "--net", "make", "deb", f"WHEELHOUSE={wheelhouse}"],
        cwd=build,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "E: " not in done.stdout  # lintian: no error
    (deb,) = (build / "dist").glob("relaycert_*_*.deb")
    return deb


def in_throwaway_root(deb: Path, script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) chrooted into an overlay of / whose writes go to a tmpfs."""
    work = tmp_path / "root"
    work.mkdir()
    inside = tmp_path / "inside.sh"
    inside.write_text(script)
    outer = f"""set -eu
W={work}
mount -t tmpfs tmpfs "$W"
mkdir "$W/upper" "$W/work" "$W/merged"
mount -t overlay overlay -o lowerdir=/,upperdir="$W/upper",workdir="$W/work" "$W/merged"
M="$W/merged"
mount --bind /proc "$M/proc"
mount --bind /dev "$M/dev"
mount -t tmpfs tmpfs "$M/tmp"
mount -t tmpfs tmpfs "$M/run"
cp {deb} "$M/tmp/relaycert.deb"
cp {inside} "$M/tmp/inside.sh"
chroot "$M" /bin/sh -eu /tmp/inside.sh
"""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", outer],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_install_run_remove_and_purge_in_a_throwaway_root(package: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        """\
        export DEBIAN_FRONTEND=noninteractive
        dpkg -i /tmp/relaycert.deb >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; exit 1; }
        echo "VERSION $(relaycert --version)"
        echo "PLUGIN $(check_relaycert -V)"
        echo "USER $(getent passwd relaycert | cut -d: -f1,7)"
        echo "CONF $(stat -c '%a %U:%G' /etc/relaycert/relaycert.toml)"
        echo "ETC $(stat -c '%a %U:%G' /etc/relaycert)"
        echo "STATE $(stat -c '%a %U:%G' /var/lib/relaycert)"
        echo "UNIT $(grep ^ExecStart= /lib/systemd/system/relaycert.service)"
        test -f /usr/share/man/man1/relaycert.1.gz && echo MAN
        test -f /usr/share/bash-completion/completions/relaycert && echo BASH
        grep -q '/var/lib/relaycert' /etc/relaycert/relaycert.toml && echo EXAMPLE
        cd /tmp && relaycert init --output /tmp/init.toml >/dev/null && echo INIT
        relaycert demo --dir /tmp/demo >/tmp/demo.log 2>&1 && echo DEMO || tail -5 /tmp/demo.log
        grep -q 'cert.expired' /tmp/demo.log && echo DEMO_FINDINGS
        touch /var/lib/relaycert/relaycert.db
        dpkg -r relaycert >/dev/null
        test -f /etc/relaycert/relaycert.toml && echo REMOVE_KEEPS_CONF
        test -f /var/lib/relaycert/relaycert.db && echo REMOVE_KEEPS_STATE
        test ! -e /usr/bin/relaycert && echo REMOVE_REMOVES_PROGRAM
        dpkg -P relaycert >/dev/null
        test ! -e /etc/relaycert && echo PURGE_REMOVES_CONF
        test ! -e /var/lib/relaycert && echo PURGE_REMOVES_STATE
        """
    )
    done = in_throwaway_root(package, script, tmp_path)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    lines = set(out.splitlines())
    assert "VERSION relaycert 0.1.0" in lines and "PLUGIN check_relaycert 0.1.0" in lines, out
    assert "USER relaycert:/usr/sbin/nologin" in lines, out
    assert "CONF 640 root:relaycert" in lines and "ETC 750 root:relaycert" in lines, out
    assert "STATE 750 relaycert:relaycert" in lines, out
    assert "UNIT ExecStart=/usr/bin/relaycert run --config /etc/relaycert/relaycert.toml" in lines
    for word in ("MAN", "BASH", "EXAMPLE", "INIT", "DEMO", "DEMO_FINDINGS"):
        assert word in lines, (word, out)
    for word in ("REMOVE_KEEPS_CONF", "REMOVE_KEEPS_STATE", "REMOVE_REMOVES_PROGRAM"):
        assert word in lines, (word, out)
    assert "PURGE_REMOVES_CONF" in lines and "PURGE_REMOVES_STATE" in lines, out
    assert not Path("/usr/bin/relaycert").exists()  # the machine's own system: untouched
