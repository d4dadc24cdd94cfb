"""Tool arguments from a JSON schema and the user's text; JSON replies.

Contract: :func:`synthesize_from_schema` builds a value matching a tool's JSON schema,
taking quoted strings and numbers from the text in order; a forced ``tool_choice`` or a
tool named like the request picks the tool; a ``response_format`` of JSON gets a JSON
reply. Deterministic, pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from langchain_kimi_context.testing.responders.directives import _plain_text
from langchain_kimi_context.testing.responders.protocol import ResponderRequest

_QUOTED_RE = re.compile(r"'([^']+)'|\"([^\"]+)\"|“([^”]+)”|「([^」]+)」")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


class _ValueSource:
    """Values pulled from user text in order, for schema synthesis."""

    def __init__(self, text: str) -> None:
        plain = _plain_text(text)
        self.text = plain
        self.strings = [next(g for g in m.groups() if g) for m in _QUOTED_RE.finditer(plain)]
        self.numbers = [float(x) for x in _NUMBER_RE.findall(plain)]

    def string(self, name: str) -> str:
        if self.strings:
            return self.strings.pop(0)
        words = self.text.split()
        return " ".join(words[:8]) if words else f"{name} value"

    def number(self) -> float | None:
        return self.numbers.pop(0) if self.numbers else None


def _synth(schema: Mapping[str, Any], name: str, source: _ValueSource, depth: int) -> Any:
    if depth > 6:
        return None
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if isinstance(o, Mapping) and o.get("type") != "null"]
            return _synth(non_null[0] if non_null else options[0], name, source, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    stype = schema.get("type")
    if isinstance(stype, list):
        stype = next((t for t in stype if t != "null"), "string")
    if stype == "object" or (stype is None and "properties" in schema):
        props = schema.get("properties") or {}
        required = schema.get("required")
        keys = list(props) if required is None else [k for k in props if k in required]
        return {
            k: _synth(props[k] if isinstance(props[k], Mapping) else {}, k, source, depth + 1)
            for k in keys
        }
    if stype == "array":
        items = schema.get("items")
        return [_synth(items if isinstance(items, Mapping) else {}, name, source, depth + 1)]
    if stype == "integer":
        number = source.number()
        return int(number) if number is not None else 1
    if stype == "number":
        number = source.number()
        return number if number is not None else 1.0
    if stype == "boolean":
        return True
    if stype == "null":
        return None
    return source.string(name)


def synthesize_from_schema(schema: Mapping[str, Any], text: str = "") -> Any:
    """Build a value matching a JSON schema, taking values from ``text`` in order.

    Quoted strings in ``text`` fill string fields; numbers fill integer/number fields;
    otherwise strings get the first words of ``text``, numbers 1, booleans ``True``.

    Args:
        schema: A JSON schema (objects, arrays, scalars, enums, anyOf/oneOf).
        text: Text to take values from (usually the last user message).

    Returns:
        A JSON-compatible value.

    Example:
        >>> schema = {"type": "object", "properties": {"input": {"type": "integer"}},
        ...           "required": ["input"]}
        >>> synthesize_from_schema(schema, "What is magic_function(3)?")
        {'input': 3}
        >>> synthesize_from_schema({"type": "object", "properties": {
        ...     "name": {"type": "string"}}}, "Create 'Acme' now")
        {'name': 'Acme'}
    """
    return _synth(schema, "value", _ValueSource(text), 0)


def _tool_schema(tool: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    function = tool.get("function") or {}
    params = function.get("parameters") if isinstance(function, Mapping) else None
    name = str(function.get("name", "")) if isinstance(function, Mapping) else ""
    return name, params if isinstance(params, Mapping) else {"type": "object", "properties": {}}


def _forced_tool(request: ResponderRequest) -> Mapping[str, Any] | None:
    choice = request.body.get("tool_choice")
    if not request.tools or choice in (None, "auto", "none"):
        return None
    if isinstance(choice, Mapping):
        wanted = (choice.get("function") or {}).get("name")
        for tool in request.tools:
            if _tool_schema(tool)[0] == wanted:
                return tool
        return None
    if choice in ("required", "any"):
        return request.tools[0]
    return None


_GENERIC_NAME_WORDS = frozenset(
    {"tool", "tools", "func", "function", "call", "make", "query", "value", "data", "info"}
)


def _name_words(name: str) -> list[str]:
    parts = re.split(r"[_\-\s]+|(?<=[a-z])(?=[A-Z])", name)
    return [p.lower() for p in parts if len(p) >= 4 and p.lower() not in _GENERIC_NAME_WORDS]


def _auto_tool(request: ResponderRequest, text: str) -> Mapping[str, Any] | None:
    """The offered tool whose name words appear most in ``text`` (auto tool choice)."""
    lowered = text.lower()
    best: tuple[int, Mapping[str, Any] | None] = (0, None)
    for tool in request.tools:
        name = _tool_schema(tool)[0]
        hits = sum(1 for w in _name_words(name) if re.search(rf"\b{re.escape(w)}", lowered))
        if hits > best[0]:
            best = (hits, tool)
    return best[1]


def _json_reply(request: ResponderRequest, text: str) -> str | None:
    fmt = request.body.get("response_format")
    if not isinstance(fmt, Mapping):
        return None
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        value = synthesize_from_schema(schema if isinstance(schema, Mapping) else {}, text)
        return json.dumps(value, ensure_ascii=False)
    if fmt.get("type") == "json_object":
        plain = _plain_text(text)
        keys = [
            k
            for k in (next(g for g in m.groups() if g) for m in _QUOTED_RE.finditer(plain))
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", k)
        ]
        if not keys:
            return json.dumps({"reply": plain[:80]}, ensure_ascii=False)
        words = plain.split()
        return json.dumps(
            {k: " ".join(words[i : i + 6]) or k for i, k in enumerate(dict.fromkeys(keys))},
            ensure_ascii=False,
        )
    return None
