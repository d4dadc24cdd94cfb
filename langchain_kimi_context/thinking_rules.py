"""Kimi's thinking-mode rules for one request, decided from the model's profile (pure).

Contract: no I/O, no model names. Each function reads only a
:class:`~langchain_kimi_context.profiles.KimiModelProfile` (data users can override) and
the request, and says what to send or why the request cannot be sent. The public evidence
of each rule is listed in ``docs/kimi-api-rules.md``.

* :func:`thinking_on`: whether a request runs with thinking (profile mode + the toggle).
* :func:`forced_tool_choice_kind`: ``"required"``, ``"named"`` or ``None`` for a
  ``tool_choice`` value.
* :func:`plan_tool_choice`: what to do with a forced ``tool_choice`` the model rejects
  while thinking (400 "tool_choice 'required'|'specified' is incompatible with thinking
  enabled"): send as is, switch thinking off for the call (models with a switch, when the
  caller did not ask for thinking), narrow a named choice to ``"required"`` over that one
  tool (models that accept ``"required"``; same meaning), or refuse locally.
* :func:`plan_web_search`: the builtin ``$web_search`` needs thinking off: switch it off
  for the call where the model allows it, else refuse.
* :func:`web_search_echoes`: how many ``$web_search`` results a request hands back (each
  is one billed search; the cost ledger adds the profile's per-call fee).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from langchain_kimi_context.profiles import ForcedToolChoice, KimiModelProfile

__all__ = [
    "ToolChoicePlan",
    "forced_tool_choice_kind",
    "plan_tool_choice",
    "plan_web_search",
    "thinking_on",
    "web_search_echoes",
]


def thinking_on(profile: KimiModelProfile, thinking: bool | None) -> bool:
    """Return whether a request runs with thinking.

    Args:
        profile: The model's profile.
        thinking: The caller's toggle (``None`` = the model's default).

    Returns:
        ``True`` when the reply reasons (and replayed assistant messages need
        ``reasoning_content``).
    """
    if profile.thinking == "always":
        return True
    if profile.thinking == "off":
        return False
    return thinking is not False


def forced_tool_choice_kind(tool_choice: Any) -> ForcedToolChoice | None:
    """Classify a ``tool_choice`` value as sent on the wire.

    Args:
        tool_choice: ``"auto"``, ``"none"``, ``"required"``, ``"any"``, a function name
            or ``{"type": "function", "function": {"name": ...}}``.

    Returns:
        ``"required"`` (some tool must be called), ``"named"`` (one function) or ``None``.
    """
    if tool_choice is None or tool_choice is False:
        return None
    if tool_choice is True or tool_choice in ("required", "any"):
        return "required"
    if isinstance(tool_choice, str):
        return None if tool_choice in ("auto", "none") else "named"
    if isinstance(tool_choice, Mapping) and tool_choice.get("type") == "function":
        return "named"
    return None


def _named_tool(tool_choice: Any) -> str | None:
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        return str(name) if name else None
    return str(tool_choice) if isinstance(tool_choice, str) else None


@dataclass(frozen=True)
class ToolChoicePlan:
    """What to do with a request's ``tool_choice`` under the model's thinking rules.

    Attributes:
        action: ``"send"`` (as is), ``"thinking_off"`` (send ``thinking: disabled`` for
            this call), ``"narrow"`` (send only the named tool with ``"required"``) or
            ``"refuse"`` (raise before any request).
        tool: The named tool (``"narrow"``).
        reason: Why (for ``"refuse"``: the whole error message).
    """

    action: Literal["send", "thinking_off", "narrow", "refuse"]
    tool: str | None = None
    reason: str = ""


def plan_tool_choice(
    tool_choice: Any, profile: KimiModelProfile, thinking: bool | None
) -> ToolChoicePlan:
    """Decide how a forced ``tool_choice`` is sent so the model does not answer 400.

    Never changes what the answer means: the tool is still forced (thinking switched off
    for the call, or ``"required"`` over exactly the named tool); when neither is
    possible the request is refused with a message saying what to do.

    Args:
        tool_choice: The ``tool_choice`` of the payload.
        profile: The model's profile.
        thinking: The caller's thinking toggle for the call.

    Returns:
        The plan.
    """
    kind = forced_tool_choice_kind(tool_choice)
    if kind is None or not thinking_on(profile, thinking):
        return ToolChoicePlan("send")
    allowed = profile.forced_tool_choice_with_thinking
    if kind in allowed:
        return ToolChoicePlan("send")
    if kind == "named" and "required" in allowed:
        return ToolChoicePlan("narrow", tool=_named_tool(tool_choice))
    wire = "specified" if kind == "named" else "required"
    rejected = (
        f"{profile.name!r} rejects a forced tool_choice ({tool_choice!r}) while thinking "
        f"(the API answers 400 \"tool_choice '{wire}' is incompatible with thinking "
        f'enabled").'
    )
    if profile.thinking == "default_on" and profile.thinking_switch:
        if thinking is None:
            return ToolChoicePlan("thinking_off", reason=rejected)
        return ToolChoicePlan(
            "refuse",
            reason=(
                f"{rejected} thinking=True was asked for this call: drop it (the package "
                "then switches thinking off for calls that force a tool), pass "
                "thinking=False, or use tool_choice='auto'."
            ),
        )
    alternatives = "tool_choice='auto' (the model decides whether to call a tool)"
    return ToolChoicePlan(
        "refuse",
        reason=(
            f"{rejected} It always thinks, so the tool cannot be forced: use {alternatives}, "
            "with_structured_output(...) (which picks a method that works on this model), "
            "or a model that can force tools (kimi-k3 accepts 'required'; kimi-k2.6 "
            "switches thinking off for the call)."
        ),
    )


def _is_web_search(tool: Any) -> bool:
    return (
        isinstance(tool, Mapping)
        and tool.get("type") == "builtin_function"
        and (tool.get("function") or {}).get("name") == "$web_search"
    )


def plan_web_search(tools: Any, profile: KimiModelProfile, thinking: bool | None) -> ToolChoicePlan:
    """Decide how a request with the builtin ``$web_search`` is sent.

    ``$web_search`` needs thinking disabled: models with a switch get ``thinking:
    disabled`` for the call (unless the caller asked for thinking), the others are refused.

    Args:
        tools: The payload's ``tools``.
        profile: The model's profile.
        thinking: The caller's thinking toggle for the call.

    Returns:
        ``"send"``, ``"thinking_off"`` or ``"refuse"`` (with the error message).
    """
    if not any(_is_web_search(t) for t in tools or ()):
        return ToolChoicePlan("send")
    if profile.web_search_with_thinking or not thinking_on(profile, thinking):
        return ToolChoicePlan("send")
    if profile.thinking == "default_on" and profile.thinking_switch and thinking is None:
        return ToolChoicePlan("thinking_off", reason="$web_search needs thinking disabled.")
    cause = "always thinks" if profile.thinking == "always" else "was asked to think"
    return ToolChoicePlan(
        "refuse",
        reason=(
            f"$web_search needs thinking disabled, and {profile.name!r} {cause}. Use "
            "kimi-k2.6 (thinking is switched off for calls with $web_search) or pass "
            "thinking=False."
        ),
    )


def web_search_echoes(messages: Any) -> int:
    """Count the ``$web_search`` results a request hands back (each one is a billed search).

    Only the tool messages after the last assistant message are new; earlier ones are
    replays of searches already billed.

    Args:
        messages: The request's wire messages (dicts).

    Returns:
        How many ``$web_search`` calls this request completes.
    """
    seq = [m for m in messages or () if isinstance(m, Mapping)]
    last = max((i for i, m in enumerate(seq) if m.get("role") == "assistant"), default=-1)
    if last < 0:
        return 0
    searches = {
        str(call.get("id"))
        for call in seq[last].get("tool_calls") or ()
        if isinstance(call, Mapping) and (call.get("function") or {}).get("name") == "$web_search"
    }
    return sum(
        1 for m in seq[last + 1 :] if m.get("role") == "tool" and m.get("tool_call_id") in searches
    )
