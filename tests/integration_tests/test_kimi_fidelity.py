"""Today's Kimi API rules, one test per rule, over real HTTP to the emulator.

Each test is named after the rule it proves and runs on every current model (the rule's
outcome per model is read from the model's profile: the same data the package applies).
The public evidence of each rule is listed in ``docs/kimi-api-rules.md``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel

from langchain_kimi_context import (
    DEFAULT_MODEL,
    KimiAuthenticationError,
    KimiChatModel,
    KimiConfigurationError,
    KimiContextMiddleware,
    KimiModelRetiredError,
    KimiOutputLimitError,
    KimiQuotaExceededError,
    RollingSnapshotMemory,
    current_models,
    get_profile,
)
from langchain_kimi_context.agent import AgentSettings, RetrySettings, create_kimi_agent
from langchain_kimi_context.chat_models import WEB_SEARCH_TOOL, builtin_tool_result
from langchain_kimi_context.chat_models import retrying as chat_models_module
from langchain_kimi_context.errors import from_openai_error
from langchain_kimi_context.profiles import RETIRED_PROFILES, KimiModelProfile
from langchain_kimi_context.testing import Fault, KimiEmulator
from langchain_kimi_context.testing.validation import known_profiles
from langchain_kimi_context.thinking_rules import plan_tool_choice
from langchain_kimi_context.tokens import ApproximateBackend

CURRENT = current_models()
THINKING_PAIR = ["kimi-k3", "kimi-k2.6"]
HTTP = httpx.Client(timeout=30)
SYSTEM = "You are a careful coding agent. " + " ".join(f"rule {i} matters." for i in range(300))


def read_file(path: str) -> str:
    """Read a file of the workspace.

    Args:
        path: The file path.
    """
    return f"# {path}\nprint('hello from {path}')\n"


class Weather(BaseModel):
    """Weather in a city."""

    city: str
    celsius: int


def _model(emu: KimiEmulator, model: str, **kwargs: Any) -> KimiChatModel:
    kwargs.setdefault("max_retries", 0)
    return KimiChatModel(model=model, base_url=emu.base_url, api_key=emu.api_key, **kwargs)


def _post(emu: KimiEmulator, body: dict[str, Any]) -> httpx.Response:
    return HTTP.post(f"{emu.base_url}/chat/completions", json=body, headers=emu.headers)


def _chats(emu: KimiEmulator) -> list[Any]:
    return emu.chat_requests


def _merge(chunks: Iterator[Any]) -> Any:
    merged: Any = None
    for chunk in chunks:
        merged = chunk if merged is None else merged + chunk
    return merged


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(chat_models_module, "_sleep", recorded.append)
    return recorded


# ----------------------------------------------------------------------------- catalog


def test_catalog_serves_exactly_the_current_models(emulator: KimiEmulator) -> None:
    listed = HTTP.get(f"{emulator.base_url}/models", headers=emulator.headers).json()["data"]
    windows = {m["id"]: m["context_length"] for m in listed}
    assert (
        sorted(windows)
        == CURRENT
        == [
            "kimi-k2.6",
            "kimi-k2.7-code",
            "kimi-k2.7-code-highspeed",
            "kimi-k3",
        ]
    )
    assert windows["kimi-k3"] == 1_048_576
    assert windows["kimi-k2.6"] == 262_144
    k3 = get_profile("kimi-k3").pricing
    assert (k3.input_cache_miss, k3.input_cache_hit, k3.output) == (3.00, 0.30, 15.00)
    k26 = get_profile("kimi-k2.6").pricing
    assert (k26.input_cache_miss, k26.input_cache_hit, k26.output) == (0.95, 0.16, 4.00)
    # the emulator bills at the catalog's prices
    _model(emulator, "kimi-k3").invoke("@reply 10")
    entry = emulator.ledger().entries[-1]
    assert entry.cost == pytest.approx(
        k3.cost(
            prompt_tokens=entry.prompt_tokens,
            cached_tokens=entry.cached_tokens,
            output_tokens=entry.completion_tokens,
        )
    )


def test_default_model_is_a_current_model(emulator: KimiEmulator) -> None:
    model = KimiChatModel(base_url=emulator.base_url, api_key=emulator.api_key)
    assert model.model_name == DEFAULT_MODEL
    assert model.model_profile.lifecycle == "current"
    assert model.invoke("@say hello").content == "hello"
    assert _chats(emulator)[-1].body["model"] == DEFAULT_MODEL


@pytest.mark.parametrize("retired", sorted(RETIRED_PROFILES))
def test_retired_model_error_names_replacement(
    emulator: KimiEmulator, legacy_emulator: KimiEmulator, retired: str
) -> None:
    profile = RETIRED_PROFILES[retired]
    # after the 404: the emulator answers with Moonshot's text, never retried
    with pytest.raises(KimiModelRetiredError) as info:
        _model(emulator, retired, max_retries=2).invoke("hi")
    err = info.value
    assert (err.model, err.retired_on, err.replacement) == (
        retired,
        profile.retired_on,
        profile.replacement,
    )
    assert str(profile.retired_on) in str(err)
    assert repr(profile.replacement) in str(err)
    assert [r.status for r in _chats(emulator)] == [404]
    assert "Not found the model" in _chats(emulator)[0].response["error"]["message"]
    # before any request on Moonshot's own endpoints (no request could be made here)
    for base in ("https://api.moonshot.ai/v1", "https://api.moonshot.cn/v1"):
        offline = KimiChatModel(model=retired, api_key="sk-x", base_url=base, timeout=0.5)
        with pytest.raises(KimiModelRetiredError, match=str(profile.retired_on)):
            offline.invoke("hi")
    # any other base URL (a host that still serves it) gets the call
    assert _model(legacy_emulator, retired).invoke("@say still served").content
    assert _chats(legacy_emulator)[-1].body["model"] == retired


def _serving_unknown_model(
    make_emulator: Callable[..., KimiEmulator], window: int
) -> tuple[KimiEmulator, str]:
    """An emulator that serves a model id the package has no profile for."""
    name = f"kimi-k9-preview-{uuid.uuid4().hex[:8]}"
    served = KimiModelProfile(
        name=name, context_window=window, pricing=get_profile("kimi-k2.6").pricing
    )
    return make_emulator(profiles={**known_profiles(), name: served}), name


def test_unknown_model_window_is_refreshed_once_from_models_endpoint(
    make_emulator: Callable[..., KimiEmulator],
) -> None:
    emu, name = _serving_unknown_model(make_emulator, 500_000)
    model = _model(emu, name)
    assert model.model_profile.is_guess
    for i in range(3):
        model.invoke(f"@say {i}")
        thread = model._refresh_thread
        assert thread is not None
        thread.join(10)
    assert model.model_profile.context_window == 500_000
    assert model.model_profile.source == "/v1/models"
    assert model.profile is not None
    assert model.profile["max_input_tokens"] == 500_000
    assert [r.path for r in emu.requests].count("/v1/models") == 1  # once, not per call
    # a failing refresh is never fatal: the guess stays in use
    other = f"kimi-k9-other-{uuid.uuid4().hex[:8]}"
    dead = KimiChatModel(model=other, api_key="sk-x", base_url="http://127.0.0.1:9/v1")
    dead._refresh_quietly()
    assert dead.model_profile.is_guess


def test_concurrent_first_calls_refresh_a_guessed_profile_once(
    make_emulator: Callable[..., KimiEmulator],
) -> None:
    emu, name = _serving_unknown_model(make_emulator, 300_000)
    model = _model(emu, name)
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda i: model.invoke(f"@say {i}").content, range(8)))
    assert replies == [str(i) for i in range(8)]
    assert model._refresh_thread is not None
    model._refresh_thread.join(10)
    assert [r.path for r in emu.requests].count("/v1/models") == 1
    assert model.model_profile.context_window == 300_000


# ----------------------------------------------------------------------------- thinking


@pytest.mark.parametrize("model_id", CURRENT)
def test_structured_output_on_thinking_model(emulator: KimiEmulator, model_id: str) -> None:
    model = _model(emulator, model_id)
    result = model.with_structured_output(Weather).invoke("Weather in 'Paris': 21 degrees")
    assert result == Weather(city="Paris", celsius=21)
    body = _chats(emulator)[-1].body
    profile = get_profile(model_id)
    action = plan_tool_choice({"type": "function", "function": {"name": "W"}}, profile, None)
    if action.action == "thinking_off":  # kimi-k2.6: the forced tool, thinking off
        assert body["thinking"] == {"type": "disabled"}
        assert body["tool_choice"]["function"]["name"] == "Weather"
    elif action.action == "narrow":  # kimi-k3: "required" over the one schema tool
        assert body["tool_choice"] == "required"
        assert [t["function"]["name"] for t in body["tools"]] == ["Weather"]
        assert "thinking" not in body
    else:  # always thinking, no forced tool: JSON schema response format
        assert action.action == "refuse"
        assert body["response_format"]["type"] == "json_schema"
        assert "tool_choice" not in body


@pytest.mark.parametrize("model_id", CURRENT)
def test_bind_tools_any_forces_a_call_or_refuses_before_any_request(
    emulator: KimiEmulator, model_id: str
) -> None:
    model = _model(emulator, model_id)
    profile = get_profile(model_id)
    if plan_tool_choice("required", profile, None).action == "refuse":
        with pytest.raises(KimiConfigurationError, match="tool_choice='auto'"):
            model.bind_tools([read_file], tool_choice="any")
        assert _chats(emulator) == []
        return
    reply = model.bind_tools([read_file], tool_choice="any").invoke("look at 'a.py'")
    assert isinstance(reply, AIMessage)
    assert reply.tool_calls[0]["name"] == "read_file"
    body = _chats(emulator)[-1].body
    assert body["tool_choice"] == "required"
    if "required" in profile.forced_tool_choice_with_thinking:
        assert "thinking" not in body
        assert reply.additional_kwargs["reasoning_content"]
    else:
        assert body["thinking"] == {"type": "disabled"}
    # asking for thinking explicitly on a model that cannot force tools while thinking
    if profile.thinking == "default_on":
        with pytest.raises(KimiConfigurationError, match="thinking=True"):
            _model(emulator, model_id, thinking=True).bind_tools([read_file], tool_choice="any")


@pytest.mark.parametrize("model_id", CURRENT)
def test_forced_tool_choice_with_thinking_gets_the_api_error(
    emulator: KimiEmulator, model_id: str
) -> None:
    profile = get_profile(model_id)
    tools = [{"type": "function", "function": {"name": "read_file", "parameters": {}}}]
    named = {"type": "function", "function": {"name": "read_file"}}
    for choice, kind, wire in (("required", "required", "required"), (named, "named", "specified")):
        resp = _post(
            emulator,
            {
                "model": model_id,
                "messages": [{"role": "user", "content": "go"}],
                "tools": tools,
                "tool_choice": choice,
            },
        )
        if kind in profile.forced_tool_choice_with_thinking:
            assert resp.status_code == 200
        else:
            assert resp.status_code == 400
            assert resp.json()["error"]["message"] == (
                f"tool_choice '{wire}' is incompatible with thinking enabled"
            )


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("model_id", CURRENT)
def test_empty_reasoning_turn_is_replayed(
    emulator: KimiEmulator, model_id: str, stream: bool
) -> None:
    model = _model(emulator, model_id).bind_tools([read_file])
    history: list[BaseMessage] = [
        HumanMessage('@calls 10 read_file {"path": "f{i}.py"}\n@say all read')
    ]
    for _ in range(12):
        reply = _merge(model.stream(history)) if stream else model.invoke(history)
        history.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            history.append(ToolMessage(read_file(**call["args"]), tool_call_id=call["id"]))
    ais = [m for m in history if isinstance(m, AIMessage)]
    assert len(ais) == 11
    assert ais[-1].content == "all read"
    reasoning = [m.additional_kwargs.get("reasoning_content") for m in ais]
    assert "" in reasoning[:-1], "the emulator sends reason-free tool-call turns"
    assert all(isinstance(r, str) for r in reasoning)  # kept, empty ones included
    sent = [m for m in _chats(emulator)[-1].body["messages"] if m["role"] == "assistant"]
    assert [m["reasoning_content"] for m in sent] == reasoning[:-1]
    assert all(r.status == 200 for r in _chats(emulator))


@pytest.mark.parametrize("model_id", CURRENT)
def test_reasoning_missing_is_rejected_by_the_api(emulator: KimiEmulator, model_id: str) -> None:
    call = {"id": "c:0", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}
    body = {
        "model": model_id,
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c:0", "content": "ok"},
        ],
    }
    resp = _post(emulator, body)
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == (
        "thinking is enabled but reasoning_content is missing in assistant tool call "
        "message at index 1"
    )
    body["messages"][1]["reasoning_content"] = ""  # an empty one is accepted
    assert _post(emulator, body).status_code == 200


def test_reasoning_effort_is_typed_and_no_thinking_switch_is_sent(
    emulator: KimiEmulator,
) -> None:
    model = _model(emulator, "kimi-k3", reasoning_effort="low", thinking=True)
    assert model.invoke("@say deep").content == "deep"
    body = _chats(emulator)[-1].body
    assert body["reasoning_effort"] == "low"
    assert "thinking" not in body
    with pytest.raises(KimiConfigurationError, match="'low', 'high' or 'max'"):
        _model(emulator, "kimi-k3", reasoning_effort="medium")
    with pytest.raises(KimiConfigurationError, match="takes no reasoning_effort"):
        _model(emulator, "kimi-k2.6", reasoning_effort="high")
    # the API's side of the rules
    msgs = [{"role": "user", "content": "hi"}]
    k3_switch = _post(
        emulator, {"model": "kimi-k3", "messages": msgs, "thinking": {"type": "disabled"}}
    )
    assert k3_switch.status_code == 400
    assert "reasoning_effort" in k3_switch.text
    bad_effort = _post(
        emulator, {"model": "kimi-k3", "messages": msgs, "reasoning_effort": "medium"}
    )
    assert bad_effort.status_code == 400
    both = _post(
        emulator,
        {
            "model": "kimi-k2.6",
            "messages": msgs,
            "reasoning_effort": "high",
            "thinking": {"type": "enabled"},
        },
    )
    assert (
        both.json()["error"]["message"] == "cannot specify both 'thinking' and 'reasoning_effort'"
    )


@pytest.mark.parametrize("model_id", CURRENT)
def test_locked_sampling_params_are_checked_locally_and_never_sent(
    emulator: KimiEmulator, model_id: str
) -> None:
    profile = get_profile(model_id)
    assert {"temperature", "top_p", "n", "presence_penalty", "frequency_penalty"} <= set(
        profile.fixed_params
    )
    for name, value in profile.fixed_params.items():
        wrong = 2 if name == "n" else 0.5
        with pytest.raises(KimiConfigurationError, match=f"{name}={wrong!r} is not allowed"):
            _model(emulator, model_id, **{name: wrong})
        raw = _post(
            emulator,
            {"model": model_id, "messages": [{"role": "user", "content": "x"}], name: wrong},
        )
        assert raw.status_code == 400
        assert name in raw.json()["error"]["message"]
        assert _model(emulator, model_id, **{name: value}).invoke("@say ok").content == "ok"
        assert name not in _chats(emulator)[-1].body
    assert _chats(emulator)[-1].status == 200


@pytest.mark.parametrize("model_id", CURRENT)
def test_web_search_needs_thinking_off_echoes_arguments_and_is_billed(
    emulator: KimiEmulator, model_id: str
) -> None:
    profile = get_profile(model_id)
    model = _model(emulator, model_id)
    if profile.thinking == "always":
        with pytest.raises(KimiConfigurationError, match=r"\$web_search needs thinking disabled"):
            model.bind_tools([WEB_SEARCH_TOOL])
        return
    bound = model.bind_tools([WEB_SEARCH_TOOL])
    question = HumanMessage('@call $web_search {"search_result": {"search_id": "s-1"}}\n@say found')
    first = bound.invoke([question])
    assert isinstance(first, AIMessage)
    assert _chats(emulator)[-1].body["thinking"] == {"type": "disabled"}
    echo = builtin_tool_result(first.tool_calls[0])
    final = bound.invoke([question, first, echo])
    assert final.content == "found"
    fees = [e for e in emulator.ledger().entries if e.kind == "web_search"]
    assert [e.cost for e in fees] == [profile.pricing.web_search_call] == [0.004]
    last_call = model.ledger.calls()[-1]
    assert last_call.web_search_calls == 1
    tokens = profile.pricing.cost(
        prompt_tokens=last_call.prompt_tokens,
        cached_tokens=last_call.cached_tokens,
        output_tokens=last_call.output_tokens,
    )
    assert last_call.cost == pytest.approx(tokens + 0.004)
    # the API refuses changed arguments, and $web_search while thinking
    changed = echo.model_copy(update={"content": '{"search_result": {"search_id": "other"}}'})
    with pytest.raises(openai.BadRequestError, match="arguments unchanged"):
        bound.invoke([question, first, changed])
    raw = _post(
        emulator,
        {
            "model": model_id,
            "messages": [{"role": "user", "content": "search"}],
            "tools": [dict(WEB_SEARCH_TOOL)],
        },
    )
    assert raw.status_code == 400
    assert "thinking" in raw.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("model_id", CURRENT)
def test_thinking_turn_cut_by_length_is_reported(
    emulator: KimiEmulator, model_id: str, stream: bool
) -> None:
    model = _model(emulator, model_id, max_tokens=64, max_retries=2)
    prompt = "@think 400\n@say the answer"
    call: Callable[[], Any] = (
        (lambda: _merge(model.stream(prompt))) if stream else (lambda: model.invoke(prompt))
    )
    with pytest.raises(KimiOutputLimitError, match="max_tokens=64") as info:
        call()
    assert info.value.max_tokens == 64
    assert not info.value.is_retryable
    assert len(_chats(emulator)) == 1
    assert _chats(emulator)[-1].response["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("model_id", CURRENT)
def test_default_output_budget_fits_reasoning(emulator: KimiEmulator, model_id: str) -> None:
    profile = get_profile(model_id)
    _model(emulator, model_id).invoke("@think 2000\n@say done")
    sent = _chats(emulator)[-1].body["max_tokens"]
    assert sent == profile.default_max_tokens == 32_768 <= profile.max_output_tokens
    assert _chats(emulator)[-1].response["choices"][0]["finish_reason"] == "stop"


# ----------------------------------------------------------------------------- errors


def test_quota_403_is_the_quota_error_and_not_retried(emulator: KimiEmulator) -> None:
    emulator.faults.add(
        Fault(
            "error",
            status=403,
            error_type="exceeded_current_quota_error",
            message=(
                "Your account org-1<ak-1> is not active, organization <org-1> exceeded "
                "current quota, please check your plan and billing details"
            ),
        ),
        at=1,
    )
    with pytest.raises(KimiQuotaExceededError, match="Top up"):
        _model(emulator, DEFAULT_MODEL, max_retries=2).invoke("hi")
    assert [r.status for r in _chats(emulator)] == [403]


def test_rate_limit_delay_is_read_from_the_message(
    emulator: KimiEmulator, sleeps: list[float]
) -> None:
    emulator.faults.rate_limit(at=1, retry_after=2)
    reply = _model(emulator, DEFAULT_MODEL, max_retries=1).invoke("@say after")
    assert reply.content == "after"
    first = _chats(emulator)[0]
    assert first.status == 429
    assert "try again after 2 seconds" in first.response["error"]["message"]
    raw = _post(emulator, {"model": DEFAULT_MODEL, "messages": []})  # any error response
    assert "retry-after" not in {k.lower() for k in raw.headers}
    assert sleeps == [2.0]


def test_401_names_the_other_endpoint(emulator: KimiEmulator) -> None:
    with pytest.raises(KimiAuthenticationError, match=r"api\.moonshot\.cn/v1") as info:
        KimiChatModel(base_url=emulator.base_url, api_key="sk-wrong", max_retries=0).invoke("hi")
    assert "api.moonshot.ai/v1" in str(info.value)
    for host, other in (
        ("api.moonshot.ai", "moonshot.cn/v1"),
        ("api.moonshot.cn", "moonshot.ai/v1"),
    ):
        request = httpx.Request("POST", f"https://{host}/v1/chat/completions")
        response = httpx.Response(401, request=request, json={"error": {"message": "bad"}})
        err = openai.AuthenticationError("bad", response=response, body={"error": {}})
        assert other in str(from_openai_error(err))


# ----------------------------------------------------------------------------- caching


def test_prefix_cache_does_not_depend_on_prompt_cache_key(emulator: KimiEmulator) -> None:
    history = [("system", SYSTEM), ("user", "@say one")]
    _model(emulator, DEFAULT_MODEL, session_id="session-a").invoke(history)
    second = _model(emulator, DEFAULT_MODEL, session_id="session-b").invoke(history)
    bodies = [r.body for r in _chats(emulator)]
    assert bodies[0]["prompt_cache_key"] != bodies[1]["prompt_cache_key"]
    assert second.response_metadata["kimi_cache"]["cache_read"] > 0


def test_switching_reasoning_effort_breaks_the_prefix_cache(emulator: KimiEmulator) -> None:
    history = [("system", SYSTEM), ("user", "@say one")]
    _model(emulator, "kimi-k3", reasoning_effort="high").invoke(history)
    same = _model(emulator, "kimi-k3", reasoning_effort="high").invoke(history)
    switched = _model(emulator, "kimi-k3", reasoning_effort="low").invoke(history)
    assert same.response_metadata["kimi_cache"]["cache_read"] > 0
    assert switched.response_metadata["kimi_cache"]["cache_read"] == 0


@pytest.mark.parametrize("model_id", CURRENT)
def test_auto_caching_never_picks_the_explicit_api_for_current_models(
    emulator: KimiEmulator, model_id: str
) -> None:
    model = _model(emulator, model_id, context_cache="auto")
    assert type(model._cache_strategy).__name__ == "AutomaticPrefixCache"
    model.invoke([("system", SYSTEM), ("user", "@say hi")])
    assert not [r for r in emulator.requests if "/caching" in r.path]


def test_explicit_cache_api_stays_available_as_opt_in_on_the_legacy_catalog(
    emulator: KimiEmulator, legacy_emulator: KimiEmulator
) -> None:
    body = {"model": "moonshot-v1", "messages": [{"role": "system", "content": SYSTEM}]}
    today = HTTP.post(f"{emulator.base_url}/caching", json=body, headers=emulator.headers)
    assert today.status_code == 400  # no current model family has the explicit API
    legacy = HTTP.post(
        f"{legacy_emulator.base_url}/caching", json=body, headers=legacy_emulator.headers
    )
    assert legacy.status_code == 200
    assert legacy.json()["id"].startswith("cache-")


# ----------------------------------------------------------------------------- tokens


def test_cjk_fallback_counts_one_token_per_1_5_to_2_characters() -> None:
    text = "上下文窗口快满了请先总结之前的讨论保留所有文件路径和错误信息" * 20
    tokens = ApproximateBackend().count(text)
    assert len(text) / 2 <= tokens <= len(text) / 1.5


# ----------------------------------------------------------------------------- drop-ins


FAST = RetrySettings(initial_interval=0.001, max_interval=0.01, max_retry_after=0.01)
LOOP = '@calls 10 read_file {"path": "m{i}.py"}\n@say loop done'


def _assert_reasoning_replayed(emu: KimiEmulator) -> None:
    assert all(r.status == 200 for r in _chats(emu))
    sent = [m for m in _chats(emu)[-1].body["messages"] if m["role"] == "assistant"]
    assert sent
    assert all(isinstance(m.get("reasoning_content"), str) for m in sent)
    assert "" in [m["reasoning_content"] for m in sent]  # reason-free turns went through


@pytest.mark.parametrize("model_id", THINKING_PAIR)
def test_agent_runs_a_thinking_tool_loop_with_reason_free_turns(
    emulator: KimiEmulator, tmp_path: Path, model_id: str
) -> None:
    agent = create_kimi_agent(
        _model(emulator, model_id),
        [read_file],
        db_path=tmp_path / "agent.sqlite",
        settings=AgentSettings(retry=FAST),
        sleep=lambda s: None,
    )
    out = agent.invoke({"messages": [("user", LOOP)]}, {"configurable": {"thread_id": "t"}})
    assert out["messages"][-1].content == "loop done"
    _assert_reasoning_replayed(emulator)


@pytest.mark.parametrize("model_id", THINKING_PAIR)
def test_middleware_runs_a_thinking_tool_loop_with_reason_free_turns(
    emulator: KimiEmulator, model_id: str
) -> None:
    agent = create_agent(
        _model(emulator, model_id),
        tools=[read_file],
        middleware=[KimiContextMiddleware()],
        checkpointer=InMemorySaver(),
    )
    out = agent.invoke({"messages": [("user", LOOP)]}, {"configurable": {"thread_id": "m"}})
    assert out["messages"][-1].content == "loop done"
    _assert_reasoning_replayed(emulator)


@pytest.mark.parametrize("model_id", THINKING_PAIR)
def test_memory_runs_a_thinking_tool_loop_with_reason_free_turns(
    emulator: KimiEmulator, tmp_path: Path, model_id: str
) -> None:
    memory = RollingSnapshotMemory(
        _model(emulator, model_id),
        db_path=tmp_path / "memory.sqlite",
        tools=[read_file],
        sleep=lambda s: None,
    )
    sid = memory.create_session(system="You refactor code.")
    assert memory.chat(sid, LOOP).content == "loop done"
    _assert_reasoning_replayed(emulator)
    logged = [m for m in memory.log(sid) if isinstance(m, AIMessage)]
    assert "" in [m.additional_kwargs.get("reasoning_content") for m in logged]
    json.dumps([m.model_dump() for m in logged])  # what is stored stays serialisable


def test_default_output_budget_shrinks_to_the_room_left_in_the_window(
    emulator: KimiEmulator,
) -> None:
    # 250K-token prompt on kimi-k2.6 (262,144): the 32,768 default would overflow.
    reply = _model(emulator, "kimi-k2.6").invoke("word " * 250_000 + "\n@say fits")
    assert reply.content == "fits"
    body = _chats(emulator)[-1].body
    assert 1_024 <= body["max_tokens"] < 32_768
    assert _chats(emulator)[-1].status == 200


@pytest.mark.parametrize("model_id", CURRENT)
def test_create_agent_structured_response_on_thinking_model(
    emulator: KimiEmulator, model_id: str
) -> None:
    # LangChain's create_agent picks its strategy from model.profile: json_schema where
    # the profile says structured_output, else a forced tool (which the model makes work).
    model = _model(emulator, model_id)
    agent = create_agent(model, tools=[read_file], response_format=Weather)
    out = agent.invoke({"messages": [("user", "Weather in 'Oslo': 3 degrees")]})
    assert out["structured_response"] == Weather(city="Oslo", celsius=3)
    assert all(r.status == 200 for r in _chats(emulator))
    body = _chats(emulator)[-1].body
    profile = model.profile or {}
    assert ("response_format" in body) == bool(profile.get("structured_output"))
