"""Deterministic responders: what the emulated model "says".

A responder is any callable ``(ResponderRequest) -> ReplySpec``. The emulator validates
the request, asks the responder for a reply, then assigns Kimi-style tool-call ids
(``functions.<name>:<n>``), counts tokens, applies ``max_tokens`` and bills the call.

Default responder (:class:`DefaultResponder`): the :class:`CompactionResponder` when the
request has NO tools and its first system message contains "compact" or "summar"
(case-insensitive), else the :class:`ScriptedAgentResponder`.

Scripted agent grammar
======================

Directives are lines of the LAST user message that start with ``@`` (leading spaces
allowed); every other line is ordinary text. Arguments are separated by whitespace; a
JSON argument is the rest of the line.

Tool steps (a *step* is one assistant message; its calls run in parallel):

``@call <tool> [<json object>]``
    Add a call of ``<tool>`` with those arguments (default ``{}``) to the current
    step. Consecutive ``@call`` lines form ONE assistant message with parallel calls.
``@then``
    End the current step; following ``@call`` lines form the next assistant message.
``@calls <n> <tool> [<json object>]``
    Append ``n`` sequential steps, one call each (the text ``{i}`` in the JSON is
    replaced by the 1-based step number), e.g. ``@calls 30 read_file {"path": "f{i}.py"}``.

The agent is stateless: it counts the assistant tool-call messages after the last user
message to know how many steps are done, emits the next step, and after the last step
(when the last message is a tool result) gives the final reply. Calls are emitted even
for tools the request did not declare (to test hallucinated tool names), but never when
``tool_choice`` is ``"none"``.

Final reply:

``@say <text>``
    Exact text (several ``@say`` lines are joined with newlines).
``@reply <N>``
    Deterministic prose of exactly ``N`` tokens of the emulator's tokenizer (after
    ``@say`` text, if both are given).
``@empty``
    Empty content (no tool calls): tests of empty-reply handling.
``@finish <reason>``
    Force ``finish_reason`` (e.g. ``length``, ``content_filter``).
``@think <N>``
    Reasoning of exactly ``N`` tokens on every reply of the turn (thinking models
    only; without it thinking models reason briefly, a dozen tokens).
``@fail <fault> [args]``
    Make the emulator fail this request once (then succeed on the identical retry):
    ``rate_limit [T]``, ``overloaded``, ``quota``, ``server_error``, ``overflow``,
    ``content_filter``, ``permission_denied``, ``empty``, ``slow <seconds>``,
    ``cut <k>`` (stream closed after ``k`` chunks), or
    ``<fault> x<count>`` to fail ``count`` times, e.g. ``@fail server_error x2``.
``@<anything else> ...``
    A hint ignored by the agent (e.g. ``@tool_result_chars 50000`` for test tools, read
    with :func:`directive_values`).

Without a final-reply directive, the reply after tool results quotes them briefly
(``Tool results: read_file -> <first 60 chars>; ...``); with no directive at all the
reply is ``Reply to: <first words of the user text>``.

Tool choice and structured output:

* ``tool_choice`` ``"required"`` or a named function, with no scripted call at this
  point and a last message that is not a tool result (so forced loops end): the agent
  calls the forced (or first) tool with arguments synthesised from its JSON schema and
  the user text (quoted strings and numbers, in order).
* ``tool_choice`` auto and a user message with NO directive at all: the agent calls the
  offered tool whose name words (``get_weather`` -> "weather"; generic words such as
  "tool" ignored) occur in the user text, once, then answers
  (``ScriptedAgentResponder(auto_tool_calls=False)`` turns this off).
* ``response_format`` ``json_schema``: a JSON reply synthesised the same way;
  ``json_object``: an object whose keys are the quoted identifiers of the user text
  (e.g. ``'setup'`` and ``'punchline'``), else ``{"reply": ...}``.

The emulator (not the agent) applies ``stop`` sequences and ``max_tokens``.

Compaction responder
====================
Answers the transcript form (above) and the cache-friendly form: the conversation as
sent before, tools included, with a last user message starting "Compaction request:"
(that message is the instruction, not content; an earlier summary in the conversation, a
system message starting "Previous context has been compacted", is folded in item by
item). Returns a Markdown summary with the headings ``## Current Task``, ``## Errors &
Solutions``, ``## Code``, ``## System Context``, ``## Design Decisions`` and ``## TODO``,
built from the request text: the current task (the last real user request), lines
mentioning errors/tracebacks/exceptions, file paths, other system messages and
environment lines, ``Decision:`` lines and ``TODO:`` lines; sized to at most a quarter of
the request's prompt tokens (the headings are always present).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from langchain_kimi_context.testing.tokenizer import EmulatorTokenizer, message_text

__all__ = [
    "CompactionResponder",
    "DefaultResponder",
    "Directive",
    "ReplySpec",
    "Responder",
    "ResponderRequest",
    "ScriptedAgentResponder",
    "ToolCallSpec",
    "deterministic_text",
    "directive_values",
    "is_compaction_request",
    "parse_directives",
    "synthesize_from_schema",
]

_WORDS = [
    "alpha",
    "bravo",
    "cedar",
    "delta",
    "ember",
    "fable",
    "grove",
    "harbor",
    "island",
    "jasper",
    "kettle",
    "lantern",
    "meadow",
    "nectar",
    "orbit",
    "pillar",
    "quartz",
    "river",
    "saddle",
    "timber",
    "umber",
    "valley",
    "willow",
    "yonder",
    "zephyr",
    "anchor",
    "basalt",
    "canyon",
    "drift",
    "echo",
    "falcon",
    "garnet",
    "hollow",
    "ivory",
    "juniper",
    "kindle",
    "lumen",
    "marble",
    "north",
    "opal",
    "prism",
    "quiver",
    "ridge",
    "stone",
    "tundra",
    "upland",
    "vapor",
    "wander",
    "yarrow",
    "zenith",
    "amber",
    "birch",
    "coral",
    "dune",
]


@dataclass(frozen=True)
class ToolCallSpec:
    """One tool call the responder wants the model to make.

    Attributes:
        name: The function name.
        arguments: The arguments (a dict, serialised as JSON, or a raw JSON string).

    Example:
        >>> ToolCallSpec("read_file", {"path": "a.py"}).arguments_json()
        '{"path": "a.py"}'
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)

    def arguments_json(self) -> str:
        """Return the arguments as the JSON string sent in ``function.arguments``.

        Returns:
            JSON text.

        Example:
            >>> ToolCallSpec("f", '{"a":1}').arguments_json()
            '{"a":1}'
        """
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), ensure_ascii=False)


