"""Unit tests of the pure parts of the caching layer (no server)."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.store.memory import InMemoryStore

from langchain_kimi_context.caching import (
    CACHE_HEADER,
    AutomaticPrefixCache,
    CacheEntry,
    CachePolicy,
    CallCost,
    CostLedger,
    ExplicitContextCache,
    InMemoryCacheRegistry,
    NoContextCache,
    PrefixStabilityChecker,
    StoreCacheRegistry,
    canonical_json,
    canonicalize_messages,
    canonicalize_payload,
    canonicalize_tools,
    create_cache_strategy,
    explicit_cache_decision,
    find_prefix_break,
    prefix_fingerprint,
    prompt_cache_key_for,
    read_cached_tokens,
    stable_prefix_length,
)
from langchain_kimi_context.chat_models import CacheStrategy
from langchain_kimi_context.context.markers import with_marker
from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.profiles import ExplicitCachePricing, Pricing, get_profile


def _tool(name: str, **props: Any) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"tool {name}",
            "parameters": {
                "type": "object",
                "properties": props or {"path": {"type": "string"}},
                "required": list(props or {"path": 0}),
            },
        },
    }


SYSTEM = {"role": "system", "content": "You are a careful coding agent."}
USER = {"role": "user", "content": "read a.py"}


# --- canonical serialisation ----------------------------------------------------------


def test_canonical_tools_ignore_order_of_tools_and_schema_keys() -> None:
    a, b = _tool("read_file"), _tool("write_file", path={"type": "string"}, text={"type": "string"})
    b_reordered = {
        "function": {
            "parameters": dict(reversed(list(b["function"]["parameters"].items()))),
            "name": "write_file",
            "description": "tool write_file",
        },
        "type": "function",
    }
    one = canonical_json(canonicalize_tools([a, b]))
    two = canonical_json(canonicalize_tools([b_reordered, a]))
    assert one == two
    # Without sorting, the order of tools is kept (and thus differs).
    assert canonical_json(canonicalize_tools([b, a], sort=False)) != one
    # "required" keeps its order: lists are data, not sets.
    req = canonicalize_tools([b])[0]["function"]["parameters"]["required"]
    assert req == ["path", "text"]


def test_canonical_messages_normalise_arguments_and_keep_text() -> None:
    msg = {
        "role": "assistant",
        "content": "  spaced   text é ",
        "tool_calls": [
            {
                "id": "read_file:0",
                "type": "function",
                "function": {"name": "read_file", "arguments": '{"z": 1,  "a": "é"}'},
            },
            {"id": "x:1", "type": "function", "function": {"name": "x", "arguments": "{bad"}},
        ],
    }
    original = copy.deepcopy(msg)
    out = canonicalize_messages([msg])[0]
    assert msg == original  # input untouched
    assert out["content"] == "  spaced   text é "
    assert out["tool_calls"][0]["function"]["arguments"] == '{"a":"é","z":1}'
    assert out["tool_calls"][1]["function"]["arguments"] == "{bad"  # invalid JSON kept
    assert list(out) == sorted(out)


def test_canonicalize_payload_copies_and_keeps_other_keys() -> None:
    payload = {
        "model": "kimi-k2.6",
        "messages": [{"content": "x", "role": "user"}],
        "tools": [_tool("b"), _tool("a")],
        "temperature": 1.0,
    }
    before = copy.deepcopy(payload)
    out = canonicalize_payload(payload)
    assert payload == before
    assert out["temperature"] == 1.0
    assert [t["function"]["name"] for t in out["tools"]] == ["a", "b"]


def test_fingerprint_changes_with_prefix_and_tools_only() -> None:
    base = prefix_fingerprint([SYSTEM], [_tool("a")])
    assert base == prefix_fingerprint([dict(reversed(list(SYSTEM.items())))], [_tool("a")])
    assert base != prefix_fingerprint([{**SYSTEM, "content": "other"}], [_tool("a")])
    assert base != prefix_fingerprint([SYSTEM], [_tool("a", q={"type": "integer"})])
    assert base != prefix_fingerprint([SYSTEM], None)


def test_stable_prefix_includes_marked_summary_but_not_user_turns() -> None:
    summary = with_marker(SystemMessage("Summary of earlier work"), "summary")
    source = [SystemMessage("sys"), summary, HumanMessage("hi"), AIMessage("yo")]
    wire = [
        {"role": "system", "content": "sys"},
        {"role": "system", "content": "Summary of earlier work"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]
    assert stable_prefix_length(wire, source) == 2
    # A summary carried by an assistant-role message counts only via its marker.
    source2 = [SystemMessage("sys"), with_marker(AIMessage("sum"), "summary"), HumanMessage("q")]
    wire2 = [wire[0], {"role": "assistant", "content": "sum"}, wire[2]]
    assert stable_prefix_length(wire2, source2) == 2
    assert stable_prefix_length(wire2) == 1
    # Misaligned source lists are ignored rather than trusted.
    assert stable_prefix_length(wire2, source2[:2]) == 1
    assert stable_prefix_length([USER, SYSTEM]) == 0


def test_prompt_cache_key_is_stable_and_hides_the_session_id() -> None:
    key = prompt_cache_key_for("user-42@example.com")
    assert key == prompt_cache_key_for("user-42@example.com")
    assert key != prompt_cache_key_for("user-43@example.com")
    assert "example" not in key
    assert "user" not in key
    assert prompt_cache_key_for("s", prefix="app-").startswith("app-")


def test_read_cached_tokens_prefers_top_level() -> None:
    assert (
        read_cached_tokens({"cached_tokens": 7, "prompt_tokens_details": {"cached_tokens": 3}}) == 7
    )
    assert read_cached_tokens({"prompt_tokens_details": {"cached_tokens": 3}}) == 3
    assert read_cached_tokens({"prompt_tokens": 3}) == 0
    assert read_cached_tokens(None) == 0


# --- prefix stability ---------------------------------------------------------------


def _payload(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> dict:
    return {"messages": messages, "tools": tools or []}


@pytest.mark.parametrize(
    ("previous", "current", "kind", "index"),
    [
        (
            _payload([{"role": "system", "content": "Now: 2026-11-21 10:00:01. Be brief."}, USER]),
            _payload([{"role": "system", "content": "Now: 2026-11-21 10:00:07. Be brief."}, USER]),
            "timestamp_in_system_prompt",
            0,
        ),
        (
            _payload([SYSTEM, USER]),
            _payload([{"role": "system", "content": "You are a sloppy coding agent."}, USER]),
            "system_prompt_changed",
            0,
        ),
        (
            _payload(
                [SYSTEM, USER, {"role": "assistant", "content": "ok", "reasoning_content": "hm"}]
            ),
            _payload([SYSTEM, USER, {"role": "assistant", "content": "ok"}]),
            "reasoning_content_dropped",
            2,
        ),
        (
            _payload([SYSTEM, USER, {"role": "tool", "tool_call_id": "a:0", "content": "x" * 50}]),
            _payload([SYSTEM, USER, {"role": "tool", "tool_call_id": "a:0", "content": "[cut]"}]),
            "message_edited",
            2,
        ),
        (
            _payload([SYSTEM, USER, {"role": "assistant", "content": "a"}]),
            _payload([SYSTEM, {"role": "assistant", "content": "a"}]),
            "message_inserted_or_removed",
            1,
        ),
        (
            _payload([SYSTEM, USER, {"role": "assistant", "content": "a"}, USER]),
            _payload([SYSTEM, USER]),
            "history_truncated",
            2,
        ),
    ],
)
def test_find_prefix_break_explains_message_changes(
    previous: dict, current: dict, kind: str, index: int
) -> None:
    found = find_prefix_break(previous, current, session_id="s1")
    assert found is not None
    assert found.kind == kind
    assert found.message_index == index
    assert found.reusable_messages == index
    assert found.session_id == "s1"


def test_find_prefix_break_byte_offset_points_at_the_first_difference() -> None:
    prev = _payload([SYSTEM, {"role": "user", "content": "abcdef"}])
    cur = _payload([SYSTEM, {"role": "user", "content": "abcXef"}])
    found = find_prefix_break(prev, cur)
    assert found is not None
    text_prev = "\n".join([canonical_json([]), *(canonical_json(m) for m in prev["messages"])])
    text_cur = "\n".join([canonical_json([]), *(canonical_json(m) for m in cur["messages"])])
    raw_prev, raw_cur = text_prev.encode(), text_cur.encode()
    assert raw_prev[: found.byte_offset] == raw_cur[: found.byte_offset]
    assert raw_prev[found.byte_offset] != raw_cur[found.byte_offset]
    assert "abcdef" in found.previous_excerpt
    assert "abcXef" in found.current_excerpt


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        ([_tool("a"), _tool("b")], [_tool("b"), _tool("a")], "tools_reordered"),
        ([_tool("a")], [_tool("a", q={"type": "integer"})], "tool_schema_changed"),
        ([_tool("a")], [_tool("a"), _tool("b")], "tools_changed"),
    ],
)
def test_find_prefix_break_explains_tool_changes(old: list, new: list, kind: str) -> None:
    found = find_prefix_break(_payload([SYSTEM], old), _payload([SYSTEM], new))
    assert found is not None
    assert found.kind == kind
    assert found.part == "tools"


def test_growing_history_is_not_a_break() -> None:
    prev = _payload([SYSTEM, USER], [_tool("a")])
    cur = _payload([SYSTEM, USER, {"role": "assistant", "content": "x"}, USER], [_tool("a")])
    assert find_prefix_break(prev, cur) is None


def test_checker_logs_breaks_when_enabled(caplog: pytest.LogCaptureFixture) -> None:
    checker = PrefixStabilityChecker(enabled=True)
    with caplog.at_level(logging.WARNING, logger="langchain_kimi_context.caching.stability"):
        assert checker.check("s", _payload([SYSTEM, USER])) is None
        found = checker.check("s", _payload([{**SYSTEM, "content": "changed"}, USER]))
        # another session is independent
        assert checker.check("other", _payload([USER])) is None
    assert found is not None
    assert found.kind == "system_prompt_changed"
    assert checker.reports == [found]
    assert any("broke at byte" in r.getMessage() for r in caplog.records)


def test_checker_is_off_unless_enabled_or_debug_logging(caplog: pytest.LogCaptureFixture) -> None:
    checker = PrefixStabilityChecker()
    checker.check("s", _payload([SYSTEM]))
    assert checker.check("s", _payload([{**SYSTEM, "content": "x"}])) is None
    with caplog.at_level(logging.DEBUG, logger="langchain_kimi_context.caching.stability"):
        checker.check("s", _payload([SYSTEM]))
        found = checker.check("s", _payload([{**SYSTEM, "content": "x"}]))
    assert found is not None
    assert any(r.levelno == logging.DEBUG for r in caplog.records)


def test_checker_forgets_oldest_sessions() -> None:
    checker = PrefixStabilityChecker(enabled=True, max_sessions=2)
    for sid in ("a", "b", "c"):
        checker.check(sid, _payload([SYSTEM]))
    # "a" was dropped: its next request is treated as a first request.
    assert checker.check("a", _payload([{**SYSTEM, "content": "new"}])) is None
    assert checker.check("c", _payload([{**SYSTEM, "content": "new"}])) is not None


# --- strategies without I/O ------------------------------------------------------------


def test_automatic_strategy_sets_key_canonicalises_and_never_mutates() -> None:
    strategy = AutomaticPrefixCache(profile=get_profile("kimi-k2.6"))
    payload = {"model": "kimi-k2.6", "messages": [SYSTEM, USER], "tools": [_tool("b"), _tool("a")]}
    before = copy.deepcopy(payload)
    out = strategy.prepare(payload, session_id="thread-7")
    assert payload == before
    assert out["prompt_cache_key"] == prompt_cache_key_for("thread-7")
    assert [t["function"]["name"] for t in out["tools"]] == ["a", "b"]
    # The caller's own key wins.
    assert (
        strategy.prepare({**payload, "prompt_cache_key": "mine"}, session_id="t")[
            "prompt_cache_key"
        ]
        == "mine"
    )
    # No session: key derived from the stable prefix, same for the same prefix.
    k1 = strategy.prepare(payload, session_id=None)["prompt_cache_key"]
    k2 = strategy.prepare({**payload, "messages": [SYSTEM, USER, USER]}, session_id=None)[
        "prompt_cache_key"
    ]
    assert k1 == k2
    assert isinstance(strategy, CacheStrategy)


def test_automatic_strategy_with_canonicalize_off_keeps_tool_order() -> None:
    strategy = AutomaticPrefixCache(policy=CachePolicy(canonicalize=False))
    out = strategy.prepare({"messages": [], "tools": [_tool("b"), _tool("a")]}, session_id="s")
    assert [t["function"]["name"] for t in out["tools"]] == ["b", "a"]


def test_automatic_strategy_stability_flag(caplog: pytest.LogCaptureFixture) -> None:
    strategy = AutomaticPrefixCache(policy=CachePolicy(check_prefix_stability=True))
    strategy.prepare({"messages": [SYSTEM, USER]}, session_id="s")
    with caplog.at_level(logging.WARNING, logger="langchain_kimi_context.caching.stability"):
        strategy.prepare({"messages": [{**SYSTEM, "content": "v2"}, USER]}, session_id="s")
    assert strategy.checker.reports[-1].kind == "system_prompt_changed"


async def test_record_reports_cache_read_equal_to_server_cached_tokens() -> None:
    strategy = AutomaticPrefixCache(profile=get_profile("kimi-k2-0905-preview"))
    payload = await strategy.aprepare(
        {"model": "kimi-k2-0905-preview", "messages": [USER]}, session_id="s"
    )
    meta = strategy.record(
        payload,
        {"usage": {"prompt_tokens": 2000, "completion_tokens": 100, "cached_tokens": 1536}},
        session_id="s",
    )["kimi_cache"]
    assert meta["cache_read"] == 1536
    assert meta["cache_miss"] == 464
    # 0.15/M hit, 0.60/M miss, 2.50/M output
    expected = (1536 * 0.15 + 464 * 0.60 + 100 * 2.50) / 1e6
    assert meta["cost"] == pytest.approx(expected)
    assert meta["currency"] == "USD"
    # LangChain usage_metadata is understood too.
    meta2 = strategy.record(
        payload,
        {"input_tokens": 10, "output_tokens": 1, "input_token_details": {"cache_read": 4}},
        session_id="s",
    )["kimi_cache"]
    assert meta2["cache_read"] == 4
    assert strategy.ledger.session("s").calls == 2


def test_off_strategy_passes_through_but_records() -> None:
    strategy = NoContextCache()
    payload = {"model": "kimi-k2.6", "messages": [USER], "tools": [_tool("b"), _tool("a")]}
    assert strategy.prepare(payload, session_id="s") is payload
    strategy.record(payload, {"prompt_tokens": 10, "completion_tokens": 1}, session_id="s")
    assert strategy.ledger.session("s").prompt_tokens == 10


def test_create_cache_strategy_modes() -> None:
    k2, v1 = get_profile("kimi-k2.6"), get_profile("moonshot-v1-32k")
    url = "http://127.0.0.1:9/v1"
    assert isinstance(create_cache_strategy("auto", profile=k2), AutomaticPrefixCache)
    explicit = create_cache_strategy("auto", profile=v1, base_url=url)
    assert isinstance(explicit, ExplicitContextCache)
    assert explicit.family == "moonshot-v1"
    explicit.close()
    assert isinstance(create_cache_strategy("off", profile=v1, base_url=url), NoContextCache)
    assert isinstance(
        create_cache_strategy("auto", profile=k2.replace(cache_kind="none")), NoContextCache
    )
    with pytest.raises(KimiConfigurationError, match="base URL"):
        create_cache_strategy("explicit", profile=k2)
    with pytest.raises(KimiConfigurationError, match="context_cache must be"):
        create_cache_strategy("yes", profile=k2)  # type: ignore[arg-type]


def test_explicit_repr_hides_the_api_key() -> None:
    strategy = ExplicitContextCache(
        base_url="http://127.0.0.1:9/v1",
        api_key="sk-secret-123",
        profile=get_profile("moonshot-v1-8k"),
    )
    assert "sk-secret" not in repr(strategy)
    strategy.close()


# --- ledger -------------------------------------------------------------------------------


def test_ledger_per_session_and_currency_totals() -> None:
    ledger = CostLedger()

    def call(session: str, prompt: int, cached: int, cost: float, currency: str) -> CallCost:
        return CallCost(
            session_id=session,
            model="m",
            cache_mode="automatic",
            prompt_tokens=prompt,
            cached_tokens=cached,
            output_tokens=5,
            cost=cost,
            currency=currency,
        )

    ledger.add_call(call("a", 100, 50, 1.0, "USD"))
    ledger.add_call(call("a", 300, 250, 2.0, "USD"))
    ledger.add_call(call("b", 10, 0, 3.0, "CNY"))
    ledger.add_cache_event(session_id="a", kind="create", amount=0.5, currency="CNY", cache_id="c")
    a = ledger.session("a")
    assert (a.calls, a.prompt_tokens, a.cached_tokens, a.output_tokens) == (2, 400, 300, 10)
    assert a.cached_share == 0.75
    assert a.cost == {"USD": 3.0}
    assert a.cache_cost == {"CNY": 0.5}
    assert a.caches_created == 1
    total = ledger.total()
    assert total.cost == {"USD": 3.0, "CNY": 3.0}
    assert total.total("CNY") == 3.5
    assert ledger.sessions() == ["a", "b"]
    assert len(ledger.calls("b")) == 1
    ledger.reset()
    assert ledger.total().calls == 0


def test_explicit_record_bills_hits_through_the_per_hit_fee() -> None:
    profile = get_profile("moonshot-v1-128k")
    strategy = ExplicitContextCache(base_url="http://127.0.0.1:9/v1", api_key=None, profile=profile)
    payload = {
        "model": profile.name,
        "messages": [USER],
        "extra_headers": {CACHE_HEADER: "cache-1"},
    }
    meta = strategy.record(
        payload,
        {"prompt_tokens": 5000, "completion_tokens": 10, "cached_tokens": 4000},
        session_id="s",
    )["kimi_cache"]
    assert meta["cache_id"] == "cache-1"
    assert meta["cost"] == pytest.approx((1000 * 2.0 + 10 * 5.0) / 1e6)
    assert meta["cache_cost"] == 0.02
    assert meta["cache_currency"] == "CNY"
    strategy.close()


# --- cost guard -----------------------------------------------------------------------------


def test_cost_rule_matches_the_documented_formula() -> None:
    pricing = Pricing(currency="USD", input_cache_hit=2.0, input_cache_miss=2.0, output=5.0)
    cache_pricing = ExplicitCachePricing(
        currency="CNY", creation_per_m=24.0, storage_per_m_per_minute=5.0, per_hit_call=0.02
    )
    policy = CachePolicy(expected_hits=10, expected_lifetime_minutes=5, usd_per_unit={"CNY": 0.1})
    tokens = 10_000
    savings = 10 * (tokens * 2.0 / 1e6 - 0.02 * 0.1)
    cost = tokens * (24 * 0.1 / 1e6 + 5 * 0.1 / 1e6 * 5)
    d = explicit_cache_decision(tokens, pricing=pricing, cache_pricing=cache_pricing, policy=policy)
    assert d.expected_savings_usd == pytest.approx(savings)
    assert d.expected_cost_usd == pytest.approx(cost)
    assert d.create is (savings >= cost)
    # Too short-lived: few expected hits and long storage never pay.
    short = CachePolicy(expected_hits=1, expected_lifetime_minutes=60, usd_per_unit={"CNY": 0.1})
    assert not explicit_cache_decision(
        tokens, pricing=pricing, cache_pricing=cache_pricing, policy=short
    ).create
    # Too small: below the minimum, even with the guard off.
    tiny = CachePolicy(min_prefix_tokens=2000, cost_guard=False)
    assert not explicit_cache_decision(
        1999, pricing=pricing, cache_pricing=cache_pricing, policy=tiny
    ).create
    assert explicit_cache_decision(
        2000, pricing=pricing, cache_pricing=cache_pricing, policy=tiny
    ).create


def test_cache_policy_validation_and_currency() -> None:
    with pytest.raises(KimiConfigurationError, match="explicit_usage"):
        CachePolicy(explicit_usage="body")  # type: ignore[arg-type]
    with pytest.raises(KimiConfigurationError, match="expected_hits"):
        CachePolicy(expected_hits=-1)
    with pytest.raises(KimiConfigurationError, match="EUR"):
        CachePolicy().to_usd(1.0, "EUR")
    assert CachePolicy(reset_ttl_seconds=0).effective_reset_ttl == 0


# --- registries ---------------------------------------------------------------------------


def _entry(cache_id: str = "cache-1") -> CacheEntry:
    return CacheEntry(
        cache_id=cache_id,
        fingerprint="f" * 64,
        session_id="s",
        family="moonshot-v1",
        prefix_messages=1,
        tokens=1234,
        created_at=1.0,
        expires_at=3601.0,
        verified_at=1.0,
        holders={"h1": 1.0},
    )


def test_in_memory_registry_round_trip_is_isolated_from_callers() -> None:
    registry = InMemoryCacheRegistry()
    registry.put("k", _entry())
    got = registry.get("k")
    assert got == _entry()
    assert got is not None
    got.holders["h2"] = 2.0  # type: ignore[index]
    assert registry.get("k") == _entry()
    registry.delete("k")
    assert registry.get("k") is None


def test_store_registry_shares_entries_between_instances() -> None:
    store = InMemoryStore()
    first, second = StoreCacheRegistry(store), StoreCacheRegistry(store)
    first.put("acct|moonshot-v1|s", _entry())
    assert second.get("acct|moonshot-v1|s") == _entry()
    assert json.loads(json.dumps(_entry().to_dict())) == _entry().to_dict()
    second.delete("acct|moonshot-v1|s")
    assert first.get("acct|moonshot-v1|s") is None
    with pytest.raises(KimiConfigurationError, match="namespace"):
        StoreCacheRegistry(store, namespace=("a.b",))


def test_store_registry_on_sqlite_store() -> None:
    from langgraph.store.sqlite import SqliteStore

    with SqliteStore.from_conn_string(":memory:") as store:
        store.setup()
        registry = StoreCacheRegistry(store)
        registry.put("k", _entry("cache-sql"))
        got = registry.get("k")
        assert got is not None
        assert got.cache_id == "cache-sql"
        store.put(registry.namespace, "bad", {"nonsense": True})
        assert registry.get("bad") is None  # malformed entries are ignored, not fatal
