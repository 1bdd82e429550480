"""Configuration errors located by key: a cross-field check raises :func:`at` with where it
is (``("endpoints", 2, "port")``), and :func:`key_of` writes that as the file's reader sees it
(``endpoints[2] (mail2).port``)."""

from __future__ import annotations

from typing import Any

from monitor.config.common import escaped


class LocatedError(ValueError):
    """A validation error with where in the file it is."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def at(loc: tuple[str | int, ...], message: str) -> LocatedError:
    return LocatedError(loc, message)


def unique(section: str, names: list[str]) -> None:
    """Names are unique within a section; the error points at the second one."""
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise at((section, index, "name"), f"duplicate {section[:-1]} '{name}'")
        seen.add(name)


def key_of(loc: tuple[str | int, ...], data: dict[str, Any]) -> str:
    """``('endpoints', 2, 'port')`` -> ``endpoints[2] (mail2).port``."""
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(item, int):
            name = None
            if isinstance(node, list) and item < len(node):
                node = node[item]
                name = node.get("name") if isinstance(node, dict) else None
            parts[-1] += f"[{item}]" + (f" ({escaped(name)})" if isinstance(name, str) else "")
        else:
            parts.append(item)
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def describe(error: Any) -> str:
    kind, message = error["type"], error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown key; check the spelling against docs/configuration.md"
    if kind == "missing":
        return "required key is missing"
    return str(message)
