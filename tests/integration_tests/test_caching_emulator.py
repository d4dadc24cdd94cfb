"""Caching against the Kimi emulator over real HTTP (explicit cache API + automatic)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.store.memory import InMemoryStore

from langchain_kimi_context import KimiChatModel
from langchain_kimi_context.caching import (
    CACHE_HEADER,
    CACHE_RESET_TTL_HEADER,
    AutomaticPrefixCache,
    CachePolicy,
    CostLedger,
    ExplicitContextCache,
    StoreCacheRegistry,
    prompt_cache_key_for,
)
from langchain_kimi_context.profiles import get_profile
from langchain_kimi_context.testing import KimiEmulator

V1 = "moonshot-v1-128k"
K2 = "kimi-k2.6"
# A system prompt big enough to be worth caching (~2.5K tokens).
SYSTEM_TEXT = "You are a meticulous coding agent working in a large repository. " + " ".join(
    f"Rule {i}: keep functions small, typed and documented; never mutate inputs."
    for i in range(150)
)
# Lifecycle tests use an always-create policy; the guard has its own test.
ALWAYS = CachePolicy(cost_guard=False, min_prefix_tokens=0)


@tool
def read_file(path: str) -> str:
    """Read a file from the repository."""
    return f"contents of {path}"


@tool
def write_file(path: str, text: str) -> str:
    """Write a file in the repository."""
    return "ok"


@pytest.fixture
def emu(request: pytest.FixtureRequest) -> Iterator[KimiEmulator]:
    # The explicit Context Caching API belongs to the retired moonshot-v1 family: those
    # tests run against the legacy catalog; automatic prefix caching against today's.
    automatic = request.node.name.startswith(("test_automatic", "test_stability", "test_off_mode"))
    with KimiEmulator(catalog="current" if automatic else "legacy") as emulator:
        yield emulator


def _v1_model(emu: KimiEmulator, **kwargs: Any) -> KimiChatModel:
    kwargs.setdefault("cache_policy", ALWAYS)
    return KimiChatModel(
        model=V1, base_url=emu.base_url, api_key=emu.api_key, max_retries=0, **kwargs
    )


def _explicit(emu: KimiEmulator, **kwargs: Any) -> ExplicitContextCache:
    kwargs.setdefault("policy", ALWAYS)
    return ExplicitContextCache(
        base_url=emu.base_url,
        api_key=emu.api_key,
        profile=get_profile(V1),
        clock=emu.clock,
        **kwargs,
    )


def _chat_requests(emu: KimiEmulator, *, at_least: int = 0) -> list[Any]:
    # A streamed request is logged right after its last chunk is written, so the client
    # may finish first: wait (briefly) until the expected number of requests is logged.
    deadline = time.monotonic() + 5.0
    while True:
        found = [r for r in emu.requests if r.path.endswith("/chat/completions")]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def _cache_requests(emu: KimiEmulator, method: str) -> list[Any]:
    return [r for r in emu.requests if "/caching" in r.path and r.method == method]


def _header(record: Any, name: str) -> str | None:
    for key, value in record.headers.items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _turns(system: str, *users: str) -> list[BaseMessage]:
    messages: list[BaseMessage] = [SystemMessage(system)]
    for i, text in enumerate(users):
        if i:
            messages.append(AIMessage(f"answer {i}"))
        messages.append(HumanMessage(text))
    return messages


# --- explicit cache API (moonshot-v1) ------------------------------------------------


def test_explicit_create_then_hit_with_exact_prefix_and_ttl_reset(emu: KimiEmulator) -> None:
    model = _v1_model(emu, session_id="s-hit")
    first = model.invoke(_turns(SYSTEM_TEXT, "@reply 20"))
    creates = _cache_requests(emu, "POST")
    assert len(creates) == 1
    body = creates[0].body
    assert body["model"] == "moonshot-v1"
    assert body["ttl"] == 3600
    assert body["messages"] == [{"content": SYSTEM_TEXT, "role": "system"}]
    cache_id = _header(_chat_requests(emu)[0], CACHE_HEADER)
    assert cache_id is not None
    assert cache_id.startswith("cache-")
    assert _header(_chat_requests(emu)[0], CACHE_RESET_TTL_HEADER) == "3600"
    # The request still carries the cached prefix verbatim (header mode).
    assert _chat_requests(emu)[0].body["messages"][0]["content"] == SYSTEM_TEXT
    assert first.response_metadata["kimi_cache"]["cache_id"] == cache_id
    assert first.response_metadata["kimi_cache"]["cache_read"] > 0

    # Later turns reuse the same cache; the server TTL is reset by every use.
    emu.clock.advance(3000)
    model.invoke(_turns(SYSTEM_TEXT, "@reply 20", "@reply 10"))
    emu.clock.advance(3000)  # 6000 s after creation: alive only thanks to the reset
    third = model.invoke(_turns(SYSTEM_TEXT, "@reply 20", "@reply 10", "@reply 5"))
    assert len(_cache_requests(emu, "POST")) == 1
    assert [_header(r, CACHE_HEADER) for r in _chat_requests(emu)] == [cache_id] * 3
    assert third.response_metadata["kimi_cache"]["cache_read"] > 0
    session = model.ledger.session("s-hit")
    assert session.calls == 3
    assert session.caches_created == 1
    assert session.cache_cost["CNY"] > 0  # creation + per-hit fees
    model.close()


def test_explicit_invalidation_on_system_prompt_change(emu: KimiEmulator) -> None:
    model = _v1_model(emu, session_id="s-sys")
    model.invoke(_turns(SYSTEM_TEXT, "@reply 5"))
    old = _header(_chat_requests(emu)[-1], CACHE_HEADER)
    model.invoke(_turns(SYSTEM_TEXT + " Also: be terse.", "@reply 5"))
    new = _header(_chat_requests(emu)[-1], CACHE_HEADER)
    assert old is not None
    assert new is not None
    assert new != old
    deletes = _cache_requests(emu, "DELETE")
    assert [d.path.rsplit("/", 1)[-1] for d in deletes] == [old]
    assert len(_cache_requests(emu, "POST")) == 2
    reply = _chat_requests(emu)[-1]
    assert reply.usage["cached_tokens"] > 0  # the new cache is hit
    model.close()


def test_explicit_invalidation_on_tools_change(emu: KimiEmulator) -> None:
    model = _v1_model(emu, session_id="s-tools")
    model.bind_tools([read_file]).invoke(_turns(SYSTEM_TEXT, "@reply 5"))
    first = _cache_requests(emu, "POST")[0].body
    assert [t["function"]["name"] for t in first["tools"]] == ["read_file"]
    # Same prefix and tools on the next turn: same cache.
    model.bind_tools([read_file]).invoke(_turns(SYSTEM_TEXT, "@reply 5", "@reply 5"))
    assert len(_cache_requests(emu, "POST")) == 1
    model.bind_tools([write_file, read_file]).invoke(_turns(SYSTEM_TEXT, "@reply 5"))
    creates = _cache_requests(emu, "POST")
    assert len(creates) == 2
    assert [t["function"]["name"] for t in creates[1].body["tools"]] == [
        "read_file",
        "write_file",
    ]
    assert len(_cache_requests(emu, "DELETE")) == 1
    model.bind_tools([read_file, write_file]).invoke(_turns(SYSTEM_TEXT, "@reply 5"))
    assert len(_cache_requests(emu, "POST")) == 2  # tool order does not matter
    assert all(_header(r, CACHE_HEADER) for r in _chat_requests(emu))
    model.close()


def test_explicit_recreate_after_expiry(emu: KimiEmulator) -> None:
    cache = _explicit(emu)
    model = _v1_model(emu, session_id="s-exp", cache_strategy=cache)
    model.invoke(_turns(SYSTEM_TEXT, "@reply 5"))
    old = _header(_chat_requests(emu)[-1], CACHE_HEADER)
    emu.clock.advance(7200)  # past the TTL: the server reports it inactive
    model.invoke(_turns(SYSTEM_TEXT, "@reply 5", "@reply 5"))
    new = _header(_chat_requests(emu)[-1], CACHE_HEADER)
    assert new is not None
    assert new != old
    assert len(_cache_requests(emu, "POST")) == 2
    assert _chat_requests(emu)[-1].usage["cached_tokens"] > 0
    model.close()


def test_explicit_recreate_when_server_lost_the_cache_without_local_clock(
    emu: KimiEmulator,
) -> None:
    # The strategy uses its own wall clock: it learns from the missing hit and re-checks.
    model = _v1_model(emu, session_id="s-lost")
    model.invoke(_turns(SYSTEM_TEXT, "@reply 5"))
    old = _header(_chat_requests(emu)[-1], CACHE_HEADER)
    emu.clock.advance(7200)
    model.invoke(_turns(SYSTEM_TEXT, "@reply 5", "@reply 5"))  # stale header: no hit
    assert _chat_requests(emu)[-1].usage.get("cached_tokens", 0) == 0
    model.invoke(_turns(SYSTEM_TEXT, "@reply 5", "@reply 5", "@reply 5"))
    new = _header(_chat_requests(emu)[-1], CACHE_HEADER)
    assert new is not None
    assert new != old
    assert _chat_requests(emu)[-1].usage["cached_tokens"] > 0
    model.close()


def test_explicit_fallback_on_cache_api_500(
    emu: KimiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emu.faults.server_error(at=1, endpoint="caching")
    model = _v1_model(emu, session_id="s-500")
    with caplog.at_level(logging.WARNING, logger="langchain_kimi_context.caching"):
        reply = model.invoke(_turns(SYSTEM_TEXT, "@reply 5"))
    assert reply.content
    assert _header(_chat_requests(emu)[-1], CACHE_HEADER) is None  # never a wrong header
    assert any("sending uncached" in r.getMessage() for r in caplog.records)
    assert all(emu.api_key not in r.getMessage() for r in caplog.records)
    model.close()


def test_explicit_create_retried_after_backoff(emu: KimiEmulator) -> None:
    emu.faults.server_error(at=1, endpoint="caching")
    cache = _explicit(emu, policy=CachePolicy(cost_guard=False, min_prefix_tokens=0))
    model = _v1_model(emu, session_id="s-retry", cache_strategy=cache)
    model.invoke(_turns(SYSTEM_TEXT, "@reply 5"))
    model.invoke(_turns(SYSTEM_TEXT, "@reply 5", "@reply 5"))  # still backing off
    assert [_header(r, CACHE_HEADER) for r in _chat_requests(emu)] == [None, None]
    emu.clock.advance(60)
    model.invoke(_turns(SYSTEM_TEXT, "@reply 5", "@reply 5", "@reply 5"))
    assert _header(_chat_requests(emu)[-1], CACHE_HEADER) is not None
    model.close()


def test_explicit_delete_on_close_and_context_manager(emu: KimiEmulator) -> None:
    with _v1_model(emu, session_id="s-close") as model:
        model.invoke(_turns(SYSTEM_TEXT, "@reply 5"))
        model.invoke(_turns(SYSTEM_TEXT, "@reply 5"), session_id="s-close-2")
        ids = {_header(r, CACHE_HEADER) for r in _chat_requests(emu)}
        assert len(ids) == 2
    deleted = {d.path.rsplit("/", 1)[-1] for d in _cache_requests(emu, "DELETE")}
    assert deleted == ids
    model.close()  # idempotent
    assert len(_cache_requests(emu, "DELETE")) == 2


async def test_explicit_async_path_and_aclose(emu: KimiEmulator) -> None:
    async with _v1_model(emu, session_id="s-async") as model:
        await model.ainvoke(_turns(SYSTEM_TEXT, "@reply 5"))
        reply = await model.ainvoke(_turns(SYSTEM_TEXT, "@reply 5", "@reply 5"))
        assert reply.response_metadata["kimi_cache"]["cache_read"] > 0
    assert len(_cache_requests(emu, "POST")) == 1
    assert len(_cache_requests(emu, "DELETE")) == 1


def test_two_models_sharing_one_registry_create_one_cache(emu: KimiEmulator) -> None:
    registry = StoreCacheRegistry(InMemoryStore())
    a = _v1_model(emu, session_id="shared", cache_registry=registry)
    b = _v1_model(emu, session_id="shared", cache_registry=registry)
    a.invoke(_turns(SYSTEM_TEXT, "@reply 5"))
    b.invoke(_turns(SYSTEM_TEXT, "@reply 5", "@reply 5"))
    assert len(_cache_requests(emu, "POST")) == 1
    headers = [_header(r, CACHE_HEADER) for r in _chat_requests(emu)]
    assert headers[0] is not None
    assert headers == [headers[0]] * 2
    assert _chat_requests(emu)[-1].usage["cached_tokens"] > 0
    a.close()  # b still uses it: kept
    assert _cache_requests(emu, "DELETE") == []
    b.invoke(_turns(SYSTEM_TEXT, "@reply 5"))
    assert _header(_chat_requests(emu)[-1], CACHE_HEADER) == headers[0]
    b.close()
    assert len(_cache_requests(emu, "DELETE")) == 1


def test_explicit_message_mode_uses_role_cache(emu: KimiEmulator) -> None:
    policy = CachePolicy(cost_guard=False, min_prefix_tokens=0, explicit_usage="message")
    model = _v1_model(emu, session_id="s-msg", cache_policy=policy)
    reply = model.bind_tools([read_file]).invoke(_turns(SYSTEM_TEXT, "@reply 5"))
    sent = _chat_requests(emu)[-1].body
    assert sent["messages"][0]["role"] == "cache"
    assert sent["messages"][0]["content"].startswith("cache_id=cache-")
    assert "reset_ttl=3600" in sent["messages"][0]["content"]
    assert not sent.get("tools")
    assert _header(_chat_requests(emu)[-1], CACHE_HEADER) is None
    assert reply.response_metadata["kimi_cache"]["cache_read"] > 0
    model.close()


def test_cost_guard_skips_small_prefixes(emu: KimiEmulator) -> None:
    model = KimiChatModel(
        model=V1, base_url=emu.base_url, api_key=emu.api_key, session_id="s-small"
    )
    model.invoke(_turns("Be brief.", "@reply 5"))
    assert _cache_requests(emu, "POST") == []
    assert _header(_chat_requests(emu)[-1], CACHE_HEADER) is None
    model.close()


def test_no_stable_prefix_no_cache(emu: KimiEmulator) -> None:
    model = _v1_model(emu, session_id="s-none")
    model.invoke([HumanMessage("@reply 5")])
    assert _cache_requests(emu, "POST") == []
    model.close()


# --- automatic prefix caching (kimi-k2.6) --------------------------------------------


def _auto_model(emu: KimiEmulator, **kwargs: Any) -> KimiChatModel:
    return KimiChatModel(
        model=K2, base_url=emu.base_url, api_key=emu.api_key, max_retries=0, **kwargs
    )


def _assert_cache_read_matches_server(message: Any, record: Any) -> None:
    server = record.usage.get("cached_tokens")
    if server is None:
        server = (record.usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    assert message.response_metadata["kimi_cache"]["cache_read"] == server
    assert message.usage_metadata["input_token_details"].get("cache_read", 0) == server


def test_automatic_cache_read_equals_server_cached_tokens(emu: KimiEmulator) -> None:
    ledger = CostLedger()
    model = _auto_model(emu, session_id="auto-1", cost_ledger=ledger)
    assert isinstance(model._cache_strategy, AutomaticPrefixCache)
    history: list[BaseMessage] = [SystemMessage(SYSTEM_TEXT)]
    hits = []
    for turn in range(4):
        history.append(HumanMessage(f"@reply 120\nturn {turn}"))
        if turn % 2:
            chunks = list(model.stream(history))
            reply: Any = chunks[0]
            for chunk in chunks[1:]:
                reply = reply + chunk
        else:
            reply = model.invoke(history)
        record = _chat_requests(emu, at_least=turn + 1)[-1]
        _assert_cache_read_matches_server(reply, record)
        hits.append(reply.response_metadata["kimi_cache"]["cache_read"])
        history.append(AIMessage(str(reply.content)))
        assert (
            record.body["prompt_cache_key"]
            == model._cache_strategy.prepare({"messages": []}, session_id="auto-1")[
                "prompt_cache_key"
            ]
        )
    assert hits[0] == 0
    assert all(h > 0 for h in hits[1:])
    assert ledger.session("auto-1").cached_tokens == sum(hits)


async def test_automatic_async_stream_and_invoke(emu: KimiEmulator) -> None:
    model = _auto_model(emu)

    async def node(messages: list[BaseMessage]) -> Any:
        # Inside a runnable (e.g. a LangGraph node) the thread id comes from the config.
        return await model.ainvoke(messages)

    config: Any = {"configurable": {"thread_id": "thread-async"}}
    history: list[BaseMessage] = [SystemMessage(SYSTEM_TEXT), HumanMessage("@reply 50")]
    first = await RunnableLambda(node).ainvoke(history, config=config)
    _assert_cache_read_matches_server(first, _chat_requests(emu)[-1])
    assert _chat_requests(emu)[-1].body["prompt_cache_key"] == prompt_cache_key_for("thread-async")
    history += [AIMessage(str(first.content)), HumanMessage("@reply 50")]
    reply: Any = None
    async for chunk in model.astream(history, session_id="thread-async"):
        reply = chunk if reply is None else reply + chunk
    _assert_cache_read_matches_server(reply, _chat_requests(emu, at_least=2)[-1])
    assert reply.response_metadata["kimi_cache"]["cache_read"] > 0
    assert model.ledger.session("thread-async").calls == 2


def test_stability_checker_reports_timestamp_break(
    emu: KimiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    model = _auto_model(
        emu, session_id="auto-ts", cache_policy=CachePolicy(check_prefix_stability=True)
    )
    with caplog.at_level(logging.WARNING, logger="langchain_kimi_context.caching.stability"):
        model.invoke(
            [SystemMessage(f"Now: 2026-11-21 11:00:01. {SYSTEM_TEXT}"), HumanMessage("hi")]
        )
        second = model.invoke(
            [SystemMessage(f"Now: 2026-11-21 11:00:09. {SYSTEM_TEXT}"), HumanMessage("hi")]
        )
    assert second.response_metadata["kimi_cache"]["cache_read"] == 0
    reports = model._cache_strategy.checker.reports
    assert [r.kind for r in reports] == ["timestamp_in_system_prompt"]
    assert any("timestamp" in r.getMessage() for r in caplog.records)


def test_off_mode_sends_no_cache_key(emu: KimiEmulator) -> None:
    model = _auto_model(emu, context_cache="off", session_id="s-off")
    model.invoke([SystemMessage(SYSTEM_TEXT), HumanMessage("@reply 5")])
    assert "prompt_cache_key" not in _chat_requests(emu)[-1].body
    assert model.ledger.session("s-off").calls == 1


def _live_caches(emu: KimiEmulator) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{emu.base_url}/caching", headers={"Authorization": f"Bearer {emu.api_key}"}
    )
    response.raise_for_status()
    now = emu.clock.now()
    return [c for c in response.json()["data"] if c["expired_at"] > now]


def test_concurrent_models_on_one_registry_leave_one_live_cache(emu: KimiEmulator) -> None:
    registry = StoreCacheRegistry(InMemoryStore())
    models = [_v1_model(emu, session_id="race", cache_registry=registry) for _ in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda m: m.invoke(_turns(SYSTEM_TEXT, "@reply 5")), models))
    # Creation may race, but losers delete their copy: one cache stays alive.
    for model in models:
        model.invoke(_turns(SYSTEM_TEXT, "@reply 5", "@reply 5"))
    assert len(_live_caches(emu)) == 1
    assert len({_header(r, CACHE_HEADER) for r in _chat_requests(emu)[-3:]}) == 1
    for model in models:
        model.close()
    assert _live_caches(emu) == []


class _BrokenRegistry:
    def get(self, key: str) -> Any:
        raise RuntimeError("registry down")

    def put(self, key: str, entry: Any) -> None:
        raise RuntimeError("registry down")

    def delete(self, key: str) -> None:
        raise RuntimeError("registry down")


def test_broken_registry_never_breaks_a_call(emu: KimiEmulator) -> None:
    model = _v1_model(emu, session_id="s-broken", cache_registry=_BrokenRegistry())
    reply = model.invoke(_turns(SYSTEM_TEXT, "@reply 5"))
    assert reply.content
    assert _header(_chat_requests(emu)[-1], CACHE_HEADER) is None
    model.close()


@pytest.mark.subprocess
def test_caches_are_deleted_at_interpreter_exit(emu: KimiEmulator) -> None:
    script = textwrap.dedent(
        f"""
        from langchain_core.messages import HumanMessage, SystemMessage
        from langchain_kimi_context import KimiChatModel
        from langchain_kimi_context.caching import CachePolicy

        model = KimiChatModel(model={V1!r}, base_url={emu.base_url!r}, api_key={emu.api_key!r},
                              session_id="exit", cache_policy=CachePolicy(cost_guard=False,
                              min_prefix_tokens=0))
        model.invoke([SystemMessage("x" * 4000), HumanMessage("@reply 5")])
        print("created")
        # no close(): the atexit hook must delete the cache
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "created" in done.stdout
    assert len(_cache_requests(emu, "POST")) == 1
    assert len(_cache_requests(emu, "DELETE")) == 1
    assert _live_caches(emu) == []


def test_rejected_cache_creation_is_not_retried(emu: KimiEmulator) -> None:
    # Forcing the explicit API on a model family the cache API does not know: the create
    # call is rejected once, then the session simply runs uncached.
    model = KimiChatModel(
        model=K2,
        base_url=emu.base_url,
        api_key=emu.api_key,
        context_cache="explicit",
        cache_policy=ALWAYS,
        session_id="s-rejected",
    )
    for n in range(3):
        model.invoke(_turns(SYSTEM_TEXT, *["@reply 5"] * (n + 1)))
    creates = _cache_requests(emu, "POST")
    assert len(creates) == 1
    assert creates[0].status >= 400
    assert all(_header(r, CACHE_HEADER) is None for r in _chat_requests(emu))
    model.close()
