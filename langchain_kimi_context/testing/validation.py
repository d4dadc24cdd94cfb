"""Strict validation of chat requests, the way the Kimi API rejects them.

:func:`validate_chat_request` is a pure function (no server needed): it raises
:class:`EmulatorAPIError` carrying the HTTP status, Moonshot's ``error.type`` and the
message Kimi sends, or returns a :class:`ValidatedChatRequest` with what the emulator
needs to serve the request (profile, thinking flag, prompt tokens, max tokens).

Rules (in the order they are checked):

1. ``model`` must be a served model: 404 ``resource_not_found_error``
   ``Not found the model <m> or Permission denied`` (also for retired models, as the live
   API answers since the 2026 retirements: diillson/chatcli issue #1344).
2. Sampling parameters: ``temperature`` in [0, 1]; models with fixed parameters
   (kimi-k2.6: temperature/top_p/n/penalties) reject other values (cline PR #11109,
   big-AGI issue #1161; the emulator's wording is its own); ``n`` in [1, 5] and ``n > 1``
   needs a temperature above ~0; ``stop`` is at most 5 strings of at most 32 bytes;
   ``max_tokens`` / ``max_completion_tokens`` positive integers.
3. Tools: ``type`` ``function`` (or ``builtin_function`` ``$web_search``), function names
   matching ``^[a-zA-Z_][a-zA-Z0-9-_]{2,63}$``, unique names.
4. Messages: a non-empty list; roles ``system``/``user``/``assistant``/``tool`` (and a
   leading ``cache`` message, see the emulator's message cache mode); every ``tool``
   message answers a pending call of the closest preceding assistant message
   (``tool_call_id <id> is not found``); every tool call is answered before the next
   non-tool message (and before the end of the list); an assistant tool-call message
   must not carry an empty text part (optionally not even ``content: ""``); with
   thinking enabled every assistant tool-call message carries ``reasoning_content``
   (``thinking is enabled but reasoning_content is missing in assistant tool call
   message at index N``, quoted by MoonshotAI/kimi-agent-sdk issue #169 and others; an
   empty string is accepted, as Moonshot's kosong client relies on).
5. Window: prompt tokens + ``max_tokens`` (default 1024) must fit the model window:
   ``Invalid request: Your request exceeded model token limit: <window> (requested: <n>)``.
6. Thinking rules, from each model's profile (public evidence in
   ``docs/kimi-api-rules.md``):

   * a forced ``tool_choice`` the model does not accept while thinking: 400
     ``tool_choice 'required'|'specified' is incompatible with thinking enabled``
     (wording quoted by inspect_ai PR #5152 and oh-my-pi issue #1077);
   * ``thinking`` sent to a model without the switch: kimi-k3 (docs: drop it; strict, the
     wording is not public), kimi-k2.7-code accepts only ``{"type": "enabled", "keep":
     "all"}`` (opencode-kimi-full PR #11 quoting Moonshot's docs);
   * ``reasoning_effort`` outside the model's values (kimi-k3: low/high/max, llmgateway
     PR #3378), or together with ``thinking`` (400 "cannot specify both 'thinking' and
     'reasoning_effort'", nanobot issue #3939);
   * the builtin ``$web_search`` while thinking (Moonshot's docs require thinking off;
     strict, the wording is not public), and a ``$web_search`` tool result that is not
     the call's arguments unchanged (strict).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_kimi_context.profiles import KimiModelProfile, get_profile, list_profiles
from langchain_kimi_context.testing.tokenizer import EmulatorTokenizer

__all__ = [
    "SERVER_DEFAULT_MAX_TOKENS",
    "EmulatorAPIError",
    "ValidatedChatRequest",
    "chat_request_error",
    "known_profiles",
    "thinking_enabled",
    "validate_chat_request",
]

SERVER_DEFAULT_MAX_TOKENS = 1024
"""``max_tokens`` the emulated server assumes when a request sets none."""

FUNCTION_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9\-_]{2,63}$")
_ROLES = frozenset({"system", "user", "assistant", "tool"})
_DEFAULT_TOKENIZER = EmulatorTokenizer()


class EmulatorAPIError(Exception):
    """A Moonshot-style API error: HTTP status, ``error.type`` and message.

    Attributes:
        status: The HTTP status code.
        error_type: Moonshot's ``error.type`` (e.g. ``"invalid_request_error"``).
        message: The human-readable message, worded like Kimi's.
        headers: Extra response headers (e.g. ``Retry-After``).

    Example:
        >>> err = EmulatorAPIError(404, "resource_not_found_error", "Not found")
        >>> err.to_json()
        {'error': {'type': 'resource_not_found_error', 'message': 'Not found'}}
        >>> str(err)
        '404 resource_not_found_error: Not found'
    """

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})

    def to_json(self) -> dict[str, Any]:
        """Return the error body Moonshot sends.

        Returns:
            ``{"error": {"type": ..., "message": ...}}``.
        """
        return {"error": {"type": self.error_type, "message": self.message}}


def _invalid(message: str) -> EmulatorAPIError:
    return EmulatorAPIError(400, "invalid_request_error", message)


@dataclass(frozen=True)
class ValidatedChatRequest:
    """What validation learned about an accepted chat request.

    Attributes:
        profile: The model profile.
        thinking: Whether the reply includes reasoning (thinking enabled).
        prompt_tokens: Prompt tokens by the emulator's tokenizer.
        max_tokens: The effective ``max_tokens``.
        n: Number of choices requested.
        messages: The messages that were validated.
        tools: The tools that were validated.
        tokens: The canonical token sequence of tools + messages (prefix caching).

    Example:
        >>> v = validate_chat_request({"model": "kimi-k2.6", "thinking": {"type": "disabled"},
        ...     "messages": [{"role": "user", "content": "hi"}]})
        >>> v.thinking, v.prompt_tokens, v.max_tokens
        (False, 3, 1024)
    """

    profile: KimiModelProfile
    thinking: bool
    prompt_tokens: int
    max_tokens: int
    n: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list, repr=False, compare=False)


def thinking_enabled(profile: KimiModelProfile, body: Mapping[str, Any]) -> bool:
    """Return whether a request to ``profile``'s model runs with thinking.

    ``"always"`` models always think, ``"default_on"`` models think unless the body has
    ``thinking: {"type": "disabled"}``, ``"off"`` models think only when the body asks
    with ``thinking: {"type": "enabled"}``... which they ignore, so never.

    Args:
        profile: The model profile.
        body: The request body.

    Returns:
        ``True`` when the reply carries ``reasoning_content``.

    Example:
        >>> p = get_profile("kimi-k2.6")
        >>> thinking_enabled(p, {}), thinking_enabled(p, {"thinking": {"type": "disabled"}})
        (True, False)
    """
    if profile.thinking == "always":
        return True
    if profile.thinking == "off":
        return False
    thinking = body.get("thinking")
    return not (isinstance(thinking, Mapping) and thinking.get("type") == "disabled")


def _resolve_profile(
    model: Any, profiles: Mapping[str, KimiModelProfile] | None
) -> KimiModelProfile:
    if not isinstance(model, str) or not model:
        raise _invalid("Invalid request: model is required")
    if profiles is None:
        profile = get_profile(model) if model in list_profiles() else None
    else:
        profile = profiles.get(model)
    if profile is None:
        # Unknown and retired ids alike (the live API after the 2026 retirements, probed
        # 2026-09-02 by diillson/chatcli issue #1344).
        raise EmulatorAPIError(
            404,
            "resource_not_found_error",
            f"Not found the model {model} or Permission denied",
        )
    return profile


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_sampling(body: Mapping[str, Any], profile: KimiModelProfile) -> int:
    temperature = body.get("temperature")
    if temperature is not None:
        if not _is_number(temperature):
            raise _invalid("Invalid request: temperature must be a number")
        if not 0.0 <= float(temperature) <= 1.0:
            raise _invalid(
                f"Invalid request: temperature {temperature} is out of range, it must be in [0, 1]"
            )
    top_p = body.get("top_p")
    if top_p is not None and (not _is_number(top_p) or not 0.0 <= float(top_p) <= 1.0):
        raise _invalid(f"Invalid request: top_p {top_p} is out of range, it must be in [0, 1]")
    n_raw = body.get("n")
    n = 1 if n_raw is None else n_raw
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 5:
        raise _invalid(f"Invalid request: n {n_raw} is out of range, it must be in [1, 5]")
    fixed_params = profile.fixed_params_for(thinking=thinking_enabled(profile, body))
    for param, fixed in fixed_params.items():
        value = body.get(param)
        if value is not None and value != fixed:
            raise _invalid(
                f"Invalid request: invalid {param}: only {fixed} is allowed for this model"
            )
    effective_temperature = (
        float(temperature) if temperature is not None else profile.default_temperature
    )
    if n > 1 and effective_temperature < 0.001:
        raise _invalid(
            "Invalid request: n > 1 is not allowed when temperature is close to 0, "
            "set a higher temperature"
        )
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or len(stops) > 5:
            raise _invalid("Invalid request: stop must be a string or a list of at most 5")
        for item in stops:
            if not isinstance(item, str) or len(item.encode("utf-8")) > 32:
                raise _invalid("Invalid request: each stop sequence must be at most 32 bytes")
    return n


def _check_max_tokens(body: Mapping[str, Any]) -> int:
    value = body.get("max_completion_tokens")
    name = "max_completion_tokens"
    if value is None:
        value = body.get("max_tokens")
        name = "max_tokens"
    if value is None:
        return SERVER_DEFAULT_MAX_TOKENS
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _invalid(f"Invalid request: {name} must be a positive integer, got {value!r}")
    return value


def _check_tools(tools_raw: Any) -> list[dict[str, Any]]:
    if tools_raw is None:
        return []
    if not isinstance(tools_raw, list):
        raise _invalid("Invalid request: tools must be a list")
    names: set[str] = set()
    tools: list[dict[str, Any]] = []
    for index, tool in enumerate(tools_raw):
        if not isinstance(tool, Mapping):
            raise _invalid(f"Invalid request: tool at index {index} must be an object")
        ttype = tool.get("type")
        function = tool.get("function")
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise _invalid(f"Invalid request: tool at index {index} has no function.name")
        name = str(function["name"])
        if ttype == "builtin_function":
            if name != "$web_search":
                raise _invalid(f"Invalid request: unknown builtin function {name}")
        elif ttype == "function":
            if not FUNCTION_NAME_RE.match(name):
                raise _invalid(
                    f"Invalid request: function name {name!r} is invalid, it must match "
                    f"{FUNCTION_NAME_RE.pattern}"
                )
            params = function.get("parameters")
            if params is not None and not isinstance(params, Mapping):
                raise _invalid(f"Invalid request: parameters of function {name} must be an object")
        else:
            raise _invalid(f"Invalid request: unknown tool type {ttype!r} at index {index}")
        if name in names:
            raise _invalid(f"Invalid request: function name {name} is duplicated")
        names.add(name)
        tools.append(dict(tool))
    return tools


def _is_empty_text_content(content: Any, *, strict_string: bool) -> bool:
    if isinstance(content, str):
        return strict_string and content == ""
    if isinstance(content, list):
        return not content or any(
            isinstance(p, Mapping) and p.get("type") == "text" and not p.get("text")
            for p in content
        )
    return False


def _check_messages(
    messages_raw: Any,
    *,
    thinking: bool,
    allow_cache_role: bool,
    reject_empty_tool_call_content: bool,
    reject_empty_string_content: bool = False,
) -> list[dict[str, Any]]:
    if not isinstance(messages_raw, list) or not messages_raw:
        raise _invalid("Invalid request: messages must be a non-empty list")
    pending: dict[str, str] = {}
    pending_index = -1
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(messages_raw):
        if not isinstance(message, Mapping):
            raise _invalid(f"Invalid request: message at index {index} must be an object")
        role = message.get("role")
        if role == "cache" and index == 0 and allow_cache_role:
            messages.append(dict(message))
            continue
        if role not in _ROLES:
            raise _invalid(
                f"Invalid request: unknown role {role!r} in message at index {index}, "
                "expected one of system, user, assistant, tool"
            )
        if message.get("partial") and (role != "assistant" or index != len(messages_raw) - 1):
            raise _invalid(
                f"Invalid request: partial is only allowed on the last message when it is an "
                f"assistant message (message at index {index})"
            )
        if role == "tool":
            call_id = message.get("tool_call_id")
            key = call_id if isinstance(call_id, str) else ""
            if key not in pending:
                raise _invalid(f"Invalid request: tool_call_id {key} is not found")
            del pending[key]
        else:
            if pending:
                missing = ", ".join(sorted(pending))
                raise _invalid(
                    "Invalid request: an assistant message with 'tool_calls' must be followed "
                    "by tool messages responding to each 'tool_call_id'. The following "
                    f"tool_call_ids did not have response messages: {missing} "
                    f"(assistant message at index {pending_index})"
                )
            content = message.get("content")
            if role in {"system", "user"} and content is None:
                raise _invalid(
                    f"Invalid request: message at index {index} with role {role} must have content"
                )
            if role == "assistant":
                tool_calls = message.get("tool_calls")
                if tool_calls:
                    if not isinstance(tool_calls, list):
                        raise _invalid(
                            f"Invalid request: tool_calls of message at index {index} "
                            "must be a list"
                        )
                    if reject_empty_tool_call_content and _is_empty_text_content(
                        content, strict_string=reject_empty_string_content
                    ):
                        raise _invalid(
                            f"Invalid request: the assistant message at index {index} has "
                            "an empty text content part; omit content on tool call messages"
                        )
                    if thinking and message.get("reasoning_content") is None:
                        raise _invalid(
                            "thinking is enabled but reasoning_content is missing in "
                            f"assistant tool call message at index {index}"
                        )
                    for call in tool_calls:
                        if not isinstance(call, Mapping):
                            raise _invalid(
                                f"Invalid request: tool call in message at index {index} "
                                "must be an object"
                            )
                        call_id = call.get("id")
                        function = call.get("function")
                        if not isinstance(call_id, str) or not isinstance(function, Mapping):
                            raise _invalid(
                                f"Invalid request: tool call in message at index {index} "
                                "needs an id and a function"
                            )
                        pending[call_id] = str(function.get("name", ""))
                    pending_index = index
        messages.append(dict(message))
    if pending:
        missing = ", ".join(sorted(pending))
        raise _invalid(
            "Invalid request: an assistant message with 'tool_calls' must be followed by "
            "tool messages responding to each 'tool_call_id'. The following tool_call_ids "
            f"did not have response messages: {missing} "
            f"(assistant message at index {pending_index})"
        )
    return messages


def _reject_forced_tool_choice(body: Mapping[str, Any], profile: KimiModelProfile) -> None:
    choice = body.get("tool_choice")
    if choice in (None, "auto", "none"):
        return
    kind = "required" if choice == "required" else "named"
    if kind not in profile.forced_tool_choice_with_thinking:
        wire = "required" if kind == "required" else "specified"
        raise _invalid(f"tool_choice '{wire}' is incompatible with thinking enabled")


def _check_thinking_rules(
    body: Mapping[str, Any], profile: KimiModelProfile, tools: Sequence[Mapping[str, Any]]
) -> None:
    thinking_field = body.get("thinking")
    if thinking_field is not None and not profile.thinking_switch:
        keep_all = {"type": "enabled", "keep": "all"}
        if profile.reasoning_efforts or thinking_field != keep_all:
            raise _invalid(
                f"Invalid request: thinking {_json_text(thinking_field)} is not supported for "
                f"model {profile.name}"
                + (", use reasoning_effort" if profile.reasoning_efforts else "")
            )
    effort = body.get("reasoning_effort")
    if effort is not None:
        if thinking_field is not None:
            raise _invalid("cannot specify both 'thinking' and 'reasoning_effort'")
        if profile.reasoning_efforts and effort not in profile.reasoning_efforts:
            raise _invalid(
                f"Invalid request: reasoning_effort must be one of "
                f"{', '.join(profile.reasoning_efforts)}, got {effort!r}"
            )
    if not thinking_enabled(profile, body):
        return
    _reject_forced_tool_choice(body, profile)
    web = any(
        t.get("type") == "builtin_function"
        and (t.get("function") or {}).get("name") == "$web_search"
        for t in tools
    )
    if web and not profile.web_search_with_thinking:
        raise _invalid(
            "Invalid request: the builtin function $web_search is not supported when "
            "thinking is enabled, disable thinking to use it"
        )


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _check_web_search_echo(messages: Sequence[Mapping[str, Any]]) -> None:
    """A ``$web_search`` result must be the call's arguments, unchanged."""
    arguments: dict[str, Any] = {}
    for message in messages:
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                if function.get("name") == "$web_search":
                    arguments[str(call.get("id"))] = function.get("arguments")
        elif message.get("role") == "tool" and message.get("tool_call_id") in arguments:
            sent = arguments[str(message.get("tool_call_id"))]
            content = message.get("content")
            try:
                same = json.loads(str(content)) == json.loads(str(sent))
            except json.JSONDecodeError:
                same = content == sent
            if not same:
                raise _invalid(
                    "Invalid request: the tool message for $web_search (tool_call_id "
                    f"{message.get('tool_call_id')}) must return the call's arguments unchanged"
                )


