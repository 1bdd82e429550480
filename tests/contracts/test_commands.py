"""The command contract (``monitor/cli/base.py``), run against every command in
``monitor.cli.app.COMMANDS``: the module declares ``NAME`` (its key in the table), ``HELP``,
``NEEDS_CONFIG``, ``add_arguments`` and ``run``; what it declares reaches the parser (``--config``
too when it needs a configuration), the shipped completions, the man page and
``docs/commands.md``; and importing it to build the parser loads no database, TLS, event-loop,
configuration-model or rendering library, so ``relaycert --help`` stays cheap.

A new command is its module and one line in the table, nothing else by hand:
:func:`test_a_new_command_is_one_line_in_the_table` adds one and finds it everywhere.
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from monitor.cli import app, completion
from monitor.cli.base import Command

ROOT = Path(__file__).resolve().parent.parent.parent
SHIPPED = ROOT / "monitor" / "examples" / "completion"
REFERENCE = ROOT / "docs" / "commands.md"

# Beyond ``monitor.cli.app`` itself, building the parser may load the command modules, the
# standard library (but not asyncio, ssl or sqlite3) and these cheap helpers: nothing that builds
# rule or result classes, opens a store, speaks TLS, parses the configuration or renders a table.
GROUND = ("monitor.clock", "monitor.files", "monitor.examples")
HEAVY_STDLIB = ("asyncio", "ssl", "sqlite3")


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    return completion._commands(parser)[name]


def _long_options(parser: argparse.ArgumentParser) -> list[str]:
    """The command's own long options and ``--config`` (not ``--help``)."""
    options = (s for a in parser._actions for s in a.option_strings if s.startswith("--"))
    return [s for s in options if s != "--help"]


@pytest.mark.parametrize("name", list(app.COMMANDS))
def test_the_module_declares_the_contract(name: str) -> None:
    module = app.command(name)
    assert isinstance(module, Command), f"{app.COMMANDS[name]}: see monitor/cli/base.py"
    assert name == module.NAME, f"{app.COMMANDS[name]}: NAME is not its key in COMMANDS"
    assert isinstance(module.HELP, str) and module.HELP.strip() and "\n" not in module.HELP
    assert isinstance(module.NEEDS_CONFIG, bool)
    assert list(inspect.signature(module.add_arguments).parameters) == ["parser"]
    assert list(inspect.signature(module.run).parameters) == ["args"]


@pytest.mark.parametrize("name", list(app.COMMANDS))
def test_its_arguments_reach_the_parser(name: str) -> None:
    module = app.command(name)
    own = argparse.ArgumentParser(add_help=False)
    module.add_arguments(own)
    declared = [a.dest for a in own._actions]
    sub = _subparser(app.build_parser(), name)
    parsed = [a.dest for a in sub._actions if a.dest != "help"]
    assert parsed == (["config"] if module.NEEDS_CONFIG else []) + declared


@pytest.mark.parametrize("name", list(app.COMMANDS))
def test_it_is_in_the_completions_the_man_page_and_the_docs(name: str) -> None:
    bash = (SHIPPED / "relaycert.bash").read_text()
    zsh = (SHIPPED / "_relaycert").read_text()
    man = (SHIPPED / "relaycert.1").read_text()
    docs = REFERENCE.read_text(encoding="utf-8")
    help_line = app.command(name).HELP
    assert f'compgen -W "{" ".join(app.COMMANDS)} ' in bash
    case = next(line for line in bash.splitlines() if line.startswith(f"        {name}) opts="))
    assert f"    '{name}:" in zsh and f"        {name}) _arguments" in zsh
    assert f".TP\n\\fB{name}\\fR\n{completion._roff(help_line)}\n" in man
    assert f"| [`{name}`](#{name}) |" in docs and f"\n## {name}\n" in docs
    section = docs.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
    for option in _long_options(_subparser(app.build_parser(), name)):
        assert option in case.split('"')[1].split()
        assert f"'{option}'" in zsh
        assert completion._roff(option) in man
        assert f"`{option}" in section or f", {option}" in section


def test_the_command_reference_is_current() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == completion.reference(), "run `make docs`"


def test_building_the_parser_loads_only_the_commands() -> None:
    program = (
        "import json, sys\n"
        "from monitor.cli.app import build_parser, main\n"
        "before = set(sys.modules)\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "build_parser()\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert set(app.COMMANDS.values()) <= set(loaded)
    allowed = {*app.COMMANDS.values(), *GROUND}
    extra = [
        name
        for name in loaded
        if name.split(".")[0] in HEAVY_STDLIB
        or (name.split(".")[0] not in sys.stdlib_module_names and name not in allowed)
    ]
    assert not extra, "import these inside run (monitor/cli/base.py)"


def _hello() -> types.ModuleType:
    """A command as a new one is written: a module with the five declarations."""
    hello = types.ModuleType("relaycert_hello")
    hello.NAME = "hello"  # type: ignore[attr-defined]
    hello.HELP = "greet the configuration file"  # type: ignore[attr-defined]
    hello.NEEDS_CONFIG = True  # type: ignore[attr-defined]

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--loud", action="store_true", help="greet it loudly")
        parser.add_argument("--card", type=Path, metavar="FILE", help="the greeting card")

    def run(args: argparse.Namespace) -> int:
        print(f"hello {args.config}{'!' if args.loud else ''}")
        return 1

    hello.add_arguments = add_arguments  # type: ignore[attr-defined]
    hello.run = run  # type: ignore[attr-defined]
    return hello


def test_a_new_command_is_one_line_in_the_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "relaycert_hello", _hello())
    monkeypatch.setitem(app.COMMANDS, "hello", "relaycert_hello")  # the one line
    monkeypatch.setenv("RELAYCERT_CONFIG", "/etc/hello.toml")

    assert app.main(["hello", "--loud"]) == 1
    assert capsys.readouterr().out == "hello /etc/hello.toml!\n"
    with pytest.raises(SystemExit) as usage:
        app.main(["hello", "--quiet"])
    assert usage.value.code == 3
    assert "unrecognized arguments: --quiet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        app.main(["--help"])
    assert "greet the configuration file" in capsys.readouterr().out

    bash = completion.bash()
    assert 'hello) opts="--card --config --help --loud"' in bash
    (files,) = [line for line in bash.splitlines() if line.endswith(")") and "--config|" in line]
    assert "--card" in files.strip()[:-1].split("|")  # a file name is completed after it
    assert "'hello:greet the configuration file'" in completion.zsh()
    assert "\\fBhello\\fR" in completion.manpage() and "\\-\\-loud" in completion.manpage()
    assert "\n## hello\n" in completion.reference() and "greet it loudly" in completion.reference()