@dataclass(frozen=True)
class ReplySpec:
    """What the model replies (one choice).

    Attributes:
        content: The assistant text.
        tool_calls: Tool calls (ids are assigned by the emulator).
        reasoning: ``reasoning_content`` for thinking requests; ``None`` lets the
            emulator use a short default when thinking is on (ignored when off).
        finish_reason: Forced finish reason; ``None`` = ``"tool_calls"`` when there are
            calls, else ``"stop"`` (or ``"length"`` when cut by ``max_tokens``).
        fail: A fault directive (see ``@fail``) the emulator applies once.

    Example:
        >>> ReplySpec(content="hi").finish_reason is None
        True
    """

    content: str = ""
    tool_calls: tuple[ToolCallSpec, ...] = ()
    reasoning: str | None = None
    finish_reason: str | None = None
    fail: str | None = None


@dataclass(frozen=True)
class ResponderRequest:
    """The request as a responder sees it (already validated).

    Attributes:
        body: The request body as sent.
        messages: The effective messages (a message-mode cache already spliced in).
        tools: The effective tools.
        model: The model id.
        thinking: Whether thinking is on for this request.
        prompt_tokens: Prompt tokens by the emulator's tokenizer.
        max_tokens: Effective ``max_tokens``.
        tokenizer: The emulator's tokenizer.
        choice_index: Which of the ``n`` choices is being generated.
        reason_free: A tool-call reply to this request carries empty reasoning (the
            emulator's ``reason_free_every``), unless ``@think`` asks for reasoning.

    Example:
        >>> req = ResponderRequest.from_messages([{"role": "user", "content": "@say hi"}])
        >>> ScriptedAgentResponder()(req).content
        'hi'
    """

    body: Mapping[str, Any]
    messages: Sequence[Mapping[str, Any]]
    tools: Sequence[Mapping[str, Any]] = ()
    model: str = "kimi-k2.6"
    thinking: bool = False
    prompt_tokens: int = 0
    max_tokens: int = 1024
    tokenizer: EmulatorTokenizer = field(default_factory=EmulatorTokenizer)
    choice_index: int = 0
    reason_free: bool = False

    @classmethod
    def from_messages(
        cls,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] = (),
        **kwargs: Any,
    ) -> ResponderRequest:
        """Build a request from messages (handy for testing a responder directly).

        Args:
            messages: Chat messages.
            tools: Tools.
            **kwargs: Other fields (``model``, ``thinking``, ...).

        Returns:
            The request, with ``prompt_tokens`` counted when not given.

        Example:
            >>> ResponderRequest.from_messages([{"role": "user", "content": "hi"}]).prompt_tokens
            3
        """
        tokenizer = kwargs.pop("tokenizer", None) or EmulatorTokenizer()
        body = kwargs.pop("body", None) or {"messages": list(messages), "tools": list(tools)}
        prompt_tokens = kwargs.pop("prompt_tokens", None)
        if prompt_tokens is None:
            prompt_tokens = tokenizer.count_messages(messages, tools)
        return cls(
            body=body,
            messages=messages,
            tools=tools,
            tokenizer=tokenizer,
            prompt_tokens=prompt_tokens,
            **kwargs,
        )


