"""``KimiChatModel`` against the Kimi emulator over real HTTP (no mocked client).

Each test maps to a bullet of the chat-model issue: invoke/stream/tools, usage with
cache hits, reasoning round trips, every typed error (via the emulator's fault
injection), retries, Kimi quirks, the caching seam and secrets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from langchain_core.exceptions import ContextOverflowError, ModelConnectionError, ModelTimeoutError
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableLambda

from langchain_kimi_context import (
    KimiAPIContextOverflowError,
    KimiAuthenticationError,
    KimiChatModel,
    KimiContentFilterError,
    KimiEmptyResponseError,
    KimiNotFoundError,
    KimiPermissionDeniedError,
    KimiQuotaExceededError,
    KimiRateLimitError,
    KimiServerError,
    is_retryable_error,
)
from langchain_kimi_context import profiles as profiles_module
from langchain_kimi_context.chat_models import WEB_SEARCH_TOOL, builtin_tool_result
from langchain_kimi_context.chat_models import retrying as chat_models_module
from langchain_kimi_context.profiles import get_profile
from langchain_kimi_context.testing import Fault, KimiEmulator

MODEL = "kimi-k2.6"
THINKING_MODEL = "kimi-k3"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record (and skip) the model's retry sleeps so retry tests are fast and exact."""
    recorded: list[float] = []

    async def fake_async_sleep(delay: float) -> None:
        recorded.append(delay)

    monkeypatch.setattr(chat_models_module, "_sleep", recorded.append)
    monkeypatch.setattr(chat_models_module, "_async_sleep", fake_async_sleep)
    return recorded


@pytest.fixture
def make_model(emulator: KimiEmulator) -> Callable[..., KimiChatModel]:
    def factory(**kwargs: Any) -> KimiChatModel:
        params: dict[str, Any] = {
            "model": MODEL,
            "base_url": emulator.base_url,
            "api_key": emulator.api_key,
        }
        params.update(kwargs)
        if params["model"] == MODEL:
            # The generic tests run without thinking (kimi-k2.6's switch); the thinking
            # rules have their own tests here and in test_kimi_fidelity.py.
            params.setdefault("thinking", False)
        return KimiChatModel(**params)

    return factory


def read_file(path: str) -> str:
    """Read a file of the workspace.

    Args:
        path: Path of the file.
    """
    return f"contents of {path}"


def _settled_requests(emulator: KimiEmulator) -> list[Any]:
    """The request log once every started request is logged.

    The emulator appends a record after it has written the response, so a client can
    see the reply (or the end of a stream) a moment before the record exists.
    """
    deadline = time.monotonic() + 5.0
    while len(emulator.requests) < getattr(emulator, "_seq", 0):
        if time.monotonic() > deadline:
            break
        time.sleep(0.002)
    return emulator.requests


def _chat_requests(emulator: KimiEmulator) -> list[Any]:
    return [r for r in _settled_requests(emulator) if r.path.endswith("/chat/completions")]


def _stream(model: Any, messages: Any, **kwargs: Any) -> AIMessageChunk:
    chunks = list(model.stream(messages, **kwargs))
    assert chunks
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert isinstance(merged, AIMessageChunk)
    return merged


# ----------------------------------------------------------------------------- basics


