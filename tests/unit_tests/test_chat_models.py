"""Unit tests of ``KimiChatModel`` that need no server: configuration, payload, parsing."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from langchain_core.load import dumpd, dumps, load
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from pydantic import SecretStr

from langchain_kimi_context import KimiChatModel, KimiConfigurationError
from langchain_kimi_context.chat_models import (
    DEFAULT_BASE_URL,
    WEB_SEARCH_TOOL,
    CacheStrategy,
    PassThroughCacheStrategy,
    builtin_tool_result,
    resolve_session_id,
)
from langchain_kimi_context.profiles import DEFAULT_MODEL, LEARNED_SOURCE, learned_context_window

KEY = "sk-unit-secret-0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MOONSHOT_API_KEY", "MOONSHOT_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


# A kimi-k2.6 deployment (e.g. behind a gateway) without locked sampling parameters, with
# thinking off: the generic parameter and message rules, without the thinking rules.
UNLOCKED = {"fixed_params": {}, "fixed_params_thinking_off": {}, "default_max_tokens": 8_192}


def _model(**kwargs: Any) -> KimiChatModel:
    params: dict[str, Any] = {
        "model": "kimi-k2.6",
        "api_key": KEY,
        "thinking": False,
        "profile_overrides": UNLOCKED,
    }
    params.update(kwargs)
    return KimiChatModel(**params)


def _current(model: str = "kimi-k2.6", **kwargs: Any) -> KimiChatModel:
    """A current model with its catalog profile (thinking rules and locked parameters)."""
    return KimiChatModel(model=model, api_key=KEY, **kwargs)


TOOL_CALL = {"name": "read_file", "args": {"path": "a.py"}, "id": "functions.read_file:0"}


# ----------------------------------------------------------------------------- credentials


def test_api_key_and_base_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOONSHOT_API_KEY", KEY)
    monkeypatch.setenv("MOONSHOT_BASE_URL", "https://api.moonshot.ai/v1")
    model = KimiChatModel()
    assert isinstance(model.openai_api_key, SecretStr)
    assert model.openai_api_key.get_secret_value() == KEY
    assert model.openai_api_base == "https://api.moonshot.ai/v1"
    assert str(model.root_client.base_url).rstrip("/") == "https://api.moonshot.ai/v1"
    assert model.model_name == DEFAULT_MODEL


def test_defaults_base_url_to_moonshot() -> None:
    assert _model().openai_api_base == DEFAULT_BASE_URL == "https://api.moonshot.ai/v1"


def test_a_base_url_without_scheme_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Used to be accepted; every call then failed, after the retries, with "Connection error."
    with pytest.raises(KimiConfigurationError, match=r"e\.g\. 'https://api\.moonshot\.cn/v1'"):
        _model(base_url="api.moonshot.cn/v1")
    monkeypatch.setenv("MOONSHOT_BASE_URL", "")
    with pytest.raises(KimiConfigurationError, match=r"MOONSHOT_BASE_URL.*unset it"):
        KimiChatModel(api_key=KEY)
    assert _model(base_url="http://127.0.0.1:8765/v1").openai_api_base.startswith("http://")


def test_missing_key_is_a_clear_error_and_openai_key_is_never_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-must-not-leak")
    with pytest.raises(KimiConfigurationError, match="MOONSHOT_API_KEY"):
        KimiChatModel()


def test_secret_not_in_repr_str_or_serialisation() -> None:
    model = _model(session_id="s1")
    for text in (repr(model), str(model), dumps(model), json.dumps(dumpd(model))):
        assert KEY not in text
    assert dumpd(model)["kwargs"]["openai_api_key"] == {
        "lc": 1,
        "type": "secret",
        "id": ["MOONSHOT_API_KEY"],
    }


def test_serialisation_round_trip_without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(temperature=0.3, profile_overrides={**UNLOCKED, "context_window": 100_000})
    data = dumpd(model)
    monkeypatch.setenv("MOONSHOT_API_KEY", "sk-from-env")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load(
            data,
            valid_namespaces=["langchain_kimi_context"],
            allowed_objects=[KimiChatModel],
            secrets_from_env=True,
        )
    assert isinstance(loaded, KimiChatModel)
    assert loaded.openai_api_key.get_secret_value() == "sk-from-env"  # type: ignore[union-attr]
    assert loaded.temperature == 0.3
    assert loaded.model_profile.context_window == 100_000


def test_langchain_identity() -> None:
    model = _model()
    assert model._llm_type == "kimi-chat"
    assert model.lc_secrets == {"openai_api_key": "MOONSHOT_API_KEY"}
    assert KimiChatModel.is_lc_serializable()
    params = model._get_ls_params()
    assert params["ls_provider"] == "moonshot"
    assert params["ls_model_name"] == "kimi-k2.6"
    assert _model(base_url="http://127.0.0.1:9/v1").lc_attributes == {
        "openai_api_base": "http://127.0.0.1:9/v1"
    }


def test_openai_client_does_not_retry_by_itself() -> None:
    model = _model(max_retries=5)
    assert model.root_client.max_retries == 0
    assert model.root_async_client.max_retries == 0
    assert model.max_retries == 5


# ----------------------------------------------------------------------------- profiles


def test_profile_feeds_langchain_profile_without_unknown_keys() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = _model(model="moonshot-v1-32k")
    assert model.profile is not None
    assert model.profile["max_input_tokens"] == 32_768
    assert model.model_profile.cache_kind == "explicit"


def test_profile_overrides_and_bad_override() -> None:
    model = _model(profile_overrides={"context_window": 50_000, "default_max_tokens": 1234})
    assert model.model_profile.context_window == 50_000
    assert model.profile["max_input_tokens"] == 50_000  # type: ignore[index]
    assert model._get_request_payload([HumanMessage("hi")])["max_tokens"] == 1234
    with pytest.raises(KimiConfigurationError, match="context_windw"):
        _model(profile_overrides={"context_windw": 1})


def test_learn_context_window_is_per_model_and_updates_profile() -> None:
    model = _model()
    model.learn_context_window(131_072)
    assert model.model_profile.context_window == 131_072
    assert model.model_profile.source == LEARNED_SOURCE
    assert model.profile["max_input_tokens"] == 131_072  # type: ignore[index]
    model.learn_context_window(8_192, model="moonshot-v1-8k")
    assert model.model_profile.context_window == 131_072
    assert model._profile_for("moonshot-v1-8k").context_window == 8_192
    # one store of learned windows (profiles): every instance sees it, and it only shrinks
    assert _model().model_profile.context_window == 131_072
    assert learned_context_window(DEFAULT_MODEL) == 131_072
    model.learn_context_window(200_000)
    assert model.model_profile.context_window == 131_072
    with pytest.raises(KimiConfigurationError):
        model.learn_context_window(0)


def test_learned_window_lowers_an_override_that_promised_more() -> None:
    # the override says 400K; the server's overflow error says the real window is 300K,
    # which is larger than the built-in 262K: the instance with the override must shrink
    # to 300K, and an instance on built-in data keeps its smaller 262K
    builtin = _model().model_profile.context_window
    override = _model(profile_overrides={"context_window": builtin + 137_856})
    override.learn_context_window(builtin + 37_856)
    assert override.model_profile.context_window == builtin + 37_856
    assert override.model_profile.source == LEARNED_SOURCE
    assert _model().model_profile.context_window == builtin


# ----------------------------------------------------------------------------- parameters


def test_max_tokens_defaults_to_profile_and_explicit_values_win() -> None:
    payload = _model()._get_request_payload([HumanMessage("hi")])
    assert payload["max_tokens"] == _model().model_profile.default_max_tokens == 8_192
    assert _model(max_tokens=77)._get_request_payload([HumanMessage("hi")])["max_tokens"] == 77
    per_call = _model()._get_request_payload([HumanMessage("hi")], max_completion_tokens=5)
    assert "max_tokens" not in per_call
    assert per_call["max_completion_tokens"] == 5


def test_stream_usage_on_by_default() -> None:
    model = _model()
    assert model.stream_usage is True
    payload = model._stream_payload([HumanMessage("hi")], None, None, {})
    assert payload["stream_options"] == {"include_usage": True}
    assert payload["stream"] is True


@pytest.mark.parametrize("temperature", [-0.1, 1.01, 2])
def test_temperature_range(temperature: float) -> None:
    with pytest.raises(KimiConfigurationError, match=r"\[0, 1\]"):
        _model(temperature=temperature)
    with pytest.raises(KimiConfigurationError, match=r"\[0, 1\]"):
        _model()._get_request_payload([HumanMessage("hi")], temperature=temperature)


def test_fixed_params_rejected_and_not_sent() -> None:
    with pytest.raises(KimiConfigurationError, match=r"fixes temperature to 1\.0"):
        _current(temperature=0.2)
    with pytest.raises(KimiConfigurationError, match="top_p"):
        _current()._get_request_payload([HumanMessage("hi")], top_p=0.5)
    model = _current(temperature=1.0, top_p=0.95, n=1)
    payload = model._get_request_payload([HumanMessage("hi")])
    assert not {"temperature", "top_p", "n"} & set(payload)
    # a per-call override to a model without fixed params keeps the caller's value
    other = model._get_request_payload([HumanMessage("hi")], model="custom-kimi-finetune")
    assert other["temperature"] == 1.0


def test_n_and_stop_limits() -> None:
    with pytest.raises(KimiConfigurationError, match="at most 5"):
        _model(n=6)
    with pytest.raises(KimiConfigurationError, match="temperature"):
        _model(n=2, temperature=0)
    assert _model(n=2, temperature=0.5).n == 2
    with pytest.raises(KimiConfigurationError, match="32 bytes"):
        _model(stop=["x" * 33])
    with pytest.raises(KimiConfigurationError, match="at most 5 strings"):
        _model()._get_request_payload([HumanMessage("hi")], stop=list("abcdef"))


def test_thinking_toggle() -> None:
    on = _current(thinking=True)._get_request_payload([HumanMessage("hi")])
    assert on["extra_body"] == {"thinking": {"type": "enabled"}}
    model = _current(thinking=False, extra_body={"x": 1})
    off = model._get_request_payload([HumanMessage("hi")])
    assert off["extra_body"] == {"x": 1, "thinking": {"type": "disabled"}}
    per_call = _current()._get_request_payload([HumanMessage("hi")], thinking=True)
    assert per_call["extra_body"]["thinking"] == {"type": "enabled"}
    assert "thinking" not in per_call
    assert "extra_body" not in _current()._get_request_payload([HumanMessage("x")])
    with pytest.raises(KimiConfigurationError, match="always thinks"):
        _current("kimi-k3", thinking=False)
    # always-reasoning models get no thinking switch, even when asked to think
    assert "extra_body" not in _current("kimi-k3", thinking=True)._get_request_payload(
        [HumanMessage("x")]
    )
    with pytest.raises(KimiConfigurationError, match="profile_overrides"):
        _model(model="custom-kimi-finetune", thinking=True)


# ----------------------------------------------------------------------------- messages


def test_reasoning_replayed_and_empty_content_omitted_without_mutation() -> None:
    ai = AIMessage(
        content="",
        tool_calls=[TOOL_CALL],
        additional_kwargs={"reasoning_content": "I should read a.py"},
    )
    before = ai.model_dump()
    history = [HumanMessage("go"), ai, ToolMessage("print(1)", tool_call_id=TOOL_CALL["id"])]
    payload = _current("kimi-k3")._get_request_payload(history)
    assistant = payload["messages"][1]
    assert assistant["role"] == "assistant"
    assert "content" not in assistant
    assert assistant["reasoning_content"] == "I should read a.py"
    assert assistant["tool_calls"][0]["id"] == "functions.read_file:0"
    assert ai.model_dump() == before


def test_reasoning_from_reasoning_blocks_and_text_kept() -> None:
    ai = AIMessage(
        content=[{"type": "reasoning", "reasoning": "think"}, {"type": "text", "text": "ok"}],
        tool_calls=[TOOL_CALL],
    )
    assistant = _model()._get_request_payload([HumanMessage("go"), ai])["messages"][1]
    assert assistant["reasoning_content"] == "think"
    assert assistant["content"]


def test_plain_assistant_reply_keeps_content_and_no_reasoning() -> None:
    ai = AIMessage("hello", additional_kwargs={"reasoning_content": "r"})
    assistant = _model()._get_request_payload([HumanMessage("go"), ai])["messages"][1]
    assert assistant == {"role": "assistant", "content": "hello"}


def test_partial_mode() -> None:
    prefix = AIMessage('{"name": "', additional_kwargs={"partial": True})
    last = _model()._get_request_payload([HumanMessage("json please"), prefix])["messages"][-1]
    assert last == {"role": "assistant", "content": '{"name": "', "partial": True}


# ----------------------------------------------------------------------------- responses


def _response(
    message: dict[str, Any], top_usage: dict[str, Any] | None, **choice_extra: Any
) -> dict:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "kimi-k3",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", **choice_extra}],
    }
    if top_usage is not None:
        body["usage"] = top_usage
    return body


def test_usage_top_level_cached_tokens_and_reasoning() -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "total_tokens": 1050,
        "cached_tokens": 768,
        "prompt_tokens_details": {"cached_tokens": 1},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    message = {"role": "assistant", "content": "hi", "reasoning_content": "because"}
    result = _model()._create_chat_result(_response(message, usage))
    ai = result.generations[0].message
    assert isinstance(ai, AIMessage)
    assert ai.additional_kwargs["reasoning_content"] == "because"
    assert ai.usage_metadata is not None
    assert ai.usage_metadata["input_tokens"] == 1000
    assert ai.usage_metadata["input_token_details"]["cache_read"] == 768
    assert ai.usage_metadata["output_token_details"]["reasoning"] == 30


def test_usage_nested_fallback_and_usage_inside_choice() -> None:
    nested = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    nested["prompt_tokens_details"] = {"cached_tokens": 5}  # type: ignore[assignment]
    ai = _model()._create_chat_result(_response({"role": "assistant", "content": "x"}, nested))
    assert ai.generations[0].message.usage_metadata["input_token_details"]["cache_read"] == 5  # type: ignore[union-attr]
    in_choice = {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8, "cached_tokens": 0}
    result = _model()._create_chat_result(
        _response({"role": "assistant", "content": "x"}, None, **{"usage": in_choice})
    )
    meta = result.generations[0].message.usage_metadata  # type: ignore[attr-defined]
    assert meta["input_tokens"] == 7
    assert meta["input_token_details"]["cache_read"] == 0
    assert result.llm_output is not None
    assert result.llm_output["token_usage"]["prompt_tokens"] == 7


def test_stream_chunks_reasoning_and_usage_in_last_choice() -> None:
    model = _model()
    first = model._convert_chunk_to_generation_chunk(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "th"}}]},
        AIMessageChunk,
        {},
    )
    assert first is not None
    assert first.message.additional_kwargs["reasoning_content"] == "th"
    usage = {
        "prompt_tokens": 300,
        "completion_tokens": 4,
        "total_tokens": 304,
        "cached_tokens": 256,
    }
    last = model._convert_chunk_to_generation_chunk(
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "usage": usage}]},
        AIMessageChunk,
        {},
    )
    assert last is not None
    assert isinstance(last.message, AIMessageChunk)
    assert last.message.usage_metadata is not None
    assert last.message.usage_metadata["input_token_details"]["cache_read"] == 256
    assert last.generation_info is not None
    assert last.generation_info["token_usage"] == usage


def test_empty_reply_is_detected() -> None:
    from langchain_kimi_context import KimiEmptyResponseError

    with pytest.raises(KimiEmptyResponseError, match="empty reply"):
        KimiChatModel._check_not_empty(AIMessage(""))
    KimiChatModel._check_not_empty(AIMessage("", additional_kwargs={"reasoning_content": "r"}))
    KimiChatModel._check_not_empty(AIMessage("", tool_calls=[TOOL_CALL]))


# ----------------------------------------------------------------------------- tools


def test_bind_tools_passes_builtin_web_search_through() -> None:
    def read_file(path: str) -> str:
        """Read a file."""
        return path

    bound = _model().bind_tools([read_file, WEB_SEARCH_TOOL], tool_choice="auto")
    tools = bound.kwargs["tools"]  # type: ignore[attr-defined]
    assert tools[0]["function"]["name"] == "read_file"
    assert tools[1] == {"type": "builtin_function", "function": {"name": "$web_search"}}
    assert bound.kwargs["tool_choice"] == "auto"  # type: ignore[attr-defined]


def test_builtin_tool_result_echoes_arguments() -> None:
    call = {
        "name": "$web_search",
        "args": {"search_result": {"search_id": "abc"}, "usage": {"total_tokens": 9}},
        "id": "$web_search:0",
        "type": "tool_call",
    }
    message = builtin_tool_result(call)  # type: ignore[arg-type]
    assert message.tool_call_id == "$web_search:0"
    assert message.name == "$web_search"
    assert json.loads(message.content) == call["args"]  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- caching seam


def test_session_id_resolution_order() -> None:
    assert resolve_session_id("call", "field") == "call"
    assert resolve_session_id(None, "field") == "field"
    seen: list[str | None] = []
    chain = RunnableLambda(lambda _: seen.append(resolve_session_id()))
    chain.invoke(1, config={"configurable": {"thread_id": "thread-9"}})
    assert seen == ["thread-9"]
    assert resolve_session_id(run_metadata={"thread_id": "t2"}) == "t2"
    assert resolve_session_id() is None


class _Closing(PassThroughCacheStrategy):
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1

    async def aclose(self) -> None:
        self.closed += 10


def test_default_strategy_and_context_manager_close() -> None:
    assert isinstance(_model()._cache_strategy, CacheStrategy)
    strategy = _Closing()
    with _model(cache_strategy=strategy) as model:
        assert model._cache_strategy is strategy
        assert model.context_cache == "auto"
    assert strategy.closed == 1


async def test_async_context_manager_aclose() -> None:
    strategy = _Closing()
    async with _model(cache_strategy=strategy, context_cache="off") as model:
        assert model.context_cache == "off"
    assert strategy.closed == 10


def test_token_counting_hook_counts_tools_and_messages() -> None:
    def read_file(path: str) -> str:
        """Read a file from the workspace."""
        return path

    model = _model()
    messages = [HumanMessage("hello " * 50)]
    without = model.get_num_tokens_from_messages(messages)
    assert without > 50
    assert model.get_num_tokens_from_messages(messages, tools=[read_file]) > without
    assert model.get_num_tokens("hello world") > 0


def test_user_supplied_langchain_profile_is_kept() -> None:
    model = _model(profile={"max_input_tokens": 1000, "tool_calling": True})
    model.learn_context_window(500)
    assert model.profile == {"max_input_tokens": 1000, "tool_calling": True}
    assert model.model_profile.context_window == 500


def test_fixed_params_follow_the_thinking_toggle() -> None:
    """k2.5 fixes temperature 1.0 with thinking on and 0.6 with thinking off."""
    from langchain_kimi_context import KimiChatModel, KimiConfigurationError

    KimiChatModel(model="kimi-k2.6", api_key="sk-test", thinking=False, temperature=0.6)
    KimiChatModel(model="kimi-k2.6", api_key="sk-test", temperature=1.0)
    with pytest.raises(KimiConfigurationError, match=r"fixes temperature to 0\.6"):
        KimiChatModel(model="kimi-k2.6", api_key="sk-test", thinking=False, temperature=1.0)
    with pytest.raises(KimiConfigurationError, match=r"fixes temperature to 1\.0"):
        KimiChatModel(model="kimi-k2.6", api_key="sk-test", temperature=0.6)