@runtime_checkable
class Responder(Protocol):
    """Anything that turns a validated request into a reply.

    Example:
        >>> isinstance(ScriptedAgentResponder(), Responder)
        True
        >>> isinstance(lambda req: ReplySpec(content="x"), Responder)
        True
    """

    def __call__(self, request: ResponderRequest) -> ReplySpec:
        """Return the reply for ``request``."""
        ...


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

    Returns:
        The directives.

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


def deterministic_text(n_tokens: int, seed: str = "") -> str:
    """Return prose of exactly ``n_tokens`` tokens of the emulator's tokenizer.

    Args:
        n_tokens: Token count (0 gives ``""``).
        seed: Varies the words deterministically.

    Returns:
        The text.

    Example:
        >>> deterministic_text(4, "x")
        'prism saddle birch.'
        >>> EmulatorTokenizer().count_text(deterministic_text(250, "seed"))
        250
    """
    if n_tokens <= 0:
        return ""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    words = rng.choices(_WORDS, k=n_tokens)
    if n_tokens == 1:
        return words[0]
    return " ".join(words[:-1]) + "."


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


@dataclass
class _Script:
    steps: list[list[ToolCallSpec]]
    say: list[str]
    reply_tokens: int | None
    think_tokens: int | None
    empty: bool
    finish: str | None
    fail: str | None
    has_final_directive: bool


def _parse_call(args: str) -> ToolCallSpec:
    parts = args.split(None, 1)
    if not parts:
        msg = "@call needs a tool name: '@call <tool> {json args}'"
        raise ValueError(msg)
    name = parts[0]
    raw = parts[1].strip() if len(parts) > 1 else ""
    if not raw:
        return ToolCallSpec(name, {})
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        msg = f"@call {name}: arguments are not valid JSON ({exc}): {raw!r}"
        raise ValueError(msg) from exc
    if not isinstance(value, dict):
        msg = f"@call {name}: arguments must be a JSON object, got {raw!r}"
        raise ValueError(msg)
    return ToolCallSpec(name, value)


def _int_arg(directive: Directive) -> int:
    try:
        value = int(directive.args.split()[0])
    except (IndexError, ValueError) as exc:
        msg = f"@{directive.name} needs a non-negative integer, got {directive.args!r}"
        raise ValueError(msg) from exc
    if value < 0:
        msg = f"@{directive.name} needs a non-negative integer, got {value}"
        raise ValueError(msg)
    return value