def validate_chat_request(
    body: Mapping[str, Any],
    *,
    profiles: Mapping[str, KimiModelProfile] | None = None,
    tokenizer: EmulatorTokenizer | None = None,
    allow_cache_role: bool = False,
    reject_empty_tool_call_content: bool = True,
    reject_empty_string_content: bool = False,
    extra_prompt_tokens: int = 0,
    check_web_search_echo: bool = False,
) -> ValidatedChatRequest:
    """Check a ``POST /v1/chat/completions`` body the way Kimi does.

    Args:
        body: The decoded JSON body.
        profiles: The models the server knows (default: every profile registered in
            :mod:`langchain_kimi_context.profiles`); any other model is a 404.
        tokenizer: Token counter for the window check (default: the emulator's).
        allow_cache_role: Accept a leading ``role: "cache"`` message (message cache
            mode; the emulator splices it before counting).
        reject_empty_tool_call_content: Reject an empty text part (``content: []`` or
            ``[{"type": "text", "text": ""}]``) on assistant tool-call messages, as some
            Kimi endpoints do.
        reject_empty_string_content: Also reject ``content: ""`` on them (stricter
            endpoints; the portable form omits ``content`` or sends ``null``).
        extra_prompt_tokens: Tokens to add to the prompt count (e.g. spliced cache).
        check_web_search_echo: Reject a ``$web_search`` tool result that is not the
            call's arguments unchanged (the emulator turns it on).

    Returns:
        The :class:`ValidatedChatRequest`.

    Raises:
        EmulatorAPIError: With Kimi's status, type and message when Kimi would reject
            the request.

    Example:
        >>> body = {"model": "kimi-k2.6", "messages": [
        ...     {"role": "user", "content": "hi"},
        ...     {"role": "tool", "tool_call_id": "x", "content": "orphan"}]}
        >>> try:
        ...     validate_chat_request(body)
        ... except EmulatorAPIError as err:
        ...     print(err.status, err.message)
        400 Invalid request: tool_call_id x is not found
        >>> validate_chat_request({"model": "nope", "messages": []})
        Traceback (most recent call last):
        ...
        langchain_kimi_context.testing.validation.EmulatorAPIError: 404 resource_not_found_error: Not found the model nope or Permission denied
    """  # noqa: E501
    if not isinstance(body, Mapping):
        raise _invalid("Invalid request: body must be a JSON object")
    profile = _resolve_profile(body.get("model"), profiles)
    n = _check_sampling(body, profile)
    max_tokens = _check_max_tokens(body)
    tools = _check_tools(body.get("tools"))
    _check_thinking_rules(body, profile, tools)
    thinking = thinking_enabled(profile, body)
    messages = _check_messages(
        body.get("messages"),
        thinking=thinking,
        allow_cache_role=allow_cache_role,
        reject_empty_tool_call_content=reject_empty_tool_call_content,
        reject_empty_string_content=reject_empty_string_content,
    )
    if check_web_search_echo:
        _check_web_search_echo(messages)
    tok = tokenizer or _DEFAULT_TOKENIZER
    counted = [m for m in messages if m.get("role") != "cache"]
    tokens = tok.serialize_request(counted, tools)
    prompt_tokens = len(tokens) + extra_prompt_tokens
    requested = prompt_tokens + max_tokens
    if requested > profile.context_window:
        raise _invalid(
            "Invalid request: Your request exceeded model token limit: "
            f"{profile.context_window} (requested: {requested})"
        )
    return ValidatedChatRequest(
        profile=profile,
        thinking=thinking,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        n=n,
        messages=messages,
        tools=tools,
        tokens=tokens,
    )


def chat_request_error(
    body: Mapping[str, Any],
    *,
    profiles: Mapping[str, KimiModelProfile] | None = None,
) -> EmulatorAPIError | None:
    """Return the error Kimi would send for ``body``, or ``None`` if it is accepted.

    Args:
        body: The decoded JSON body of a chat completion request.
        profiles: The models the server knows (default: builtin profiles).

    Returns:
        The error, or ``None``.

    Example:
        >>> err = chat_request_error({"model": "kimi-k2.6", "temperature": 1.5,
        ...     "messages": [{"role": "user", "content": "hi"}]})
        >>> err.status, err.error_type
        (400, 'invalid_request_error')
    """
    try:
        validate_chat_request(body, profiles=profiles)
    except EmulatorAPIError as err:
        return err
    return None


def known_profiles(extra: Sequence[KimiModelProfile] = ()) -> dict[str, KimiModelProfile]:
    """Return the builtin profiles plus process-registered and ``extra`` ones.

    Args:
        extra: More profiles to serve.

    Returns:
        A name -> profile dict.
    """
    out = {name: get_profile(name) for name in list_profiles()}
    for profile in extra:
        out[profile.name] = profile
    return out