def test_invoke_sends_kimi_defaults(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    model = make_model()
    reply = model.invoke("@say hello there")
    assert reply.content == "hello there"
    assert reply.usage_metadata is not None
    (request,) = _chat_requests(emulator)
    assert request.body["max_tokens"] == model.model_profile.default_max_tokens
    assert reply.usage_metadata["input_tokens"] == request.usage["prompt_tokens"]
    assert reply.usage_metadata["output_tokens"] == request.usage["completion_tokens"]
    assert reply.response_metadata["finish_reason"] == "stop"


async def test_ainvoke_and_astream(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    model = make_model()
    reply = await model.ainvoke("@say async hello")
    assert reply.content == "async hello"
    chunks = [c async for c in model.astream("@reply 40")]
    text = "".join(str(c.content) for c in chunks)
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert len(usage) == 1
    last = _chat_requests(emulator)[-1]
    assert last.stream
    assert usage[0]["output_tokens"] == last.usage["completion_tokens"] == 40
    assert text == last.response["choices"][0]["message"]["content"]


def test_stream_usage_on_by_default(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    merged = _stream(make_model(), "@reply 30")
    request = _chat_requests(emulator)[-1]
    assert request.body["stream_options"] == {"include_usage": True}
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] == 30
    assert merged.usage_metadata["input_tokens"] == request.usage["prompt_tokens"]


@pytest.mark.parametrize("mode", ["in_choice", "both"])
def test_stream_usage_inside_last_choice_counted_once(
    make_emulator: Callable[..., KimiEmulator], mode: str
) -> None:
    emu = make_emulator(stream_usage_mode=mode)
    model = KimiChatModel(model=MODEL, base_url=emu.base_url, api_key=emu.api_key, thinking=False)
    merged = _stream(model, "@reply 25")
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] == 25  # not 50 when sent twice
    assert (
        merged.usage_metadata["input_tokens"] == _settled_requests(emu)[-1].usage["prompt_tokens"]
    )


def test_tool_loop_ids_and_empty_content_omitted(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    model = make_model().bind_tools([read_file])
    question = HumanMessage(
        'read it\n@call read_file {"path": "a.py"}\n@call read_file {"path": "b.py"}'
    )
    first = model.invoke([question])
    assert [c["id"] for c in first.tool_calls] == [
        "functions.read_file:0",
        "functions.read_file:1",
    ]
    assert [c["args"] for c in first.tool_calls] == [{"path": "a.py"}, {"path": "b.py"}]
    results = [
        ToolMessage(read_file(**c["args"]), tool_call_id=c["id"] or "") for c in first.tool_calls
    ]
    final = model.invoke([question, first, *results])
    assert "contents of a.py" in str(final.content)
    replayed = _chat_requests(emulator)[-1].body["messages"][1]
    assert replayed["role"] == "assistant"
    assert "content" not in replayed
    assert [c["id"] for c in replayed["tool_calls"]] == [c["id"] for c in first.tool_calls]


def test_streamed_tool_calls(make_model: Callable[..., KimiChatModel]) -> None:
    model = make_model().bind_tools([read_file])
    merged = _stream(model, '@call read_file {"path": "x.py"}')
    assert merged.tool_calls == [
        {
            "name": "read_file",
            "args": {"path": "x.py"},
            "id": "functions.read_file:0",
            "type": "tool_call",
        }
    ]


# ----------------------------------------------------------------------------- cache hits


def _long_history() -> list[BaseMessage]:
    system = SystemMessage("You are a careful coding agent. " + "Rules: be precise. " * 400)
    return [system, HumanMessage("first question @reply 20")]


def test_cache_read_equals_server_cached_tokens_invoke_and_stream(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    model = make_model()
    history = _long_history()
    first = model.invoke(history)
    assert first.usage_metadata is not None
    assert first.usage_metadata["input_token_details"]["cache_read"] == 0
    second = model.invoke([*history, first, HumanMessage("again @reply 10")])
    cached = _chat_requests(emulator)[-1].usage["cached_tokens"]
    assert cached >= 256
    assert second.usage_metadata is not None
    assert second.usage_metadata["input_token_details"]["cache_read"] == cached
    streamed = _stream(model, [*history, first, HumanMessage("stream @reply 10")])
    stream_cached = _chat_requests(emulator)[-1].usage["cached_tokens"]
    assert stream_cached >= 256
    assert streamed.usage_metadata is not None
    assert streamed.usage_metadata["input_token_details"]["cache_read"] == stream_cached


def test_cache_read_from_nested_details_when_server_sends_both(
    make_emulator: Callable[..., KimiEmulator],
) -> None:
    emu = make_emulator(nested_cached_tokens=True)
    model = KimiChatModel(model=MODEL, base_url=emu.base_url, api_key=emu.api_key)
    history = _long_history()
    first = model.invoke(history)
    second = model.invoke([*history, first, HumanMessage("again")])
    usage = _settled_requests(emu)[-1].usage
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["cached_tokens"] > 0
    assert second.usage_metadata["input_token_details"]["cache_read"] == usage["cached_tokens"]  # type: ignore[index]


# ----------------------------------------------------------------------------- reasoning


def test_reasoning_round_trip_over_tool_loop_on_thinking_model(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    model = make_model(model=THINKING_MODEL).bind_tools([read_file])
    question = HumanMessage(
        '@think 20\n@call read_file {"path": "a.py"}\n@then\n@call read_file {"path": "b.py"}'
    )
    history: list[BaseMessage] = [question]
    for _ in range(2):
        step = model.invoke(history)
        assert step.tool_calls
        reasoning = step.additional_kwargs["reasoning_content"]
        assert reasoning
        assert step.usage_metadata is not None
        server_usage = _chat_requests(emulator)[-1].usage
        assert (
            step.usage_metadata["output_token_details"]["reasoning"]
            == server_usage["completion_tokens_details"]["reasoning_tokens"]
            >= 20
        )
        history += [
            step,
            *(
                ToolMessage(read_file(**c["args"]), tool_call_id=c["id"] or "")
                for c in step.tool_calls
            ),
        ]
    final = model.invoke(history)
    assert final.content
    sent = [m for m in _chat_requests(emulator)[-1].body["messages"] if m["role"] == "assistant"]
    assert [m["reasoning_content"] for m in sent] == [
        m.additional_kwargs["reasoning_content"] for m in history if isinstance(m, AIMessage)
    ]
    # Reasoning lost on the way (e.g. a history from another client) is replayed as an
    # empty string, which Kimi accepts (without the field it answers 400, see
    # test_kimi_fidelity.py::test_reasoning_missing_is_rejected_by_the_api).
    stripped = [
        AIMessage(content="", tool_calls=m.tool_calls) if isinstance(m, AIMessage) else m
        for m in history
    ]
    assert model.invoke(stripped).content
    sent = [m for m in _chat_requests(emulator)[-1].body["messages"] if m["role"] == "assistant"]
    assert {m["reasoning_content"] for m in sent} == {""}


def test_reasoning_streamed_and_reported(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    model = make_model(model=THINKING_MODEL).bind_tools([read_file])
    merged = _stream(model, '@think 15\n@call read_file {"path": "a.py"}')
    request = _chat_requests(emulator)[-1]
    server_message = request.response["choices"][0]["message"]
    assert merged.additional_kwargs["reasoning_content"] == server_message["reasoning_content"]
    assert merged.tool_calls[0]["id"] == server_message["tool_calls"][0]["id"]
    # the streamed message replays fine in the next turn
    result = ToolMessage("print(1)", tool_call_id=merged.tool_calls[0]["id"] or "")
    final = model.invoke(
        [HumanMessage('@think 15\n@call read_file {"path": "a.py"}'), merged, result]
    )
    assert final.content


def test_thinking_toggle_is_sent(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    make_model(model="kimi-k2.6", thinking=False).invoke("@say off")
    assert _chat_requests(emulator)[-1].body["thinking"] == {"type": "disabled"}
    reply = make_model(model="kimi-k2.6", thinking=True).invoke("@say on")
    assert _chat_requests(emulator)[-1].body["thinking"] == {"type": "enabled"}
    assert reply.additional_kwargs.get("reasoning_content")


# ----------------------------------------------------------------------------- errors


def test_overflow_error_typed_not_retried_and_window_learned(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    model = make_model(max_tokens=1024)
    with pytest.raises(KimiAPIContextOverflowError) as info:
        model.invoke("word " * 270_000)
    err = info.value
    assert isinstance(err, ContextOverflowError)
    assert err.window == 262_144
    assert err.requested is not None
    assert err.requested > 262_144
    assert err.model == MODEL
    assert len(_chat_requests(emulator)) == 1


def test_overflow_fault_teaches_the_window(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    model = make_model()
    emulator.faults.add(
        Fault(
            "overflow",
            message=(
                "Invalid request: Your request exceeded model token limit: 131072 "
                "(requested: 140000)"
            ),
        ),
        at=1,
    )
    with pytest.raises(KimiAPIContextOverflowError) as info:
        model.invoke("hi")
    assert (info.value.window, info.value.requested) == (131072, 140000)
    assert model.model_profile.context_window == 131072
    assert model.profile["max_input_tokens"] == 131072  # type: ignore[index]


def test_rate_limit_retried_after_server_hint(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    emulator.faults.rate_limit(retry_after=3, at=1)
    reply = make_model().invoke("@say ok")
    assert reply.content == "ok"
    assert sleeps == [3.0]
    assert [r.status for r in _chat_requests(emulator)] == [429, 200]


def test_retry_after_above_cap_is_raised_not_waited(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    emulator.faults.rate_limit(retry_after=120, at=1)
    with pytest.raises(KimiRateLimitError) as info:
        make_model().invoke("@say ok")
    assert info.value.retry_after == 120
    assert sleeps == []


async def test_overloaded_retried_with_backoff_async(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    emulator.faults.overloaded(at=[1, 2])
    reply = await make_model().ainvoke("@say fine")
    assert reply.content == "fine"
    assert len(sleeps) == 2
    assert all(0 < s <= 8 for s in sleeps)
    assert [r.status for r in _chat_requests(emulator)] == [429, 429, 200]


def test_overloaded_gives_up_after_max_retries(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    emulator.faults.overloaded(at=[1, 2, 3])
    with pytest.raises(KimiRateLimitError) as info:
        make_model(max_retries=1).invoke("@say fine")
    assert info.value.info.kind == "engine_overloaded"  # type: ignore[attr-defined]
    assert len(_chat_requests(emulator)) == 2


def test_quota_exceeded_not_retried(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    emulator.faults.quota_exceeded(at=1)
    with pytest.raises(KimiQuotaExceededError):
        make_model(max_retries=3).invoke("@say x")
    assert len(_chat_requests(emulator)) == 1
    assert sleeps == []


def test_server_error_retried_then_typed(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    emulator.faults.server_error(at=[1, 2, 3])
    with pytest.raises(KimiServerError):
        make_model(max_retries=2).invoke("@say x")
    assert len(_chat_requests(emulator)) == 3
    emulator.reset()
    emulator.faults.server_error(at=1)
    assert make_model().invoke("@say recovered").content == "recovered"


def test_authentication_error_typed_not_retried_and_key_hidden(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    secret = "sk-wrong-key-must-not-appear-1234567890"
    with pytest.raises(KimiAuthenticationError) as info:
        make_model(api_key=secret).invoke("@say x")
    assert len(_chat_requests(emulator)) == 1
    text = f"{info.value!s} {info.value!r} {info.value.args}"
    assert secret not in text
    assert sleeps == []


def test_not_found_error_typed_not_retried(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    with pytest.raises(KimiNotFoundError, match="no-such-model"):
        make_model(model="no-such-model").invoke("@say x")
    assert len(_chat_requests(emulator)) == 1


def test_permission_denied_typed_not_retried(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    emulator.faults.add(
        Fault("server_error", status=403, message="permission denied for this model"), at=1
    )
    with pytest.raises(KimiPermissionDeniedError):
        make_model().invoke("@say x")
    assert len(_chat_requests(emulator)) == 1


def test_content_filter_typed_not_retried(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    emulator.faults.add(
        Fault(
            "server_error",
            status=400,
            message="The request was rejected because it was considered high risk",
        ),
        at=1,
    )
    with pytest.raises(KimiContentFilterError):
        make_model().invoke("@say x")
    assert len(_chat_requests(emulator)) == 1


def test_empty_reply_retried_then_raised(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    emulator.faults.empty_reply(at=1)
    assert make_model().invoke("@say second time").content == "second time"
    assert len(_chat_requests(emulator)) == 2
    with pytest.raises(KimiEmptyResponseError):
        make_model(max_retries=0).invoke("@empty")
    with pytest.raises(KimiEmptyResponseError):
        _stream(make_model(max_retries=0), "@empty")


def test_stream_error_before_first_chunk_is_retried(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    emulator.faults.overloaded(at=1)
    merged = _stream(make_model(), "@say streamed")
    assert merged.content == "streamed"
    assert len(_chat_requests(emulator)) == 2


def test_stream_cut_midway_raises_and_is_not_replayed(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    emulator.faults.cut_stream(after_chunks=2, at=1)
    received: list[AIMessageChunk] = []

    def consume() -> None:
        received.extend(make_model().stream("@reply 200"))

    with pytest.raises(ModelConnectionError) as info:
        consume()
    assert received  # the cut came after chunks were delivered
    assert len(_chat_requests(emulator)) == 1  # not retried: chunks were already yielded
    assert is_retryable_error(info.value)  # an outer layer may retry the whole call
    # the same cut on a non-streaming call is retried by the model itself
    emulator.faults.cut_stream(after_chunks=2, at=1)
    assert make_model().invoke("@say whole").content == "whole"


def test_astream_retried_before_first_chunk_only(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    async def collect(model: KimiChatModel, text: str) -> list[AIMessageChunk]:
        return [chunk async for chunk in model.astream(text)]

    emulator.faults.overloaded(at=1)
    chunks = asyncio.run(collect(make_model(), "@say streamed"))
    assert "".join(str(c.content) for c in chunks) == "streamed"
    assert len(_chat_requests(emulator)) == 2
    assert len(sleeps) == 1
    emulator.reset()
    emulator.faults.cut_stream(after_chunks=2, at=1)
    with pytest.raises(ModelConnectionError):
        asyncio.run(collect(make_model(), "@reply 200"))
    assert len(_chat_requests(emulator)) == 1  # not retried: chunks were already yielded


# ----------------------------------------------------------------------------- quirks


def test_web_search_builtin_round_trip(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    model = make_model().bind_tools([WEB_SEARCH_TOOL])
    question = HumanMessage('@call $web_search {"search_result": {"search_id": "s-1"}}')
    first = model.invoke([question])
    (call,) = first.tool_calls
    assert call["name"] == "$web_search"
    sent_tools = _chat_requests(emulator)[-1].body["tools"]
    assert sent_tools == [{"type": "builtin_function", "function": {"name": "$web_search"}}]
    final = model.invoke([question, first, builtin_tool_result(call)])
    assert final.content
    tool_message = _chat_requests(emulator)[-1].body["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["tool_call_id"] == call["id"]


def test_partial_mode_sent(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    prefix = AIMessage('{"answer": ', additional_kwargs={"partial": True})
    make_model().invoke([HumanMessage("@say 42}"), prefix])
    last = _chat_requests(emulator)[-1].body["messages"][-1]
    assert last == {"role": "assistant", "content": '{"answer": ', "partial": True}


@pytest.fixture
def restore_profiles() -> Iterator[None]:
    """refresh_profile() registers windows process-wide: undo it after the test."""
    saved = dict(profiles_module._registry)
    yield
    with profiles_module._lock:
        profiles_module._registry.clear()
        profiles_module._registry.update(saved)


@pytest.mark.usefixtures("restore_profiles")
def test_refresh_profile_from_models_endpoint(
    make_emulator: Callable[..., KimiEmulator],
) -> None:
    served = get_profile(MODEL).replace(context_window=200_000)
    emu = make_emulator(profiles=[served])
    model = KimiChatModel(model=MODEL, base_url=emu.base_url, api_key=emu.api_key)
    assert model.profile["max_input_tokens"] == 262_144  # type: ignore[index]
    profile = model.refresh_profile()
    assert (profile.source, profile.context_window) == ("/v1/models", 200_000)
    assert model.profile["max_input_tokens"] == 200_000  # type: ignore[index]
    assert any(r.path == "/v1/models" for r in _settled_requests(emu))
    assert asyncio.run(model.arefresh_profile()).context_window == 200_000


# ----------------------------------------------------------------------------- caching seam


class RecordingStrategy:
    """A strategy that tags requests the way the caching helper's strategies will."""

    def __init__(self) -> None:
        self.prepared: list[str | None] = []
        self.recorded: list[Mapping[str, Any] | None] = []
        self.closed = False

    def prepare(self, payload: dict[str, Any], *, session_id: str | None) -> dict[str, Any]:
        self.prepared.append(session_id)
        if session_id:
            payload = {**payload, "prompt_cache_key": session_id}
        headers = {**(payload.get("extra_headers") or {}), "X-Test-Session": str(session_id)}
        return {**payload, "extra_headers": headers}

    async def aprepare(self, payload: dict[str, Any], *, session_id: str | None) -> dict[str, Any]:
        return self.prepare(payload, session_id=session_id)

    def record(
        self,
        payload: Mapping[str, Any],
        usage: Mapping[str, Any] | None,
        *,
        session_id: str | None,
    ) -> dict[str, Any]:
        self.recorded.append(usage)
        return {"kimi_cache": {"session": session_id, "cached": (usage or {}).get("cached_tokens")}}

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def test_cache_strategy_prepare_and_record_invoke_and_stream(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    strategy = RecordingStrategy()
    with make_model(cache_strategy=strategy, session_id="field-sess") as model:
        reply = model.invoke("@say a", session_id="call-sess")
        request = _chat_requests(emulator)[-1]
        assert request.body["prompt_cache_key"] == "call-sess"
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers["x-test-session"] == "call-sess"
        assert reply.response_metadata["kimi_cache"] == {"session": "call-sess", "cached": 0}
        assert strategy.recorded[-1] == request.usage
        merged = _stream(model, "@say b")
        assert _chat_requests(emulator)[-1].body["prompt_cache_key"] == "field-sess"
        assert merged.response_metadata["kimi_cache"]["session"] == "field-sess"
        assert strategy.recorded[-1] == _chat_requests(emulator)[-1].usage
    assert strategy.closed


async def test_cache_strategy_async_and_thread_id_from_config(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    strategy = RecordingStrategy()
    model = make_model(cache_strategy=strategy)

    async def node(text: str) -> AIMessage:
        return await model.ainvoke(text)

    chain = RunnableLambda(node)
    reply = await chain.ainvoke("@say t", config={"configurable": {"thread_id": "thread-42"}})
    assert _chat_requests(emulator)[-1].body["prompt_cache_key"] == "thread-42"
    assert reply.response_metadata["kimi_cache"]["session"] == "thread-42"
    chunks = [c async for c in model.astream("@say s")]
    assert strategy.prepared[-1] is None
    assert any(c.response_metadata.get("kimi_cache") for c in chunks)


def test_async_calls_from_successive_event_loops(make_model: Callable[..., KimiChatModel]) -> None:
    # langchain-openai shares one async connection pool whose connections belong to the
    # loop that opened them; a second asyncio.run() used to fail with "Event loop is closed".
    model = make_model()
    assert asyncio.run(model.ainvoke("@say one")).content == "one"
    assert asyncio.run(model.ainvoke("@say two")).content == "two"
    other = make_model()
    assert asyncio.run(other.ainvoke("@say three")).content == "three"


# A 1x1 transparent PNG.
_PNG = "".join(
    (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg",
        "AAAABJRU5ErkJggg==",
    )
)


def test_image_input_base64(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    model = make_model(model="kimi-k2.6")
    for block in (
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{_PNG}"}},
        {"type": "image", "base64": _PNG, "mime_type": "image/png"},
    ):
        reply = model.invoke([HumanMessage(content=[{"type": "text", "text": "describe"}, block])])
        assert reply.content
        sent = _chat_requests(emulator)[-1].body["messages"][0]["content"]
        assert sent[1] == {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{_PNG}"},
        }


def test_timeout_is_retried(
    make_emulator: Callable[..., KimiEmulator], sleeps: list[float]
) -> None:
    # Own emulator: the server keeps serving the timed-out request after the client gave
    # up, which must not leak into the shared emulator of other tests.
    emu = make_emulator()

    def model(**kwargs: Any) -> KimiChatModel:
        return KimiChatModel(model=MODEL, base_url=emu.base_url, api_key=emu.api_key, **kwargs)

    emu.faults.slow(1.0, at=1)
    reply = model(timeout=0.3).invoke("@say in time")
    assert reply.content == "in time"
    assert len(sleeps) == 1
    emu.faults.slow(1.0, at=1)
    impatient = model(timeout=0.3, max_retries=0)
    with pytest.raises(ModelTimeoutError):
        impatient.invoke("@say late")


def test_secret_redacted_from_errors_and_logs(
    emulator: KimiEmulator,
    make_model: Callable[..., KimiChatModel],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A server that echoes the key back in its error message (OpenAI does, partly).
    emulator.faults.add(
        Fault(
            "server_error",
            status=401,
            message=f"Incorrect API key provided: {emulator.api_key}",
        ),
        at=1,
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(KimiAuthenticationError) as info:
        make_model().invoke("@say x")
    err = info.value
    assert emulator.api_key not in f"{err!s} {err!r} {err.args} {err.message}"
    assert "**********" in str(err)
    assert err.__cause__ is None  # the unredacted original is not chained
    make_model().invoke("@say logged")
    assert caplog.records  # openai/httpx debug logging was on
    assert emulator.api_key not in caplog.text


def test_session_id_from_langgraph_thread_id(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    from langgraph.graph import START, MessagesState, StateGraph

    strategy = RecordingStrategy()
    model = make_model(cache_strategy=strategy)

    def call_model(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_edge(START, "model")
    app = graph.compile()
    out = app.invoke(
        {"messages": [HumanMessage("@say from the graph")]},
        config={"configurable": {"thread_id": "lg-thread-1"}},
    )
    assert out["messages"][-1].content == "from the graph"
    assert strategy.prepared == ["lg-thread-1"]
    assert _chat_requests(emulator)[-1].body["prompt_cache_key"] == "lg-thread-1"


def test_overflow_never_learns_a_larger_window(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    model = make_model(profile_overrides={"context_window": 100_000})
    emulator.faults.add(
        Fault(
            "overflow",
            message="Invalid request: Your request exceeded model token limit: 262144",
        ),
        at=1,
    )
    with pytest.raises(KimiAPIContextOverflowError) as info:
        model.invoke("hi")
    assert info.value.window == 262144
    assert model.model_profile.context_window == 100_000


@pytest.mark.parametrize("output_version", [None, "v1"])
def test_reasoning_content_block_round_trips(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], output_version: str | None
) -> None:
    model = make_model(model=THINKING_MODEL, output_version=output_version).bind_tools([read_file])
    question = HumanMessage('@think 10\n@call read_file {"path": "a.py"}')
    for step in (model.invoke([question]), _stream(model, [question])):
        reasoning = step.additional_kwargs["reasoning_content"]
        blocks = step.content_blocks
        assert blocks[0]["type"] == "reasoning"
        assert blocks[0]["reasoning"] == reasoning  # type: ignore[typeddict-item]
        assert sum(b["type"] == "reasoning" for b in blocks) == 1
        assert any(b["type"] == "tool_call" for b in blocks)
        result = ToolMessage("print(1)", tool_call_id=step.tool_calls[0]["id"] or "")
        assert model.invoke([question, step, result]).content
        replayed = _chat_requests(emulator)[-1].body["messages"][1]
        assert replayed["reasoning_content"] == reasoning


def test_cache_strategy_record_without_stream_usage(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel]
) -> None:
    strategy = RecordingStrategy()
    model = make_model(cache_strategy=strategy, stream_usage=False, session_id="s-9")
    chunks = list(model.stream("@say no usage"))
    assert "stream_options" not in _chat_requests(emulator)[-1].body
    assert all(c.usage_metadata is None for c in chunks)
    assert strategy.recorded == [None]
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged.content == "no usage"
    assert merged.response_metadata["kimi_cache"] == {"session": "s-9", "cached": None}


def test_auth_and_not_found_errors_say_how_to_fix_them(
    emulator: KimiEmulator, make_model: Callable[..., KimiChatModel], sleeps: list[float]
) -> None:
    # They used to carry only the server's text ("Invalid Authentication").
    secret = "sk-wrong-key-for-the-hint-test-0987654321"
    with pytest.raises(KimiAuthenticationError) as auth:
        make_model(api_key=secret).invoke("@say x")
    text = str(auth.value)
    assert text.startswith("Invalid Authentication (HTTP 401 from " + emulator.base_url + ")")
    assert "MOONSHOT_API_KEY" in text
    assert "https://api.moonshot.ai/v1" in text
    assert "https://api.moonshot.cn/v1" in text
    assert secret not in f"{text} {auth.value!r} {auth.value.message}"
    assert auth.value.info.message == "Invalid Authentication"  # the server's own words
    with pytest.raises(KimiNotFoundError) as missing:
        make_model(model="kimi-k9").invoke("@say x")
    assert "Not found the model kimi-k9" in str(missing.value)
    assert "Check the model name" in str(missing.value)
    assert "refresh_profile()" in str(missing.value)