def _parse_script(text: str) -> _Script:
    script = _Script([], [], None, None, False, None, None, False)
    current: list[ToolCallSpec] = []

    def close() -> None:
        nonlocal current
        if current:
            script.steps.append(current)
            current = []

    for directive in parse_directives(text):
        name = directive.name
        if name == "call":
            current.append(_parse_call(directive.args))
        elif name == "then":
            close()
        elif name == "calls":
            close()
            parts = directive.args.split(None, 1)
            count = _int_arg(directive)
            if len(parts) < 2:
                msg = "@calls needs '<n> <tool> [json]'"
                raise ValueError(msg)
            for i in range(1, count + 1):
                script.steps.append([_parse_call(parts[1].replace("{i}", str(i)))])
        elif name == "say":
            script.say.append(directive.args)
            script.has_final_directive = True
        elif name == "reply":
            script.reply_tokens = _int_arg(directive)
            script.has_final_directive = True
        elif name == "think":
            script.think_tokens = _int_arg(directive)
        elif name == "empty":
            script.empty = True
            script.has_final_directive = True
        elif name == "finish":
            script.finish = directive.args or None
        elif name == "fail":
            script.fail = directive.args or "server_error"
    close()
    return script


class ScriptedAgentResponder:
    r"""The default agent: follows ``@`` directives in the last user message.

    See the module docstring for the full grammar.

    Args:
        default_reasoning_tokens: Reasoning length of thinking replies without
            ``@think``.
        quote_chars: Characters of each tool result quoted in the final reply.
        auto_tool_calls: With ``tool_choice`` auto and a user message WITHOUT any
            directive, call the offered tool whose name words (``get_weather`` ->
            "weather") appear in the user text, like a real model would.

    Example:
        >>> agent = ScriptedAgentResponder()
        >>> msgs = [{"role": "user", "content": '@call read_file {"path": "a.py"}\n@say done'}]
        >>> reply = agent(ResponderRequest.from_messages(msgs))
        >>> [(c.name, dict(c.arguments)) for c in reply.tool_calls]
        [('read_file', {'path': 'a.py'})]
        >>> msgs += [
        ...     {"role": "assistant", "tool_calls": [{"id": "functions.read_file:0",
        ...      "type": "function", "function": {"name": "read_file", "arguments": "{}"}}]},
        ...     {"role": "tool", "tool_call_id": "functions.read_file:0", "content": "x = 1"}]
        >>> agent(ResponderRequest.from_messages(msgs)).content
        'done'
    """

    def __init__(
        self,
        *,
        default_reasoning_tokens: int = 12,
        quote_chars: int = 60,
        auto_tool_calls: bool = True,
    ) -> None:
        self.default_reasoning_tokens = default_reasoning_tokens
        self.quote_chars = quote_chars
        self.auto_tool_calls = auto_tool_calls

    def __call__(self, request: ResponderRequest) -> ReplySpec:
        """Return the next step of the script for ``request``.

        Args:
            request: The validated request.

        Returns:
            The reply.

        Example:
            >>> ScriptedAgentResponder()(ResponderRequest.from_messages(
            ...     [{"role": "user", "content": "Hello there"}])).content
            'Reply to: Hello there'
        """
        messages = request.messages
        last_user = _last_user_index(messages)
        user_text = message_text(messages[last_user].get("content")) if last_user >= 0 else ""
        script = _parse_script(user_text)
        after = messages[last_user + 1 :] if last_user >= 0 else messages
        steps_done = sum(1 for m in after if m.get("role") == "assistant" and m.get("tool_calls"))
        seed = f"{user_text}|{steps_done}|{request.choice_index}"
        reasoning: str | None = None
        if request.thinking:
            n = (
                script.think_tokens
                if script.think_tokens is not None
                else self.default_reasoning_tokens
            )
            reasoning = deterministic_text(n, "think|" + seed)
        allow_calls = request.body.get("tool_choice") != "none"
        if allow_calls and steps_done < len(script.steps):
            if request.reason_free and script.think_tokens is None:
                reasoning = ""  # a reason-free tool-call turn, as real replies have
            return ReplySpec(
                content="",
                tool_calls=tuple(script.steps[steps_done]),
                reasoning=reasoning,
                finish_reason=script.finish,
                fail=script.fail,
            )
        last_is_tool = bool(messages) and messages[-1].get("role") == "tool"
        forced = _forced_tool(request) if allow_calls and not last_is_tool else None
        if (
            forced is None
            and allow_calls
            and self.auto_tool_calls
            and not last_is_tool
            and not steps_done
            and not parse_directives(user_text)
            and _json_reply(request, user_text) is None
        ):
            forced = _auto_tool(request, user_text)
        if forced is not None and not script.steps:
            name, schema = _tool_schema(forced)
            args = synthesize_from_schema(schema, user_text)
            return ReplySpec(
                content="",
                tool_calls=(ToolCallSpec(name, args if isinstance(args, dict) else {}),),
                reasoning=reasoning,
                finish_reason=script.finish,
                fail=script.fail,
            )
        content = self._final_text(request, script, user_text, after, seed)
        return ReplySpec(
            content=content, reasoning=reasoning, finish_reason=script.finish, fail=script.fail
        )

    def _final_text(
        self,
        request: ResponderRequest,
        script: _Script,
        user_text: str,
        after: Sequence[Mapping[str, Any]],
        seed: str,
    ) -> str:
        if script.empty:
            return ""
        if script.has_final_directive:
            parts = list(script.say)
            if script.reply_tokens:
                parts.append(deterministic_text(script.reply_tokens, "reply|" + seed))
            return "\n".join(parts)
        json_text = _json_reply(request, user_text)
        if json_text is not None:
            return json_text
        results = [m for m in after if m.get("role") == "tool"]
        if results:
            names: dict[str, str] = {}
            for m in after:
                for call in m.get("tool_calls") or []:
                    if isinstance(call, Mapping):
                        fn = call.get("function") or {}
                        names[str(call.get("id"))] = str(fn.get("name", "tool"))
            quoted = []
            for m in results:
                text = " ".join(message_text(m.get("content")).split())
                if len(text) > self.quote_chars:
                    text = text[: self.quote_chars] + "..."
                quoted.append(f"{names.get(str(m.get('tool_call_id')), 'tool')} -> {text}")
            return "Tool results: " + "; ".join(quoted)
        words = _plain_text(user_text).split()
        snippet = " ".join(words[:12]) if words else "(no text)"
        return f"Reply to: {snippet}"


