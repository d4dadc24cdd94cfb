"""The responder contract: what a responder is asked and what it answers.

Contract: a :class:`Responder` is any callable ``(ResponderRequest) -> ReplySpec``. The
request carries the validated messages, tools, tool choice, thinking flag, prompt size
and the emulator's tokenizer; the reply is content, optional reasoning and tool calls
(:class:`ToolCallSpec`). The emulator assigns tool-call ids, counts tokens, applies
``stop`` and ``max_tokens`` and bills the call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from langchain_kimi_context.testing.tokenizer import EmulatorTokenizer


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
        >>> from langchain_kimi_context.testing import ScriptedAgentResponder
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
        >>> from langchain_kimi_context.testing import ScriptedAgentResponder
        >>> isinstance(ScriptedAgentResponder(), Responder)
        True
        >>> isinstance(lambda req: ReplySpec(content="x"), Responder)
        True
    """

    def __call__(self, request: ResponderRequest) -> ReplySpec:
        """Return the reply for ``request``."""
        ...
