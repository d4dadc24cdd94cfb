"""The scripted agent: ``@call``, ``@final``, ``@fail``... directives become replies.

Contract: :class:`ScriptedAgentResponder` parses the last user message's directives
into steps (one assistant message each, its calls in parallel) and answers the step that
matches the number of tool rounds since that message; without directives it replies
with deterministic text or a schema-synthesised tool call. The grammar is in
:mod:`langchain_kimi_context.testing.responders`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_kimi_context.testing.responders.directives import (
    Directive,
    _last_user_index,
    _plain_text,
    parse_directives,
)
from langchain_kimi_context.testing.responders.protocol import (
    ReplySpec,
    ResponderRequest,
    ToolCallSpec,
)
from langchain_kimi_context.testing.responders.synthesis import (
    _auto_tool,
    _forced_tool,
    _json_reply,
    _tool_schema,
    synthesize_from_schema,
)
from langchain_kimi_context.testing.responders.text import deterministic_text
from langchain_kimi_context.testing.tokenizer import message_text


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
