"""``validate_chat_request``: every rule Kimi enforces, without a server."""

from __future__ import annotations

from typing import Any

import pytest

from langchain_kimi_context.profiles import get_profile
from langchain_kimi_context.testing import (
    SERVER_DEFAULT_MAX_TOKENS,
    EmulatorAPIError,
    EmulatorTokenizer,
    chat_request_error,
    validate_chat_request,
)

K2 = "kimi-k2-0905-preview"


def _call(name: str, n: int) -> dict[str, Any]:
    return {
        "id": f"functions.{name}:{n}",
        "type": "function",
        "function": {"name": name, "arguments": "{}"},
    }


def _err(body: dict[str, Any], **kw: Any) -> EmulatorAPIError:
    with pytest.raises(EmulatorAPIError) as info:
        validate_chat_request(body, **kw)
    return info.value


def _body(messages: list[dict[str, Any]], model: str = K2, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": messages, **extra}


USER = {"role": "user", "content": "hi"}


def test_valid_request_summary() -> None:
    v = validate_chat_request(_body([{"role": "system", "content": "s"}, USER], max_tokens=10))
    assert v.profile.name == K2
    assert v.max_tokens == 10
    assert v.prompt_tokens == EmulatorTokenizer().count_messages(v.messages)
    assert v.n == 1
    assert not v.thinking


def test_unknown_model_is_404() -> None:
    err = _err(_body([USER], model="kimi-unknown"))
    assert (err.status, err.error_type) == (404, "resource_not_found_error")
    assert err.message == "Not found the model kimi-unknown or Permission denied"
    assert err.to_json() == {"error": {"type": err.error_type, "message": err.message}}


def test_orphan_tool_message() -> None:
    err = _err(_body([USER, {"role": "tool", "tool_call_id": "functions.x:0", "content": "r"}]))
    assert err.status == 400
    assert err.error_type == "invalid_request_error"
    assert err.message == "Invalid request: tool_call_id functions.x:0 is not found"
    # Missing id reproduces Kimi's double-space wording.
    err = _err(_body([USER, {"role": "tool", "content": "r"}]))
    assert "tool_call_id  is not found" in err.message


def test_tool_answer_must_follow_its_call_and_only_once() -> None:
    call = {"role": "assistant", "tool_calls": [_call("read_file", 0)]}
    ok = [USER, call, {"role": "tool", "tool_call_id": "functions.read_file:0", "content": "r"}]
    validate_chat_request(_body(ok))
    twice = [*ok, {"role": "tool", "tool_call_id": "functions.read_file:0", "content": "r"}]
    assert "is not found" in _err(_body(twice)).message
    # A later user turn closes the previous call group: answering after it is an orphan.
    late = [*ok, USER, {"role": "tool", "tool_call_id": "functions.read_file:0", "content": "r"}]
    assert "is not found" in _err(_body(late)).message


def test_unanswered_tool_calls_before_next_message_and_at_end() -> None:
    call = {"role": "assistant", "tool_calls": [_call("a_tool", 0), _call("b_tool", 1)]}
    partial = {"role": "tool", "tool_call_id": "functions.a_tool:0", "content": "r"}
    err = _err(_body([USER, call, partial, USER]))
    assert err.status == 400
    assert "functions.b_tool:1" in err.message
    assert "functions.a_tool:0" not in err.message
    assert "index 1" in err.message
    assert "did not have response messages" in _err(_body([USER, call])).message


def test_unknown_role() -> None:
    err = _err(_body([USER, {"role": "developer", "content": "x"}]))
    assert "unknown role 'developer' in message at index 1" in err.message
    # role "cache" only as the first message and only when allowed
    assert "unknown role" in _err(_body([{"role": "cache", "content": "cache_id=x"}])).message


def test_thinking_requires_reasoning_on_tool_call_messages() -> None:
    call = {"role": "assistant", "tool_calls": [_call("read_file", 0)]}
    msgs = [USER, call, {"role": "tool", "tool_call_id": "functions.read_file:0", "content": "r"}]
    err = _err(_body(msgs, model="kimi-k3"))
    assert err.message == (
        "thinking is enabled but reasoning_content is missing in assistant tool call "
        "message at index 1"
    )
    # default_on model: rejected unless thinking is disabled
    _err(_body(msgs, model="kimi-k2.6"))
    validate_chat_request(_body(msgs, model="kimi-k2.6", thinking={"type": "disabled"}))
    # with reasoning it is accepted; non-thinking models never need it
    msgs[1] = {**call, "reasoning_content": "I will read it."}
    assert validate_chat_request(_body(msgs, model="kimi-k3")).thinking
    validate_chat_request(_body([USER, call, msgs[2]]))


def test_window_overflow_message_and_default_max_tokens() -> None:
    profile = get_profile("moonshot-v1-8k")
    tok = EmulatorTokenizer()
    text = "word " * 7000
    msgs = [{"role": "user", "content": text}]
    prompt = tok.count_messages(msgs)
    err = _err(_body(msgs, model="moonshot-v1-8k", max_tokens=2000))
    assert err.status == 400
    assert err.message == (
        "Invalid request: Your request exceeded model token limit: "
        f"{profile.context_window} (requested: {prompt + 2000})"
    )
    # Omitted max_tokens counts as the server default.
    v = validate_chat_request(_body(msgs, model="moonshot-v1-8k"))
    assert v.max_tokens == SERVER_DEFAULT_MAX_TOKENS
    assert prompt + SERVER_DEFAULT_MAX_TOKENS <= profile.context_window
    # max_completion_tokens is honoured too.
    _err(_body(msgs, model="moonshot-v1-8k", max_completion_tokens=2000))


@pytest.mark.parametrize(
    ("extra", "model", "fragment"),
    [
        ({"temperature": 1.5}, K2, "temperature 1.5 is out of range"),
        ({"temperature": -0.1}, K2, "temperature -0.1 is out of range"),
        ({"temperature": 0.6}, "kimi-k2.6", "invalid temperature: only 1.0 is allowed"),
        ({"top_p": 0.5}, "kimi-k2.6", "invalid top_p: only 0.95 is allowed"),
        ({"n": 2}, "kimi-k2.6", "invalid n: only 1 is allowed"),
        ({"n": 6, "temperature": 0.7}, K2, "n 6 is out of range"),
        ({"n": 2, "temperature": 0.0}, K2, "n > 1 is not allowed"),
        ({"n": 2}, "moonshot-v1-8k", "n > 1 is not allowed"),  # default temperature 0
        ({"stop": ["a", "b", "c", "d", "e", "f"]}, K2, "stop must be"),
        ({"stop": ["x" * 33]}, K2, "at most 32 bytes"),
        ({"max_tokens": 0}, K2, "max_tokens must be a positive integer"),
    ],
)
def test_sampling_parameter_rules(extra: dict[str, Any], model: str, fragment: str) -> None:
    err = _err(_body([USER], model=model, **extra))
    assert err.status == 400
    assert fragment in err.message


def test_fixed_params_accept_their_own_values() -> None:
    validate_chat_request(_body([USER], model="kimi-k2.6", temperature=1.0, top_p=0.95, n=1))
    validate_chat_request(_body([USER], n=5, temperature=0.7))


@pytest.mark.parametrize("name", ["ab", "1abc", "has space", "x" * 65, "dollar$", "ünïcode"])
def test_bad_function_names(name: str) -> None:
    tools = [{"type": "function", "function": {"name": name, "parameters": {}}}]
    err = _err(_body([USER], tools=tools))
    assert "function name" in err.message


def test_good_tools_and_builtin_web_search() -> None:
    tools = [
        {"type": "function", "function": {"name": "read-file_2", "parameters": {}}},
        {"type": "builtin_function", "function": {"name": "$web_search"}},
    ]
    assert len(validate_chat_request(_body([USER], tools=tools)).tools) == 2
    dup = [tools[0], tools[0]]
    assert "duplicated" in _err(_body([USER], tools=dup)).message
    assert (
        "unknown tool type"
        in _err(_body([USER], tools=[{"type": "x", "function": {"name": "abc"}}])).message
    )


def test_empty_text_part_on_tool_call_message() -> None:
    tool_msg = {"role": "tool", "tool_call_id": "functions.f_tool:0", "content": "r"}
    for content in ([{"type": "text", "text": ""}], []):
        call = {"role": "assistant", "content": content, "tool_calls": [_call("f_tool", 0)]}
        assert "empty text content part" in _err(_body([USER, call, tool_msg])).message
    # content "" is accepted by default, rejected in the stricter mode; None always OK
    call = {"role": "assistant", "content": "", "tool_calls": [_call("f_tool", 0)]}
    validate_chat_request(_body([USER, call, tool_msg]))
    _err(_body([USER, call, tool_msg]), reject_empty_string_content=True)
    call["content"] = None
    validate_chat_request(_body([USER, call, tool_msg]), reject_empty_string_content=True)


def test_structural_errors() -> None:
    assert "non-empty list" in _err(_body([])).message
    assert "must have content" in _err(_body([{"role": "user"}])).message
    assert chat_request_error(_body([USER])) is None
    err = chat_request_error({"model": K2, "messages": "nope"})
    assert err is not None
    assert err.status == 400


def test_partial_mode_only_on_last_assistant_message() -> None:
    partial = {"role": "assistant", "content": "Once upon", "partial": True}
    validate_chat_request(_body([USER, partial]))
    assert "partial is only allowed" in _err(_body([USER, partial, USER])).message
    user_partial = {"role": "user", "content": "x", "partial": True}
    assert "partial is only allowed" in _err(_body([user_partial])).message


def test_fixed_params_follow_the_thinking_toggle() -> None:
    base = {"model": "kimi-k2.6", "messages": [{"role": "user", "content": "hi"}]}
    validate_chat_request({**base, "temperature": 1.0})
    validate_chat_request({**base, "temperature": 0.6, "thinking": {"type": "disabled"}})
    with pytest.raises(EmulatorAPIError, match=r"only 0\.6 is allowed"):
        validate_chat_request({**base, "temperature": 1.0, "thinking": {"type": "disabled"}})
