"""Automatic prefix caching (256-token blocks) and the explicit Context Caching API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from langchain_kimi_context.profiles import ExplicitCachePricing, get_profile
from langchain_kimi_context.testing import EmulatorTokenizer, KimiEmulator, PrefixCache

K2 = "kimi-k2.6"
# One shared client: creating an httpx.Client per call costs ~20 ms (SSL context).
HTTP = httpx.Client(timeout=30)
V1 = "moonshot-v1-32k"
TOK = EmulatorTokenizer()
SYSTEM = {"role": "system", "content": " ".join(f"rule{i} is important" for i in range(400))}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
        },
    }
]


def _chat(emu: KimiEmulator, body: dict[str, Any], **headers: str) -> httpx.Response:
    return HTTP.post(
        f"{emu.base_url}/chat/completions", json=body, headers={**emu.headers, **headers}
    )


def _usage(emu: KimiEmulator, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    resp = _chat(emu, body, **headers)
    assert resp.status_code == 200, resp.text
    usage: dict[str, Any] = resp.json()["usage"]
    return usage


def _floor256(n: int) -> int:
    return n // 256 * 256


def test_prefix_cache_hits_previous_prompt_rounded_down(emulator: KimiEmulator) -> None:
    msgs: list[dict[str, Any]] = [SYSTEM, {"role": "user", "content": "@reply 300"}]
    reply = _chat(emulator, {"model": K2, "messages": msgs, "tools": TOOLS}).json()
    first = reply["usage"]
    assert first["cached_tokens"] == 0
    assert first["prompt_tokens"] > 1000
    assert first["prompt_tokens"] % 256 != 0
    msgs = [*msgs, reply["choices"][0]["message"], {"role": "user", "content": "@reply 5"}]
    second = _usage(emulator, {"model": K2, "messages": msgs, "tools": TOOLS})
    # The whole first prompt is a prefix of the second: hit = it, in whole 256 blocks.
    assert second["cached_tokens"] == _floor256(first["prompt_tokens"] + 0)
    assert second["cached_tokens"] % 256 == 0
    assert second["cached_tokens"] > 0
    # Identical request again: everything but the last partial block.
    third = _usage(emulator, {"model": K2, "messages": msgs, "tools": TOOLS})
    assert third["cached_tokens"] == _floor256(second["prompt_tokens"])
    assert emulator.ledger().cached_tokens == second["cached_tokens"] + third["cached_tokens"]


def test_prefix_change_in_the_middle_limits_the_hit(emulator: KimiEmulator) -> None:
    big = [{"role": "user", "content": " ".join(f"line{i}" for i in range(3000))}]
    base = _usage(emulator, {"model": K2, "messages": big})
    assert base["cached_tokens"] == 0
    # Change a word around token ~1500 of ~6000.
    words = big[0]["content"].split()
    words[750] = "CHANGED"
    changed = [{"role": "user", "content": " ".join(words)}]
    prefix_tokens = 1 + TOK.count_text(" ".join(words[:750]))  # role marker + text before
    hit = _usage(emulator, {"model": K2, "messages": changed})["cached_tokens"]
    assert hit == _floor256(prefix_tokens)
    assert 0 < hit < base["prompt_tokens"]


def test_prefix_cache_is_partitioned(emulator: KimiEmulator) -> None:
    msgs = [SYSTEM, {"role": "user", "content": "hello"}]
    _usage(emulator, {"model": K2, "messages": msgs})
    assert _usage(emulator, {"model": K2, "messages": msgs})["cached_tokens"] > 0
    # Today the content prefix alone is the identity: another prompt_cache_key still hits.
    assert (
        _usage(emulator, {"model": K2, "messages": msgs, "prompt_cache_key": "s1"})["cached_tokens"]
        > 0
    )
    # Other model, other API key, changed tools: full miss.
    assert _usage(emulator, {"model": "kimi-k3", "messages": msgs})["cached_tokens"] == 0
    emulator.add_api_key("sk-other-key-abcdefgh")
    other = _usage(
        emulator, {"model": K2, "messages": msgs}, Authorization="Bearer sk-other-key-abcdefgh"
    )
    assert other["cached_tokens"] == 0
    assert _usage(emulator, {"model": K2, "messages": msgs, "tools": TOOLS})["cached_tokens"] == 0


def test_legacy_prefix_cache_is_partitioned_by_prompt_cache_key(
    legacy_emulator: KimiEmulator,
) -> None:
    emulator = legacy_emulator
    msgs = [SYSTEM, {"role": "user", "content": "hello"}]
    old = "kimi-k2-0905-preview"  # the legacy catalog still serves it
    _usage(emulator, {"model": old, "messages": msgs})
    assert (
        _usage(emulator, {"model": old, "messages": msgs, "prompt_cache_key": "s1"})[
            "cached_tokens"
        ]
        == 0
    )
    assert (
        _usage(emulator, {"model": old, "messages": msgs, "prompt_cache_key": "s1"})[
            "cached_tokens"
        ]
        > 0
    )


def test_dropping_reasoning_content_breaks_the_prefix(emulator: KimiEmulator) -> None:
    model = "kimi-k3"
    msgs: list[dict[str, Any]] = [SYSTEM, {"role": "user", "content": "@think 300\n@say a"}]
    reply = _chat(emulator, {"model": model, "messages": msgs}).json()["choices"][0]["message"]
    assert reply["reasoning_content"]
    keep = [*msgs, reply, {"role": "user", "content": "next"}]
    _usage(emulator, {"model": model, "messages": keep})
    again = _usage(emulator, {"model": model, "messages": keep})["cached_tokens"]
    stripped = [
        *msgs,
        {k: v for k, v in reply.items() if k != "reasoning_content"},
        {"role": "user", "content": "next"},
    ]
    hit = _usage(emulator, {"model": model, "messages": stripped})["cached_tokens"]
    assert hit < again
    assert hit == _floor256(TOK.count_messages(msgs) + 1)


def test_no_automatic_cache_for_explicit_models(legacy_emulator: KimiEmulator) -> None:
    emulator = legacy_emulator
    msgs = [SYSTEM, {"role": "user", "content": "hi"}]
    _usage(emulator, {"model": V1, "messages": msgs})
    assert _usage(emulator, {"model": V1, "messages": msgs})["cached_tokens"] == 0


def test_nested_cached_tokens_option(make_emulator: Any) -> None:
    emu = make_emulator(catalog="legacy", nested_cached_tokens=True)
    msgs = [SYSTEM, {"role": "user", "content": "hi"}]
    _usage(emu, {"model": K2, "messages": msgs})
    usage = _usage(emu, {"model": K2, "messages": msgs})
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["cached_tokens"] > 0


def test_prefix_cache_memory_is_bounded() -> None:
    cache = PrefixCache(block_size=2, max_blocks_per_partition=10, max_partitions=3)
    for i in range(5):
        cache.lookup_and_store(("m", "k", f"p{i}"), [str(j) for j in range(40)])
    assert cache.stored_blocks == 3 * 10
    # Oldest partitions were evicted: p0 misses, p4 hits its most recent blocks only.
    assert cache.lookup_and_store(("m", "k", "p0"), [str(j) for j in range(40)]) == 0


# ---------------------------------------------------------------- explicit cache API


def _caching(emu: KimiEmulator, method: str, path: str = "", **kw: Any) -> httpx.Response:
    return HTTP.request(method, f"{emu.base_url}/caching{path}", headers=emu.headers, **kw)


DOC = [
    {"role": "system", "content": "You answer questions about the document."},
    {"role": "user", "content": " ".join(f"fact{i} holds" for i in range(600))},
]


def _create(emu: KimiEmulator, **extra: Any) -> dict[str, Any]:
    body = {"model": "moonshot-v1", "messages": DOC, "tools": TOOLS, "ttl": 600, **extra}
    resp = _caching(emu, "POST", json=body)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def test_explicit_cache_lifecycle(legacy_emulator: KimiEmulator) -> None:
    emulator = legacy_emulator
    created = _create(
        emulator, name="doc", description="the doc", metadata={"session": "s1", "kind": "doc"}
    )
    assert created["id"].startswith("cache-")
    assert created["status"] == "ready"
    assert created["object"] == "context_cache.object"
    assert created["tokens"] == TOK.count_messages(DOC, TOOLS)
    assert created["expired_at"] - created["created_at"] == 600
    assert created["model"] == "moonshot-v1"
    assert (created["name"], created["description"]) == ("doc", "the doc")
    got = _caching(emulator, "GET", f"/{created['id']}").json()
    assert got["messages"] == DOC
    assert got["tools"] == TOOLS
    updated = _caching(
        emulator, "PUT", f"/{created['id']}", json={"ttl": 7200, "metadata": {"session": "s2"}}
    ).json()
    assert updated["metadata"] == {"session": "s2"}
    assert updated["expired_at"] >= created["created_at"] + 7200
    emulator.advance_time(7201)
    assert _caching(emulator, "GET", f"/{created['id']}").json()["status"] == "inactive"
    deleted = _caching(emulator, "DELETE", f"/{created['id']}").json()
    assert deleted["deleted"] is True
    assert deleted["id"] == created["id"]
    assert "object" in deleted
    assert _caching(emulator, "GET", f"/{created['id']}").status_code == 404


def test_explicit_cache_validation(legacy_emulator: KimiEmulator) -> None:
    emulator = legacy_emulator
    bad_model = _caching(emulator, "POST", json={"model": K2, "messages": DOC})
    assert bad_model.status_code == 400
    assert "moonshot-v1" in bad_model.json()["error"]["message"]
    no_msgs = _caching(emulator, "POST", json={"model": "moonshot-v1", "messages": []})
    assert no_msgs.status_code == 400
    past = _caching(
        emulator, "POST", json={"model": "moonshot-v1", "messages": DOC, "expired_at": 1}
    )
    assert past.status_code == 400
    other_key = "sk-other-key-abcdefgh"
    emulator.add_api_key(other_key)
    cache = _create(emulator)
    foreign = HTTP.get(
        f"{emulator.base_url}/caching/{cache['id']}",
        headers={"Authorization": f"Bearer {other_key}"},
    )
    assert foreign.status_code == 404


def test_explicit_cache_pending_then_ready(make_emulator: Any) -> None:
    emu = make_emulator(catalog="legacy", cache_ready_delay=5)
    cache = _create(emu)
    assert cache["status"] == "pending"
    emu.advance_time(5)
    assert _caching(emu, "GET", f"/{cache['id']}").json()["status"] == "ready"


def test_explicit_cache_list_filters_and_pages(legacy_emulator: KimiEmulator) -> None:
    emulator = legacy_emulator
    ids = [_create(emulator, metadata={"session": "a" if i % 2 else "b"})["id"] for i in range(5)]
    listed = _caching(emulator, "GET", params={"order": "asc", "limit": 2}).json()
    assert [c["id"] for c in listed["data"]] == ids[:2]
    assert listed["has_more"] is True
    after = _caching(emulator, "GET", params={"order": "asc", "after": ids[1]}).json()
    assert [c["id"] for c in after["data"]] == ids[2:]
    before = _caching(emulator, "GET", params={"order": "asc", "before": ids[2]}).json()
    assert [c["id"] for c in before["data"]] == ids[:2]
    desc = _caching(emulator, "GET").json()
    assert [c["id"] for c in desc["data"]] == ids[::-1]
    only_a = _caching(emulator, "GET", params={"metadata[session]": "a", "order": "asc"}).json()
    assert [c["id"] for c in only_a["data"]] == [ids[1], ids[3]]


def test_header_mode_hit_mismatch_expiry_and_reset_ttl(legacy_emulator: KimiEmulator) -> None:
    emulator = legacy_emulator
    cache = _create(emulator, ttl=100)
    question = {"role": "user", "content": "@say answer"}
    body = {"model": V1, "messages": [*DOC, question], "tools": TOOLS}
    hit = _usage(emulator, body, **{"X-Msh-Context-Cache": cache["id"]})
    assert hit["cached_tokens"] == cache["tokens"]
    assert hit["prompt_tokens"] == TOK.count_messages([*DOC, question], TOOLS)
    # Mismatch: changed prefix message, or different tools -> no hit, no error.
    changed = [DOC[0], {"role": "user", "content": "other text"}, question]
    assert (
        _usage(emulator, {**body, "messages": changed}, **{"X-Msh-Context-Cache": cache["id"]})[
            "cached_tokens"
        ]
        == 0
    )
    assert (
        _usage(emulator, {**body, "tools": None}, **{"X-Msh-Context-Cache": cache["id"]})[
            "cached_tokens"
        ]
        == 0
    )
    # Unknown cache id: no hit either.
    assert _usage(emulator, body, **{"X-Msh-Context-Cache": "cache-nope"})["cached_tokens"] == 0
    # Reset TTL keeps it alive past its original expiry.
    emulator.advance_time(90)
    _usage(
        emulator,
        body,
        **{"X-Msh-Context-Cache": cache["id"], "X-Msh-Context-Cache-Reset-TTL": "300"},
    )
    emulator.advance_time(200)
    assert _usage(emulator, body, **{"X-Msh-Context-Cache": cache["id"]})["cached_tokens"] > 0
    # Expired: no hit, status inactive.
    emulator.advance_time(301)
    assert _usage(emulator, body, **{"X-Msh-Context-Cache": cache["id"]})["cached_tokens"] == 0
    assert _caching(emulator, "GET", f"/{cache['id']}").json()["status"] == "inactive"


def test_message_mode_splices_cached_messages(legacy_emulator: KimiEmulator) -> None:
    emulator = legacy_emulator
    cache = _create(emulator)
    question = {"role": "user", "content": "@say from cache"}
    cache_msg = {"role": "cache", "content": f"cache_id={cache['id']};reset_ttl=3600"}
    resp = _chat(emulator, {"model": V1, "messages": [cache_msg, question]})
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["choices"][0]["message"]["content"] == "from cache"
    assert data["usage"]["cached_tokens"] == cache["tokens"]
    assert data["usage"]["prompt_tokens"] == TOK.count_messages([*DOC, question], TOOLS)
    # tools must be empty in message mode
    bad = _chat(emulator, {"model": V1, "messages": [cache_msg, question], "tools": TOOLS})
    assert bad.status_code == 400
    assert "tools must be empty" in bad.json()["error"]["message"]
    # by tag
    tag = HTTP.post(
        f"{emulator.base_url}/caching/refs/tags",
        headers=emulator.headers,
        json={"tag": "docs", "cache_id": cache["id"]},
    )
    assert tag.status_code == 200
    by_tag = _chat(
        emulator,
        {
            "model": V1,
            "messages": [{"role": "cache", "content": "tag=docs;reset_ttl=60"}, question],
        },
    )
    assert by_tag.json()["usage"]["cached_tokens"] == cache["tokens"]
    content = HTTP.get(
        f"{emulator.base_url}/caching/refs/tags/docs/content", headers=emulator.headers
    ).json()
    assert content["id"] == cache["id"]
    tags = HTTP.get(f"{emulator.base_url}/caching/refs/tags", headers=emulator.headers).json()
    assert [t["tag"] for t in tags["data"]] == ["docs"]
    assert (
        HTTP.delete(f"{emulator.base_url}/caching/refs/tags/docs", headers=emulator.headers).json()[
            "deleted"
        ]
        is True
    )
    # unknown cache id
    missing = _chat(
        emulator,
        {
            "model": V1,
            "messages": [{"role": "cache", "content": "cache_id=cache-missing"}, question],
        },
    )
    assert missing.status_code == 404
    # expired cache cannot be spliced
    emulator.advance_time(4000)
    expired = _chat(emulator, {"model": V1, "messages": [cache_msg, question]})
    assert expired.status_code == 400
    assert "inactive" in expired.json()["error"]["message"]


def test_explicit_cache_billing(legacy_emulator: KimiEmulator) -> None:
    emulator = legacy_emulator
    pricing = get_profile(V1).explicit_cache_pricing or ExplicitCachePricing()
    v1_price = get_profile(V1).pricing
    cache = _create(emulator, ttl=3600)
    tokens = cache["tokens"]
    question = {"role": "user", "content": "@say ok"}
    body = {"model": V1, "messages": [*DOC, question], "tools": TOOLS}
    usage = _usage(emulator, body, **{"X-Msh-Context-Cache": cache["id"]})
    emulator.advance_time(600)  # 10 minutes of storage
    ledger = emulator.ledger()
    kinds = [e.kind for e in ledger.entries]
    assert kinds[:3] == ["cache_create", "chat", "cache_call"]
    assert ledger.cost("CNY", kinds=["cache_create"]) == pytest.approx(
        tokens / 1e6 * pricing.creation_per_m
    )
    assert ledger.cost("CNY", kinds=["cache_call"]) == pytest.approx(pricing.per_hit_call)
    storage = ledger.cost("CNY", kinds=["cache_storage"])
    assert storage == pytest.approx(tokens / 1e6 * pricing.storage_per_m_per_minute * 10, rel=1e-3)
    # cached tokens are free; the rest at the normal input price
    uncached = usage["prompt_tokens"] - usage["cached_tokens"]
    expected = (
        uncached * v1_price.input_cache_miss + usage["completion_tokens"] * v1_price.output
    ) / 1e6
    assert ledger.cost("USD", kinds=["chat"]) == pytest.approx(expected)
    # Storage stops at deletion.
    _caching(emulator, "DELETE", f"/{cache['id']}")
    emulator.advance_time(6000)
    assert emulator.ledger().cost("CNY", kinds=["cache_storage"]) == pytest.approx(
        storage, rel=1e-3
    )
