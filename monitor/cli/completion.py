"""Shell completion (bash, zsh) and a man page, generated from the one parser, so they list
exactly the commands and options ``relaycert`` has.  ``make docs`` writes them into
``monitor/examples/completion/`` (shipped with the package); a test keeps them current.

    python -m monitor.cli.completion monitor/examples/completion
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor import __version__
from monitor.cli.app import _parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(s for a in parser._actions for s in a.option_strings if s.startswith("--"))


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {c.dest: c.help or "" for c in action._choices_actions}
    return {}


def bash() -> str:
    parser = _parser()
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
        --config|-c|--output|-o|--dir|--password-file|--systemd)
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
    parser = _parser()
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
    parser = _parser()
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


FILES = {"relaycert.bash": bash, "_relaycert": zsh, "relaycert.1": manpage}


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path("monitor/examples/completion")
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in FILES.items():
        (folder / name).write_text(make(), encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
