"""The house rules (``tools/layers.py``, run by ``make lint``): the tree keeps them, and each rule
catches the breach it is about in a small tree of its own."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _layers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("layers", ROOT / "tools" / "layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["layers"] = module
    spec.loader.exec_module(module)
    return module


layers = _layers()


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A tree with the three packages and ``files`` (path -> source)."""
    for package in ("monitor", "checks", "notifications"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text('"""x"""\n')
    for name, source in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent != tmp_path and not (path.parent / "__init__.py").exists():
            (path.parent / "__init__.py").write_text("")
        path.write_text(source)
    return tmp_path


def test_the_tree_keeps_the_house_rules() -> None:
    assert layers.check() == []


def test_make_lint_runs_the_house_rules() -> None:
    """The rules only hold if something runs them: ``make lint`` does (and CI runs it)."""
    makefile = (ROOT / "Makefile").read_text()
    lint = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "tools/layers.py" in lint


def test_an_import_up_the_floors_is_a_breach(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "monitor/store/writes.py": "from monitor.pipeline.scan import Scanner\n",
            "monitor/pipeline/scan.py": "Scanner = 1\n",
        },
    )
    (breach,) = layers.check(root)
    assert breach.startswith("monitor/store/writes.py:1: monitor.store.writes imports")
    assert "monitor.pipeline.scan, which is above it" in breach


def test_an_import_inside_a_function_counts_and_one_for_a_type_obeys_the_floors_too(
    tmp_path: Path,
) -> None:
    root = tree(
        tmp_path,
        {
            "monitor/config/loader.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from monitor.probe.smtp import probe\n"
                "def load():\n    from monitor.cli import app\n"
            ),
            "monitor/probe/smtp.py": "probe = 1\n",
            "monitor/cli/app.py": "",
        },
    )
    found = layers.check(root)
    assert len(found) == 2
    assert {b.split(":")[1] for b in found} == {"3", "5"}


def test_a_feature_settings_module_sits_below_the_configuration(tmp_path: Path) -> None:
    """Longest name first: ``monitor.renewal.settings`` is below ``monitor.config`` while
    ``monitor.renewal`` is above it; the rest of the feature is not."""
    root = tree(
        tmp_path,
        {
            "monitor/config/loader.py": (
                "from monitor.renewal.settings import RenewalSettings\n"
                "from monitor.renewal.runner import renew\n"
            ),
            "monitor/renewal/settings.py": "RenewalSettings = 1\n",
            "monitor/renewal/runner.py": "renew = 1\n",
        },
    )
    (breach,) = layers.check(root)
    assert "imports monitor.renewal.runner" in breach


def test_rooms_on_one_floor_are_independent(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "monitor/capture/listener.py": "from monitor.store import engine\n",
            "monitor/store/engine.py": "",
        },
    )
    (breach,) = layers.check(root)
    assert "on the same floor as it" in breach


def test_a_circle_inside_one_package_is_a_breach(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "monitor/pipeline/scan.py": "def f():\n    from monitor.pipeline import streamed\n",
            "monitor/pipeline/streamed.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from monitor.pipeline.scan import Scanner\n"
            ),
        },
    )
    (breach,) = layers.check(root)
    assert "import circle monitor.pipeline.scan -> monitor.pipeline.streamed" in breach


@pytest.mark.parametrize(
    ("where", "ok"),
    [("monitor/store/reads/x.py", True), ("monitor/reports/query.py", False)],
)
def test_sql_runs_only_in_the_store(tmp_path: Path, where: str, ok: bool) -> None:
    root = tree(
        tmp_path,
        {
            where: "from sqlalchemy import select\n",
            "monitor/alerts/tracking.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from sqlmodel import Session\n"  # a type: allowed
            ),
        },
    )
    found = layers.check(root)
    assert (found == []) is ok
    assert ok or "SQL runs only in monitor.store" in found[0]


