"""``@`` directives: the scripted-agent lines of the last user message.

Contract: :func:`parse_directives` returns every line starting with ``@`` (leading
spaces allowed) as a :class:`Directive` (lower-cased name, the rest of the line as
arguments); every other line is ordinary text. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_kimi_context.testing.tokenizer import message_text


@dataclass(frozen=True)
class Directive:
    """A parsed ``@name args`` line.

    Attributes:
        name: The directive name (lower case, without ``@``).
        args: The rest of the line, stripped.

    Example:
        >>> parse_directives("@reply 20")[0]
        Directive(name='reply', args='20')
    """

    name: str
    args: str


_DIRECTIVE_RE = re.compile(r"^\s*@([A-Za-z_][A-Za-z0-9_]*)\b[ \t]*(.*)$")


def parse_directives(text: str) -> list[Directive]:
    r"""Return the directives in ``text`` (lines starting with ``@name``), in order.

    Args:
        text: A message text.

    Example:
        >>> [d.name for d in parse_directives("hello\n@call f {}\n  @say ok")]
        ['call', 'say']
    """
    out: list[Directive] = []
    for line in text.splitlines():
        m = _DIRECTIVE_RE.match(line)
        if m:
            out.append(Directive(m.group(1).lower(), m.group(2).strip()))
    return out


def directive_values(text: str, name: str) -> list[str]:
    r"""Return the argument strings of every ``@<name>`` directive in ``text``.

    Test tools use this to read hints such as ``@tool_result_chars 50000``.

    Args:
        text: A message text.
        name: The directive name, without ``@``.

    Returns:
        The arguments, in order.

    Example:
        >>> directive_values("@tool_result_chars 500\nhi", "tool_result_chars")
        ['500']
    """
    return [d.args for d in parse_directives(text) if d.name == name.lower()]


def _plain_text(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not _DIRECTIVE_RE.match(line)).strip()


def _first_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def _last_user_index(messages: Sequence[Mapping[str, Any]]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    return -1
