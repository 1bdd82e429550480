"""Shell completion (bash, zsh), a man page and the command reference, generated from the one
parser, so they list exactly the commands and options ``relaycert`` has (each command declares
its own: :mod:`monitor.cli.base`).  ``make docs`` writes the first three into
``monitor/examples/completion/`` (shipped with the package) and the reference into
``docs/commands.md`` (:mod:`.docgen`); tests keep them current.

    python -m monitor.cli.completion monitor/examples/completion
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor import __version__
from monitor.cli.app import build_parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(s for a in parser._actions for s in a.option_strings if s.startswith("--"))


def _file_options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option of any command that takes a path (``type=Path``): bash completes file
    names after it."""
    return sorted(
        {
            flag
            for sub in _commands(parser).values()
            for action in sub._actions
            if action.type is Path
            for flag in action.option_strings
        }
    )


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {c.dest: c.help or "" for c in action._choices_actions}
    return {}


def bash() -> str:
    parser = build_parser()
    commands = _commands(parser)
    cases = "\n".join(
        f'        {name}) opts="{" ".join(_options(sub))}" ;;' for name, sub in commands.items()
    )
    return f"""# bash completion for relaycert {__version__} (generated from its parser)
_relaycert() {{
    local cur prev command opts
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=( $(compgen -W "{" ".join(commands)} --help --version" -- "$cur") )
        return
    fi
    case "$prev" in
        {"|".join(_file_options(parser))})
            COMPREPLY=( $(compgen -f -- "$cur") ); return ;;
    esac
    command="${{COMP_WORDS[1]}}"
    case "$command" in
{cases}
        *) opts="" ;;
    esac
    COMPREPLY=( $(compgen -W "$opts --help" -- "$cur") )
}}
complete -F _relaycert relaycert
complete -F _relaycert check_relaycert
"""


def zsh() -> str:
    parser = build_parser()
    helps = _helps(parser)
    commands = "\n".join(
        f"    '{name}:{helps.get(name, '').replace(chr(39), '')}'" for name in _commands(parser)
    )
    cases = "\n".join(
        f"        {name}) _arguments {' '.join(repr(o) for o in _options(sub))} '*:file:_files' ;;"
        for name, sub in _commands(parser).items()
    )
    return f"""#compdef relaycert
# zsh completion for relaycert {__version__} (generated from its parser)
_relaycert() {{
  local -a commands
  commands=(
{commands}
  )
  if (( CURRENT == 2 )); then
    _describe 'command' commands
    return
  fi
  case $words[2] in
{cases}
  esac
}}
_relaycert "$@"
"""


def _roff(text: str) -> str:
    return text.replace("\\", "\\\\").replace("-", "\\-").replace("'", "\\(aq")


def manpage() -> str:
    parser = build_parser()
    helps = _helps(parser)
    lines = [
        f'.TH RELAYCERT 1 "" "relaycert {__version__}" "User Commands"',
        ".SH NAME",
        "relaycert, check_relaycert \\- certificate compliance monitor for mail servers that "
        "relay through Microsoft 365",
        ".SH SYNOPSIS",
        ".B relaycert",
        "\\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".br",
        ".B check_relaycert",
        "[\\fB\\-\\-endpoint\\fR \\fINAME\\fR]",
        "(the same as \\fBrelaycert scan \\-\\-format nagios\\fR)",
        ".SH DESCRIPTION",
        _roff(parser.description or ""),
        ".SH COMMANDS",
    ]
    for name, sub in _commands(parser).items():
        lines += [".TP", f"\\fB{name}\\fR", _roff(helps.get(name, ""))]
        for action in sub._actions:
            if not action.option_strings or "--help" in action.option_strings:
                continue
            flags = ", ".join(action.option_strings)
            lines += [".RS", ".TP", f"\\fB{_roff(flags)}\\fR", _roff(action.help or ""), ".RE"]
    lines += [
        ".SH EXIT STATUS",
        "0 ok (or only information), 1 warning, 2 critical, 3 unknown: a probe could not "
        "complete, a usage or configuration error, or relaycert itself failed.",
        ".SH ENVIRONMENT",
        ".TP",
        ".B RELAYCERT_CONFIG",
        "The configuration file when \\fB\\-\\-config\\fR is not given (default "
        "/etc/relaycert/relaycert.toml).",
        ".TP",
        ".B RELAYCERT_DEBUG",
        "Set to 1 to print a traceback on an internal error.",
        ".SH SEE ALSO",
        "The documentation in docs/: configuration, rules, outbound checks, renewal, running it.",
    ]
    return "\n".join(lines) + "\n"


REFERENCE_HEADER = """\
# Command reference

<!-- Generated by `python -m monitor.cli.docgen` from the commands' own declarations; do not edit
by hand. -->

`relaycert COMMAND [OPTIONS]`; `relaycert COMMAND --help` prints the same options. Exit codes
follow the monitoring-plugin convention: 0 ok (or only information), 1 warning, 2 critical,
3 unknown (a probe could not complete, a usage or configuration error, or relaycert itself
failed). A command that reads the configuration takes `--config FILE`; without it,
`$RELAYCERT_CONFIG`, else `/etc/relaycert/relaycert.toml`. The monitoring plugin
`check_relaycert` has options of its own (`check_relaycert --help`, [running it](service.md)).

| Command | What it does |
|---|---|
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def reference() -> str:
    """``docs/commands.md``: each command, its options, their help and defaults."""
    parser = build_parser()
    helps = _helps(parser)
    commands = _commands(parser)
    lines = [REFERENCE_HEADER]
    lines += [f"| [`{name}`](#{name}) | {_cell(helps.get(name, ''))} |\n" for name in commands]
    for name, sub in commands.items():
        arguments = [a for a in sub._actions if "--help" not in a.option_strings]
        shown = {a: sub._get_formatter()._format_action_invocation(a) for a in arguments}
        positional = [shown[a] for a in arguments if not a.option_strings]
        usage = " ".join(["relaycert", name, "[OPTIONS]", *positional])
        lines.append(f"\n## {name}\n\n`{usage}`: {_cell(helps.get(name, ''))}\n\n")
        lines.append("| Argument | What it does | Default |\n|---|---|---|\n")
        for action in arguments:
            default = action.default
            given = "required" if action.required and action.option_strings else ""
            if default not in (None, False, argparse.SUPPRESS):
                given = f"`{default}`"
            lines.append(f"| `{_cell(shown[action])}` | {_cell(action.help or '')} | {given} |\n")
    return "".join(lines)


FILES = {"relaycert.bash": bash, "_relaycert": zsh, "relaycert.1": manpage}


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path("monitor/examples/completion")
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in FILES.items():
        (folder / name).write_text(make(), encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
