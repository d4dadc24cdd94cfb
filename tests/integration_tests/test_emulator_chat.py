"""Chat completions over real HTTP: JSON, SSE streaming, usage, models, tokenizer."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from langchain_kimi_context.profiles import get_profile
from langchain_kimi_context.testing import EmulatorTokenizer, KimiEmulator

K2 = "kimi-k2.6"
# Most tests here are about the emulator's mechanics, not thinking: thinking off.
OFF = {"thinking": {"type": "disabled"}}
# One shared client: creating an httpx.Client per call costs ~20 ms (SSL context).
HTTP = httpx.Client(timeout=30)
THINKING = "kimi-k3"


def _post(emu: KimiEmulator, body: dict[str, Any], **kw: Any) -> httpx.Response:
    return HTTP.post(f"{emu.base_url}/chat/completions", json=body, headers=emu.headers, **kw)


def _sse_events(resp: httpx.Response) -> list[Any]:
    events: list[Any] = []
    for line in resp.text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_non_streaming_reply_shape_and_usage(emulator: KimiEmulator) -> None:
    messages = [{"role": "user", "content": "@reply 40"}]
    resp = _post(emulator, {**OFF, "model": K2, "messages": messages})
    assert resp.status_code == 200
    data = resp.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == K2
    choice = data["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "reasoning_content" not in choice["message"]
    tok = EmulatorTokenizer()
    usage = data["usage"]
    assert usage["prompt_tokens"] == tok.count_messages(messages)
    assert usage["completion_tokens"] == 40 == tok.count_text(choice["message"]["content"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + 40
    assert usage["cached_tokens"] == 0
    assert "prompt_tokens_details" not in usage
    record = emulator.chat_requests[-1]
    assert record.status == 200
    assert record.usage == usage
    assert record.body["messages"] == messages
    assert "sk-kimi" not in json.dumps(record.headers)


def test_streaming_sse_with_final_usage_chunk(emulator: KimiEmulator) -> None:
    body = {
        **OFF,
        "model": K2,
        "messages": [{"role": "user", "content": "@reply 50"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    resp = _post(emulator, body)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = _sse_events(resp)
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 50
    text = "".join(
        e["choices"][0]["delta"].get("content") or "" for e in events[:-2] if e["choices"]
    )
    assert EmulatorTokenizer().count_text(text) == 50
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    # Without include_usage there is no usage at all.
    body.pop("stream_options")
    events = _sse_events(_post(emulator, body))
    assert all("usage" not in e for e in events[:-1])


def test_stream_usage_inside_last_choice(make_emulator: Any) -> None:
    emu = make_emulator(stream_usage_mode="in_choice")
    body = {**OFF, "model": K2, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    events = _sse_events(_post(emu, body))
    last = events[-2]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["choices"][0]["usage"]["prompt_tokens"] > 0
    assert not any(e != "[DONE]" and e["choices"] == [] for e in events)


def test_thinking_reasoning_streams_before_content(emulator: KimiEmulator) -> None:
    body = {
        "model": THINKING,
        "messages": [{"role": "user", "content": "@think 30\n@reply 10"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = [e for e in _sse_events(_post(emulator, body)) if e != "[DONE]"]
    kinds = []
    for e in events:
        for ch in e["choices"]:
            if ch["delta"].get("reasoning_content"):
                kinds.append("r")
            if ch["delta"].get("content"):
                kinds.append("c")
    assert kinds == sorted(kinds, key=lambda k: k == "c")  # all reasoning first
    assert "r" in kinds
    assert "c" in kinds
    usage = events[-1]["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 30
    assert usage["completion_tokens"] == 40


def test_thinking_default_on_can_be_disabled(emulator: KimiEmulator) -> None:
    msgs = [{"role": "user", "content": "hello"}]
    on = _post(emulator, {"model": "kimi-k2.6", "messages": msgs}).json()
    off = _post(
        emulator,
        {"model": "kimi-k2.6", "messages": msgs, "thinking": {"type": "disabled"}},
    ).json()
    assert on["choices"][0]["message"]["reasoning_content"]
    assert on["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    assert "reasoning_content" not in off["choices"][0]["message"]
    assert "completion_tokens_details" not in off["usage"]


def test_tool_call_ids_increment_over_conversation(emulator: KimiEmulator) -> None:
    tools = [
        {"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "grep_code", "parameters": {"type": "object"}}},
    ]
    user = {
        "role": "user",
        "content": '@call read_file {"path": "a.py"}\n@call grep_code {"q": "x"}\n@then\n'
        '@call read_file {"path": "b.py"}\n@say finished',
    }
    msgs: list[dict[str, Any]] = [user]
    first = _post(emulator, {**OFF, "model": K2, "messages": msgs, "tools": tools}).json()
    calls = first["choices"][0]["message"]["tool_calls"]
    assert [c["id"] for c in calls] == ["functions.read_file:0", "functions.grep_code:1"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"path": "a.py"}
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    msgs.append(first["choices"][0]["message"])
    msgs += [{"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in calls]
    second = _post(emulator, {**OFF, "model": K2, "messages": msgs, "tools": tools}).json()
    calls2 = second["choices"][0]["message"]["tool_calls"]
    assert [c["id"] for c in calls2] == ["functions.read_file:2"]
    msgs.append(second["choices"][0]["message"])
    msgs.append({"role": "tool", "tool_call_id": calls2[0]["id"], "content": "done"})
    third = _post(emulator, {**OFF, "model": K2, "messages": msgs, "tools": tools}).json()
    assert third["choices"][0]["message"]["content"] == "finished"
    assert third["choices"][0]["finish_reason"] == "stop"


def test_streamed_tool_calls_reassemble(emulator: KimiEmulator) -> None:
    client = OpenAI(base_url=emulator.base_url, api_key=emulator.api_key)
    args = {"path": "src/very/long/path/to/module.py", "lines": [1, 2, 3]}
    stream = client.chat.completions.create(
        model=K2,
        extra_body=OFF,
        messages=[{"role": "user", "content": f"@call read_file {json.dumps(args)}"}],
        stream=True,
    )
    arguments = ""
    ids = []
    for chunk in stream:
        for ch in chunk.choices:
            for tc in ch.delta.tool_calls or []:
                if tc.id:
                    ids.append(tc.id)
                if tc.function and tc.function.arguments:
                    arguments += tc.function.arguments
    assert ids == ["functions.read_file:0"]
    assert json.loads(arguments) == args


def test_openai_sdk_sync_and_async(emulator: KimiEmulator) -> None:
    client = OpenAI(base_url=emulator.base_url, api_key=emulator.api_key)
    reply = client.chat.completions.create(
        model=K2, extra_body=OFF, messages=[{"role": "user", "content": "@say exact words"}]
    )
    assert reply.choices[0].message.content == "exact words"

    import asyncio

    async def run() -> list[str]:
        aclient = AsyncOpenAI(base_url=emulator.base_url, api_key=emulator.api_key)

        async def one(i: int) -> str:
            r = await aclient.chat.completions.create(
                model=K2, extra_body=OFF, messages=[{"role": "user", "content": f"@say n{i}"}]
            )
            return r.choices[0].message.content or ""

        out = await asyncio.gather(*(one(i) for i in range(8)))
        stream = await aclient.chat.completions.create(
            model=K2,
            extra_body=OFF,
            messages=[{"role": "user", "content": "@say streamed"}],
            stream=True,
        )
        text = ""
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
        await aclient.close()
        return [*out, text]

    results = asyncio.run(run())
    assert results == [f"n{i}" for i in range(8)] + ["streamed"]


def test_auth_errors(emulator: KimiEmulator) -> None:
    body = {**OFF, "model": K2, "messages": [{"role": "user", "content": "hi"}]}
    missing = HTTP.post(f"{emulator.base_url}/chat/completions", json=body)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_authentication_error"
    wrong = HTTP.post(
        f"{emulator.base_url}/chat/completions",
        json=body,
        headers={"Authorization": "Bearer sk-wrong-key-123456"},
    )
    assert wrong.status_code == 401
    client = OpenAI(base_url=emulator.base_url, api_key="sk-wrong-key-123456")
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert emulator.ledger("sk-wrong-key-123456").requests == 0


def test_models_and_estimate_token_count(emulator: KimiEmulator) -> None:
    models = HTTP.get(f"{emulator.base_url}/models", headers=emulator.headers).json()
    by_id = {m["id"]: m for m in models["data"]}
    assert by_id["kimi-k2.6"]["context_length"] == 262_144
    assert by_id["kimi-k3"]["context_length"] == get_profile("kimi-k3").context_window == 1_048_576
    one = HTTP.get(f"{emulator.base_url}/models/kimi-k2.7-code", headers=emulator.headers)
    assert one.json()["context_length"] == 262_144
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Count 12345 tokens, 你好!"},
    ]
    est = HTTP.post(
        f"{emulator.base_url}/tokenizers/estimate-token-count",
        json={**OFF, "model": K2, "messages": messages},
        headers=emulator.headers,
    ).json()
    assert est["data"]["total_tokens"] == EmulatorTokenizer().count_messages(messages)
    # and the chat usage agrees with the estimate
    usage = _post(emulator, {**OFF, "model": K2, "messages": messages}).json()["usage"]
    assert usage["prompt_tokens"] == est["data"]["total_tokens"]
    unknown = HTTP.post(
        f"{emulator.base_url}/tokenizers/estimate-token-count",
        json={"model": "gpt-4", "messages": messages},
        headers=emulator.headers,
    )
    assert unknown.status_code == 404


def test_max_tokens_truncates_with_length_finish(emulator: KimiEmulator) -> None:
    data = _post(
        emulator,
        {
            **OFF,
            "model": K2,
            "messages": [{"role": "user", "content": "@reply 100"}],
            "max_tokens": 7,
        },
    ).json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 7


def test_n_choices(make_emulator: Any) -> None:
    # Current Kimi models fix n to 1; a host serving a model without that lock (a user
    # profile) answers n choices.
    free = get_profile("kimi-k2.6").replace(
        name="gateway-kimi", fixed_params={}, fixed_params_thinking_off={}
    )
    emulator = make_emulator(profiles=[free])
    data = _post(
        emulator,
        {
            **OFF,
            "model": "gateway-kimi",
            "messages": [{"role": "user", "content": "@reply 5"}],
            "n": 3,
        },
    ).json()
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert data["usage"]["completion_tokens"] == 15


def test_keep_alive_option(make_emulator: Any) -> None:
    closing = make_emulator()
    with httpx.Client() as client:
        r = client.get(f"{closing.base_url}/models", headers=closing.headers)
        assert r.headers["connection"] == "close"
    keeping = make_emulator(keep_alive=True)
    with httpx.Client() as client:
        for _ in range(3):
            r = client.get(f"{keeping.base_url}/models", headers=keeping.headers)
            assert "connection" not in r.headers


def test_async_clients_across_event_loops(emulator: KimiEmulator) -> None:
    # One AsyncOpenAI client reused from two event loops (as cached clients are across
    # pytest-asyncio tests): works because the emulator closes connections by default.
    import asyncio

    aclient = AsyncOpenAI(base_url=emulator.base_url, api_key=emulator.api_key)

    async def ask() -> str:
        r = await aclient.chat.completions.create(
            model=K2, extra_body=OFF, messages=[{"role": "user", "content": "@say loop"}]
        )
        return r.choices[0].message.content or ""

    assert asyncio.run(ask()) == "loop"
    assert asyncio.run(ask()) == "loop"


def test_builtin_web_search_round_trip(emulator: KimiEmulator) -> None:
    tools = [{"type": "builtin_function", "function": {"name": "$web_search"}}]
    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": '@call $web_search {"query": "kimi k2"}\n@say found'}
    ]
    first = _post(emulator, {**OFF, "model": K2, "messages": msgs, "tools": tools}).json()
    call = first["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "$web_search"
    assert call["id"] == "functions.$web_search:0"
    msgs += [
        first["choices"][0]["message"],
        {
            "role": "tool",
            "tool_call_id": call["id"],
            "name": "$web_search",
            "content": call["function"]["arguments"],  # Kimi: echo the arguments back
        },
    ]
    final = _post(emulator, {**OFF, "model": K2, "messages": msgs, "tools": tools}).json()
    assert final["choices"][0]["message"]["content"] == "found"
