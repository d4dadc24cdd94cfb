"""Session cost is the ledger's cost, explicit-cache charges included (real HTTP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from langchain_kimi_context import KimiChatModel, RollingSnapshotMemory
from langchain_kimi_context.caching import CachePolicy
from langchain_kimi_context.profiles import get_profile
from langchain_kimi_context.testing import KimiEmulator
from langchain_kimi_context.usage import call_cost

# The explicit Context Caching API belongs to the moonshot-v1 family (legacy catalog).
V1 = "moonshot-v1-128k"
SYSTEM_TEXT = "You are a meticulous coding agent. " + " ".join(
    f"Rule {i}: keep functions small and typed." for i in range(150)
)


def test_memory_usage_cost_includes_explicit_cache_hit_fees(
    legacy_emulator: KimiEmulator, tmp_path: Path
) -> None:
    emu = legacy_emulator
    model = KimiChatModel(
        model=V1,
        base_url=emu.base_url,
        api_key=emu.api_key,
        context_cache="explicit",
        cache_policy=CachePolicy(cost_guard=False, min_prefix_tokens=0),
        max_retries=0,
    )
    memory = RollingSnapshotMemory(model, db_path=tmp_path / "m.sqlite", sleep=lambda s: None)
    sid = memory.create_session(system=SYSTEM_TEXT)
    memory.chat(sid, "@reply 20")
    memory.chat(sid, "@reply 10")
    replies = [m for m in memory.log(sid) if m.type == "ai"]
    entries = [m.response_metadata["kimi_cache"] for m in replies]
    assert any(e["cache_read"] > 0 and e["cache_cost"] > 0 for e in entries)  # a paid hit
    charged = sum(call_cost(m.response_metadata) or 0.0 for m in replies)
    usage = memory.usage(sid)
    assert usage.calls == len(replies) == 2
    # The ledger's charge (hit fee, cached tokens free), not a recomputation from prices.
    assert usage.cost == pytest.approx(charged, rel=1e-6)
    prices = get_profile(V1).pricing.cost(
        prompt_tokens=usage.input_tokens,
        cached_tokens=usage.cached_tokens,
        output_tokens=usage.output_tokens,
    )
    assert usage.cost != pytest.approx(prices, rel=1e-6)
    model.close()
