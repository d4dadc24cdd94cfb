"""Request building: Kimi's rules applied to a Chat Completions payload.

Contract (every function is pure apart from the debug log; none sends anything):

- **Settings** (:func:`validate_sampling`, :func:`validate_stop`,
  :func:`validate_thinking`, :func:`validate_effort`): ``temperature`` in [0, 1], the
  profile's locked sampling parameters (for the request's thinking mode), ``n <= 5`` and
  not at temperature ~0, at most 5 stop strings of at most 32 bytes, ``thinking`` and
  ``reasoning_effort`` only where the profile has them. A violation raises
  :class:`~langchain_kimi_context.errors.KimiConfigurationError` before any request.
- **Call rules** (:func:`apply_call_rules`, :func:`add_thinking_switch`): the
  tool-choice and web-search plans of :mod:`langchain_kimi_context.thinking_rules`
  (refuse, narrow to ``"required"`` over the named tool, or send thinking disabled for
  this call), locked sampling parameters never sent, the thinking switch in
  ``extra_body`` for models that have one.
- **Messages** (:func:`kimi_message`): empty ``content`` dropped on assistant tool-call
  messages, reasoning replayed (an empty one in thinking requests), ``partial`` mode.
- **Budget** (:func:`default_output_budget`): ``max_tokens`` when the caller set none.
- **Endpoint** (:func:`refuse_retired`): a retired model is refused before a request to
  Moonshot's own hosts.
- **Builtin tools** (:data:`WEB_SEARCH_TOOL`, :func:`builtin_tool_result`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage

from langchain_kimi_context.errors import KimiConfigurationError, KimiModelRetiredError
from langchain_kimi_context.profiles import KimiModelProfile
from langchain_kimi_context.thinking_rules import plan_tool_choice, plan_web_search, thinking_on
from langchain_kimi_context.tokens import count_tokens_for_model

__all__ = [
    "DEFAULT_BASE_URL",
    "WEB_SEARCH_TOOL",
    "add_thinking_switch",
    "apply_call_rules",
    "builtin_tool_result",
    "default_output_budget",
    "is_builtin_tool",
    "kimi_message",
    "reasoning_from_message",
    "refuse_retired",
    "validate_effort",
    "validate_sampling",
    "validate_stop",
    "validate_thinking",
]

DEFAULT_BASE_URL: Final = "https://api.moonshot.ai/v1"
"""Moonshot's global endpoint (the default of Moonshot's own SDK, kosong, and of most
clients); the China platform's is ``https://api.moonshot.cn/v1``. A key of one platform gets
401 on the other: set ``MOONSHOT_BASE_URL`` or ``base_url=...`` to switch."""

_MOONSHOT_HOSTS: Final = frozenset({"api.moonshot.ai", "api.moonshot.cn"})
"""Moonshot's own API hosts: only there is a retired model refused before the request."""

WEB_SEARCH_TOOL: Final[Mapping[str, Any]] = {
    "type": "builtin_function",
    "function": {"name": "$web_search"},
}
"""Kimi's builtin web search tool, as accepted by ``KimiChatModel.bind_tools``."""

_MAX_N: Final = 5
_MAX_STOP: Final = 5
_MAX_STOP_BYTES: Final = 32
_NEAR_ZERO_TEMPERATURE: Final = 1e-3
_MIN_OUTPUT_BUDGET: Final = 1_024
_PROMPT_ESTIMATE_MARGIN: Final = 1.05
"""Local prompt estimates are approximate: keep 5% headroom when sizing max_tokens."""
_LOGGER = logging.getLogger("langchain_kimi_context.chat_models")


# --------------------------------------------------------------------------- settings


def validate_sampling(
    params: Mapping[str, Any], profile: KimiModelProfile, *, where: str, thinking: bool
) -> None:
    """Check temperature, locked sampling parameters and ``n`` against ``profile``.

    Args:
        params: The sampling parameters (constructor fields or the call's payload).
        profile: The model's profile.
        where: Where the parameters come from (named in the error).
        thinking: Whether the request runs with thinking (locked values depend on it).

    Raises:
        KimiConfigurationError: If a parameter is out of range or not allowed.
    """
    temperature = params.get("temperature")
    if temperature is not None and not 0.0 <= float(temperature) <= 1.0:
        msg = (
            f"temperature={temperature} is out of range: Kimi accepts values in [0, 1] "
            f"(in {where}; model {profile.name!r}, default {profile.default_temperature})."
        )
        raise KimiConfigurationError(msg)
    for name, fixed in profile.fixed_params_for(thinking=thinking).items():
        value = params.get(name)
        if value is not None and value != fixed:
            msg = (
                f"{name}={value!r} is not allowed for {profile.name!r}: the model fixes "
                f"{name} to {fixed!r}. Remove {name} (in {where}) or use a model "
                f"without fixed sampling parameters."
            )
            raise KimiConfigurationError(msg)
    n = params.get("n")
    if n is not None and n > _MAX_N:
        msg = f"n={n} is too large: Kimi returns at most {_MAX_N} choices (in {where})."
        raise KimiConfigurationError(msg)
    if n is not None and n > 1 and temperature is not None and temperature < _NEAR_ZERO_TEMPERATURE:
        msg = (
            f"n={n} needs a temperature above ~0 (got {temperature}): Kimi rejects "
            f"several choices at temperature near 0 (in {where})."
        )
        raise KimiConfigurationError(msg)