def is_compaction_request(request: ResponderRequest) -> bool:
    """Return whether ``request`` asks for a compaction summary.

    True when the request has no tools and its FIRST message is a system message that
    contains "compact" or "summar" (case-insensitive) and is not itself a stored summary
    (text starting with "Previous context has been compacted"), so an ordinary tool-less
    turn after a compaction is answered by the agent responder, not summarised again.

    Args:
        request: The request.

    Returns:
        Whether the compaction responder should answer.

    Example:
        >>> is_compaction_request(ResponderRequest.from_messages([
        ...     {"role": "system", "content": "Summarize the conversation."},
        ...     {"role": "user", "content": "..."}]))
        True
        >>> is_compaction_request(ResponderRequest.from_messages([
        ...     {"role": "system", "content": "Previous context has been compacted. ..."},
        ...     {"role": "user", "content": "next question"}]))
        False
    """
    if _is_cached_compaction_request(request):
        return True
    if request.tools or not request.messages:
        return False
    first = request.messages[0]
    if first.get("role") != "system":
        return False
    text = message_text(first.get("content")).strip().lower()
    if text.startswith("previous context has been compacted"):
        return False
    return "compact" in text or "summar" in text


def _is_cached_compaction_request(request: ResponderRequest) -> bool:
    """The cache-friendly form: the conversation + a last user "Compaction request:"."""
    if not request.messages or request.messages[-1].get("role") != "user":
        return False
    text = message_text(request.messages[-1].get("content")).lstrip().lower()
    return text.startswith("compaction request:")


_ERROR_RE = re.compile(
    r"error|exception|traceback|failed|failure|fatal|panic|fix(?:ed)?\b|solution"
    r"|^File \"[^\"]+\", line \d+",
    re.I,
)
_PATH_RE = re.compile(
    r"(?<![\w/.-])(?:[\w.-]+/)*[\w-]+(?:\.[\w-]+)*\.(?:py|pyi|js|jsx|ts|tsx|md|json|toml|yaml|"
    r"yml|txt|rs|go|java|kt|c|h|cc|cpp|hpp|sh|cfg|ini|sql|html|css|ipynb|lock)\b"
)
_DECISION_RE = re.compile(r"\bdecision\s*:", re.I)
_TODO_RE = re.compile(r"\btodo\s*:", re.I)
_CONTEXT_RE = re.compile(
    r"\b(?:python|version|environment|platform|os|linux|macos|windows|config(?:uration)?|"
    r"cwd|working directory|branch)\b",
    re.I,
)
_TRANSCRIPT_USER_RE = re.compile(r"^\s*(?:\[?(?:user|human)\]?\s*[:>])\s*(.+)$", re.I)