def test_a_channel_or_a_solver_is_reached_through_its_registry(tmp_path: Path) -> None:
    """A channel module nobody has listed anywhere (``ntfy``) is behind the registry too."""
    root = tree(
        tmp_path,
        {
            "monitor/reports/archive.py": "from notifications.email import EmailChannel\n",
            "monitor/cli/notify.py": (
                "from notifications.ntfy import NtfyChannel\n"
                "from notifications.registry import build\n"
                "from notifications.base import Notification\n"
            ),
            "monitor/cli/renew.py": "from monitor.renewal.solvers.http01 import Http01\n",
            "monitor/cli/run.py": "from monitor.renewal.solvers import SOLVERS\n",
            "notifications/email.py": "EmailChannel = 1\n",
            "notifications/ntfy.py": "NtfyChannel = 1\n",
            "notifications/base.py": "Notification = 1\n",
            "notifications/registry.py": (
                "from notifications.email import EmailChannel\n"
                "from notifications.ntfy import NtfyChannel\n"
                "build = 1\n"
            ),
            "monitor/renewal/solvers/http01.py": "Http01 = 1\n",
            "monitor/renewal/solvers/__init__.py": "from .http01 import Http01\nSOLVERS = 1\n",
        },
    )
    found = layers.check(root)
    assert len(found) == 3
    assert all("reach it through the registry" in b for b in found)
    assert {b.split(":")[0] for b in found} == {
        "monitor/reports/archive.py",
        "monitor/cli/notify.py",
        "monitor/cli/renew.py",
    }


def test_a_module_over_the_size_bar_is_a_breach(tmp_path: Path) -> None:
    root = tree(tmp_path, {"checks/big.py": "x = 1\n" * (layers.MAX_LINES + 1)})
    (breach,) = layers.check(root)
    assert (
        breach
        == f"checks/big.py: {layers.MAX_LINES + 1} lines, over 300: split it by responsibility"
    )


def test_a_module_on_no_floor_is_a_breach(tmp_path: Path) -> None:
    root = tree(tmp_path, {"monitor/newthing/x.py": ""})
    found = layers.check(root)
    assert found and all("is on no floor" in b for b in found)


def test_the_command_exits_1_with_one_line_per_breach(tmp_path: Path) -> None:
    """What ``make lint`` sees: exit 1, the breaches on stdout, a count on stderr."""
    script = tmp_path / "tools" / "layers.py"
    script.parent.mkdir()
    script.write_text((ROOT / "tools" / "layers.py").read_text())
    tree(
        tmp_path, {"monitor/store/x.py": "from monitor.cli import app\n", "monitor/cli/app.py": ""}
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 1
    store, cli = layers.room("monitor.store")[0] + 1, layers.room("monitor.cli")[0] + 1
    assert done.stdout.splitlines() == [
        "monitor/store/x.py:1: monitor.store.x imports monitor.cli.app, which is above it "
        f"(monitor.store on floor {store}, monitor.cli on floor {cli}): move the shared part "
        "down, or pass it in"
    ]
    assert "1 breach" in done.stderr


def _may_import(doc: str) -> tuple[list[str], bool]:
    """The names a "May import:" paragraph lists, and whether it adds "everything below"."""
    allowed = re.split(r"\n\n|Never\b|Nothing imports\b", doc.split("May import:", 1)[1])[0]
    return re.findall(r"``([\w.]+)``", allowed), "everything below" in " ".join(allowed.split())


def test_each_package_says_truly_what_it_may_import() -> None:
    """Every package's docstring says what it may import ("May import: ..."), and that is true
    both ways: what it lists is below it, and what its modules import is listed (a name covers
    what is under it; "and everything below them" adds every floor below the lowest name,
    "everything below it" alone every floor below the package)."""
    checked = 0
    for init in sorted(ROOT.glob("*/**/__init__.py")):
        if init.parts[len(ROOT.parts)] not in layers.PACKAGES or "migrations" in init.parts:
            continue
        package = layers.module_name(init)
        if package == "monitor":  # the overview of the floors, not one room
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import:" in doc, f"{init}: say what the package may import"
        names, below = _may_import(doc)
        mine = layers.room(package)
        assert mine is not None, package
        floors = [layers.room(name) for name in names]
        for name, theirs in zip(names, floors, strict=True):
            assert theirs is not None, f"{init}: {name} is on no floor"
            below_it = theirs[0] < mine[0] or theirs[1] == mine[1]  # or its own room's parent
            assert below_it, f"{init}: says it may import {name}, which is not below it"
        bound = min((f[0] for f in floors if f), default=mine[0]) if below else -1
        for path in init.parent.rglob("*.py"):
            for imp in layers.imports(path):
                target = imp.target
                if not layers.ours(target) or target == package or target.startswith(package + "."):
                    continue
                theirs = layers.room(target)
                assert theirs is not None, target
                if theirs[1] == mine[1]:  # its own room (a subpackage's parent)
                    continue
                covered = any(
                    target == n or target.startswith(n + ".") or theirs[1] == n for n in names
                )
                assert covered or theirs[0] < bound, (
                    f"{path.relative_to(ROOT)}:{imp.line} imports {target}, which {init} does not "
                    "list under May import"
                )
            checked += 1
    assert checked > 100