def validate_stop(stop: str | list[str] | None) -> None:
    """Check the stop sequences (at most 5 strings of at most 32 bytes).

    Raises:
        KimiConfigurationError: If there are too many or too long stop strings.
    """
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    too_long = [s for s in stops if len(s.encode()) > _MAX_STOP_BYTES]
    if len(stops) > _MAX_STOP or too_long:
        msg = (
            f"stop sequences: Kimi accepts at most {_MAX_STOP} strings of at most "
            f"{_MAX_STOP_BYTES} bytes each; got {len(stops)}"
            + (f", too long: {too_long!r}" if too_long else "")
            + "."
        )
        raise KimiConfigurationError(msg)


def validate_thinking(thinking: bool | None, profile: KimiModelProfile) -> None:
    """Check the thinking toggle against the profile's thinking mode.

    Raises:
        KimiConfigurationError: If the model cannot be switched that way.
    """
    if thinking is False and profile.thinking == "always":
        msg = (
            f"thinking=False is not possible for {profile.name!r}: it always thinks. "
            f"Use a model with a thinking switch (e.g. kimi-k2.6 with thinking=False)."
        )
        raise KimiConfigurationError(msg)
    if thinking is True and profile.thinking == "off":
        msg = (
            f"thinking=True: {profile.name!r} has no thinking mode according to its "
            f"profile. Use a thinking model, or if the profile is outdated pass "
            f"profile_overrides={{'thinking': 'default_on'}}."
        )
        raise KimiConfigurationError(msg)


def validate_effort(effort: Any, profile: KimiModelProfile) -> None:
    """Check ``reasoning_effort`` against the profile's accepted efforts.

    Raises:
        KimiConfigurationError: If the model takes no or not this effort.
    """
    if effort is None:
        return
    if not profile.reasoning_efforts:
        msg = (
            f"reasoning_effort={effort!r}: {profile.name!r} takes no reasoning_effort "
            f"(its reasoning is "
            + (
                "switched with thinking=True/False)."
                if profile.thinking == "default_on"
                else "not configurable)."
            )
            + " Remove reasoning_effort, or use kimi-k3 (low/high/max)."
        )
        raise KimiConfigurationError(msg)
    if effort not in profile.reasoning_efforts:
        msg = (
            f"reasoning_effort={effort!r} is not accepted by {profile.name!r}; use one of "
            f"{list(profile.reasoning_efforts)} (or None for the server default)."
        )
        raise KimiConfigurationError(msg)


# --------------------------------------------------------------------------- call rules


def apply_call_rules(
    payload: dict[str, Any],
    profile: KimiModelProfile,
    thinking: bool | None,
    *,
    stop: list[str] | None,
) -> tuple[bool | None, bool]:
    """Validate a call's payload and apply the thinking and tool-choice rules in place.

    Args:
        payload: The request payload (changed in place: narrowed tools, locked sampling
            parameters removed).
        profile: The profile of the payload's model.
        thinking: The call's (or the model's) thinking toggle.
        stop: The call's stop sequences, if given.

    Returns:
        ``(thinking, thinks)``: the toggle to send and whether the request thinks (both
        ``False`` when the plan sends thinking disabled for this call).

    Raises:
        KimiConfigurationError: If a setting is invalid or the plan refuses the call.
    """
    thinks = thinking_on(profile, thinking)
    validate_sampling(payload, profile, where="the call's parameters", thinking=thinks)
    if stop is not None:
        validate_stop(stop)
    validate_thinking(thinking, profile)
    validate_effort(payload.get("reasoning_effort"), profile)
    plan = plan_tool_choice(payload.get("tool_choice"), profile, thinking)
    if plan.action == "refuse":
        raise KimiConfigurationError(plan.reason)
    if plan.action == "narrow":
        # "required" over exactly the named tool forces the same call.
        payload["tools"] = [
            t
            for t in payload.get("tools") or []
            if (t.get("function") or {}).get("name") == plan.tool
        ]
        payload["tool_choice"] = "required"
    web = plan_web_search(payload.get("tools"), profile, thinking)
    if web.action == "refuse":
        raise KimiConfigurationError(web.reason)
    if "thinking_off" in (plan.action, web.action):
        _LOGGER.debug("%s Sending thinking disabled for this call.", plan.reason or web.reason)
        thinking, thinks = False, False
    # Locked sampling parameters: validated above, never sent (in either mode).
    locked = {*profile.fixed_params_for(thinking=True), *profile.fixed_params_for(thinking=False)}
    for name in locked:
        payload.pop(name, None)
    return thinking, thinks