def _until_next_marker(text: str) -> str:
    """Cut ``Decision: a. TODO: b`` before the second marker."""
    cut = [m.start() for m in (*_DECISION_RE.finditer(text), *_TODO_RE.finditer(text))]
    later = [c for c in cut if c > 0]
    return text[: min(later)].rstrip() if later else text


def _clip(line: str, limit: int = 200) -> str:
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _dedupe(items: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        if item and item not in seen:
            seen.add(item)
            out.append(item)
    return out


class CompactionResponder:
    r"""Answers compaction requests with a structured summary built from the input.

    Args:
        max_fraction: The summary is at most this fraction of the prompt tokens
            (headings excepted for tiny inputs).
        max_items_per_section: Cap on bullet points per section.

    Example:
        >>> msgs = [
        ...     {"role": "system", "content": "You compact conversations."},
        ...     {"role": "user", "content": "Fix the parser in src/parser.py"},
        ...     {"role": "assistant", "content": "ValueError: bad token at line 3.\n"
        ...      "Decision: use a regex lexer.\nTODO: add tests\n" + "filler " * 400},
        ...     {"role": "user", "content": "Summarize the conversation so far."}]
        >>> text = CompactionResponder()(ResponderRequest.from_messages(msgs)).content
        >>> "## Current Task" in text and "src/parser.py" in text and "Decision:" in text
        True
    """

    HEADINGS = (
        "Current Task",
        "Errors & Solutions",
        "Code",
        "System Context",
        "Design Decisions",
        "TODO",
    )

    def __init__(self, *, max_fraction: float = 0.25, max_items_per_section: int = 40) -> None:
        if not 0 < max_fraction <= 1:
            msg = "max_fraction must be in (0, 1]"
            raise ValueError(msg)
        self.max_fraction = max_fraction
        self.max_items_per_section = max_items_per_section

    def __call__(self, request: ResponderRequest) -> ReplySpec:
        """Return the summary for ``request``.

        Args:
            request: The validated compaction request.

        Returns:
            The reply (content = the Markdown summary).

        Example:
            >>> r = CompactionResponder()(ResponderRequest.from_messages(
            ...     [{"role": "system", "content": "compact"}, {"role": "user", "content": "x"}]))
            >>> r.content.splitlines()[0]
            '## Current Task'
        """
        messages = request.messages
        if _is_cached_compaction_request(request):
            messages = messages[:-1]  # the instruction is not conversation content
        sections = self.extract(messages)
        budget = int(request.prompt_tokens * self.max_fraction)
        text = self._render(sections, budget, request.tokenizer)
        reasoning = "Summarising the conversation." if request.thinking else None
        return ReplySpec(content=text, reasoning=reasoning)

    def extract(self, messages: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
        """Extract the section items from ``messages``.

        Args:
            messages: The compaction request's messages.

        Returns:
            Heading -> items, most important first.

        Example:
            >>> CompactionResponder().extract([{"role": "user", "content": "TODO: ship"}])["TODO"]
            ['TODO: ship']
        """
        first_system = next((i for i, m in enumerate(messages) if m.get("role") == "system"), None)
        errors: list[str] = []
        paths: list[str] = []
        decisions: list[str] = []
        todos: list[str] = []
        context: list[str] = []
        user_requests: list[str] = []
        previous_task: str | None = None
        for index, message in enumerate(messages):
            role = message.get("role")
            text = message_text(message.get("content"))
            for call in message.get("tool_calls") or []:
                if isinstance(call, Mapping):
                    fn = call.get("function") or {}
                    text += f"\n{fn.get('name', '')} {fn.get('arguments', '')}"
            folded = text.lstrip().lower().startswith("previous context has been compacted")
            if role == "system" and not folded:
                if index != first_system and text.strip():
                    context.append(_clip(text))
                continue
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            # A rendered transcript ("[user]: ...") names the user turns itself.
            turns = [m.group(1) for m in map(_TRANSCRIPT_USER_RE.match, lines) if m]
            if role == "user":
                candidates = turns or [_plain_text(text)]
                user_requests.extend(
                    c
                    for c in candidates
                    if c
                    and not c.startswith("@")
                    and "compact" not in c.lower()
                    and "summar" not in c.lower()
                )
            heading = ""
            for stripped in lines:
                if stripped.startswith("#"):
                    heading = stripped.lstrip("#").strip().lower()
                    continue
                item = re.sub(r"^[-*]\s+", "", stripped)
                if item.lower() in {"none", "(none)"}:
                    continue
                if heading == "current task" and previous_task is None:
                    previous_task = item  # from a previous summary being folded in
                paths.extend(_PATH_RE.findall(item))
                decision = _DECISION_RE.search(item)
                if decision:
                    decisions.append(_clip(_until_next_marker(item[decision.start() :])))
                todo = _TODO_RE.search(item)
                if todo:
                    todos.append(_clip(_until_next_marker(item[todo.start() :])))
                if _ERROR_RE.search(item):
                    errors.append(_clip(item))
                elif item.lower().startswith("[system]") or (
                    _CONTEXT_RE.search(item)
                    and not (role == "user" and not turns)
                    and not _TRANSCRIPT_USER_RE.match(item)
                ):
                    context.append(_clip(item))
        if not user_requests and previous_task:
            user_requests.append(previous_task)
        task = [_clip(user_requests[-1], 400)] if user_requests else []
        cap = self.max_items_per_section
        return {
            "Current Task": task,
            "Errors & Solutions": _dedupe(errors)[-cap:],
            "Code": _dedupe(paths)[:cap],
            "System Context": _dedupe(context)[:cap],
            "Design Decisions": _dedupe(decisions)[:cap],
            "TODO": _dedupe(todos)[:cap],
        }

    def _render(
        self, sections: Mapping[str, list[str]], budget: int, tokenizer: EmulatorTokenizer
    ) -> str:
        body: dict[str, list[str]] = {h: [] for h in self.HEADINGS}
        used = sum(tokenizer.count_text(f"## {h}\n") for h in self.HEADINGS)
        # Round-robin over sections in priority order so each gets a share.
        priority = (
            "Current Task",
            "Design Decisions",
            "TODO",
            "Errors & Solutions",
            "Code",
            "System Context",
        )
        queues = {h: list(sections.get(h, [])) for h in priority}
        progress = True
        while progress:
            progress = False
            for heading in priority:
                if not queues[heading]:
                    continue
                item = queues[heading].pop(0)
                line = f"- {item}"
                cost = tokenizer.count_text(line)
                if used + cost > budget:
                    queues[heading] = []
                    continue
                body[heading].append(line)
                used += cost
                progress = True
        none_cost = tokenizer.count_text("- (none)")
        lines: list[str] = []
        for heading in self.HEADINGS:
            lines.append(f"## {heading}")
            if not body[heading] and used + none_cost <= budget:
                body[heading].append("- (none)")
                used += none_cost
            lines.extend(body[heading])
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"


class DefaultResponder:
    """Compaction responder for compaction requests, scripted agent otherwise.

    Args:
        agent: The responder for ordinary requests.
        compaction: The responder for compaction requests.

    Example:
        >>> r = DefaultResponder()
        >>> r(ResponderRequest.from_messages([{"role": "user", "content": "@say ok"}])).content
        'ok'
    """

    def __init__(
        self,
        *,
        agent: Callable[[ResponderRequest], ReplySpec] | None = None,
        compaction: Callable[[ResponderRequest], ReplySpec] | None = None,
    ) -> None:
        self.agent = agent or ScriptedAgentResponder()
        self.compaction = compaction or CompactionResponder()

    def __call__(self, request: ResponderRequest) -> ReplySpec:
        """Dispatch ``request`` to the compaction or the agent responder.

        Args:
            request: The validated request.

        Returns:
            The reply.

        Example:
            >>> DefaultResponder()(ResponderRequest.from_messages([
            ...     {"role": "system", "content": "Compact this."},
            ...     {"role": "user", "content": "hello"}])).content.startswith("## Current")
            True
        """
        if is_compaction_request(request):
            return self.compaction(request)
        return self.agent(request)