def add_thinking_switch(
    payload: dict[str, Any], profile: KimiModelProfile, thinking: bool | None
) -> None:
    """Send ``extra_body.thinking`` to models with a thinking switch when it is set.

    A ``thinking`` entry the caller put in ``extra_body`` wins.
    """
    if thinking is not None and profile.thinking == "default_on" and profile.thinking_switch:
        extra = dict(payload.get("extra_body") or {})
        extra.setdefault("thinking", {"type": "enabled" if thinking else "disabled"})
        payload["extra_body"] = extra


def default_output_budget(
    messages: Sequence[BaseMessage], payload: Mapping[str, Any], profile: KimiModelProfile
) -> int:
    """``max_tokens`` when the caller set none: the profile's, within the window's room.

    Thinking models need a large budget (reasoning is output), but input + max_tokens
    must fit the window or the request is refused; the budget shrinks to the room left by
    the (locally estimated, with a 5% margin) prompt, never below 1,024 tokens (a prompt
    that leaves less overflows either way).
    """
    budget = profile.default_max_tokens
    estimate = count_tokens_for_model(messages, payload.get("tools"), model=profile.name)
    room = profile.context_window - int(estimate * _PROMPT_ESTIMATE_MARGIN)
    return max(min(budget, room), min(budget, _MIN_OUTPUT_BUDGET))


def refuse_retired(profile: KimiModelProfile, base_url: str | None) -> None:
    """Raise the retired-model error before a request to Moonshot's own endpoints.

    Raises:
        KimiModelRetiredError: If the profile is retired and ``base_url`` is Moonshot's.
    """
    if profile.lifecycle != "retired":
        return
    host = urlsplit(base_url or DEFAULT_BASE_URL).hostname or ""
    if host.lower() in _MOONSHOT_HOSTS:
        raise KimiModelRetiredError(
            profile.name, retired_on=profile.retired_on, replacement=profile.replacement
        )


# --------------------------------------------------------------------------- messages


def reasoning_from_message(message: AIMessage) -> str | None:
    """Reasoning a reply replays: ``reasoning_content``, else its ``reasoning`` blocks.

    Reasoning blocks are joined with nothing (they are pieces of one text, as streamed).
    """
    text = message.additional_kwargs.get("reasoning_content")
    if isinstance(text, str):
        return text
    if isinstance(message.content, list):
        parts = [
            str(block.get("reasoning", ""))
            for block in message.content
            if isinstance(block, dict) and block.get("type") == "reasoning"
        ]
        if parts:
            return "".join(parts)
    return None


def kimi_message(
    message: BaseMessage, converted: dict[str, Any], *, thinking: bool = False
) -> dict[str, Any]:
    """Apply Kimi's rules to one converted message (never mutates ``message``).

    Reasoning is replayed on every assistant message that has it (empty strings
    included); in a thinking request every assistant message carries the field, an empty
    one when the reasoning is unknown (the API rejects tool-call turns without it with 400
    "thinking is enabled but reasoning_content is missing ...").

    Args:
        message: The LangChain message.
        converted: Its Chat Completions dict (changed in place).
        thinking: Whether the request runs with thinking.

    Returns:
        ``converted``.
    """
    if not isinstance(message, AIMessage) or converted.get("role") != "assistant":
        return converted
    if converted.get("tool_calls") and not converted.get("content"):
        converted.pop("content", None)
    reasoning = reasoning_from_message(message)
    if reasoning is not None and (thinking or converted.get("tool_calls")):
        converted["reasoning_content"] = reasoning
    elif thinking:
        converted["reasoning_content"] = ""
    if message.additional_kwargs.get("partial"):
        converted["partial"] = True
    return converted


# --------------------------------------------------------------------------- builtin tools


def is_builtin_tool(tool: Any) -> bool:
    """Whether ``tool`` is a Kimi builtin tool dict (``{"type": "builtin_function"}``)."""
    return isinstance(tool, Mapping) and tool.get("type") == "builtin_function"


def builtin_tool_result(tool_call: ToolCall) -> ToolMessage:
    """Answer a Kimi builtin tool call (e.g. ``$web_search``) as Kimi expects.

    Kimi runs builtin tools itself; the client only echoes the call's arguments back as
    the tool result.

    Args:
        tool_call: The tool call from ``AIMessage.tool_calls``.

    Returns:
        The ``ToolMessage`` to append to the conversation.

    Example:
        >>> call = {"name": "$web_search", "args": {"search_result": {"search_id": "s1"}},
        ...         "id": "$web_search:0", "type": "tool_call"}
        >>> builtin_tool_result(call).content
        '{"search_result": {"search_id": "s1"}}'
    """
    return ToolMessage(
        content=json.dumps(tool_call["args"], ensure_ascii=False),
        tool_call_id=tool_call["id"] or "",
        name=tool_call["name"],
    )
