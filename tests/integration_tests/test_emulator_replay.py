"""A long scripted agentic session replays exactly (same replies, ids, usage, bill)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from langchain_kimi_context.testing import KimiEmulator

K2 = "kimi-k3"
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("read_file", "run_tests", "edit_file")
]
SCRIPT = (
    "Fix the failing test.\n"
    '@call read_file {"path": "a.py"}\n@call read_file {"path": "b.py"}\n@then\n'
    '@calls 12 run_tests {"round": "{i}"}\n'
    "@call edit_file {}\n@think 40\n@reply 120"
)


def _run_session(emu: KimiEmulator) -> list[Any]:
    msgs: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a careful coding agent. " * 50},
        {"role": "user", "content": SCRIPT},
    ]
    transcript: list[Any] = []
    with httpx.Client(timeout=30) as client:
        for _ in range(40):
            data = client.post(
                f"{emu.base_url}/chat/completions",
                headers=emu.headers,
                json={"model": K2, "messages": msgs, "tools": TOOLS},
            ).json()
            message = data["choices"][0]["message"]
            transcript.append((message, data["usage"]))
            msgs.append(message)
            calls = message.get("tool_calls") or []
            if not calls:
                break
            for call in calls:
                args = json.loads(call["function"]["arguments"])
                msgs.append({"role": "tool", "tool_call_id": call["id"], "content": f"ok {args}"})
    return transcript


def test_scripted_session_replays_exactly(make_emulator: Any) -> None:
    first_emu, second_emu = make_emulator(), make_emulator()
    first, second = _run_session(first_emu), _run_session(second_emu)
    assert first == second
    # 1 parallel step + 12 sequential steps + the edit step (@call after @calls is a
    # new step) + the final reply.
    assert len(first) == 15
    ids = [c["id"] for m, _ in first for c in m.get("tool_calls") or []]
    assert ids[:3] == ["functions.read_file:0", "functions.read_file:1", "functions.run_tests:2"]
    assert ids[-1] == "functions.edit_file:14"
    final, usage = first[-1]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 40
    assert usage["completion_tokens"] == 160
    assert final["reasoning_content"]
    # Growing conversation: every later call hits the prefix cache.
    assert all(u["cached_tokens"] > 0 for _, u in first[2:])
    assert first_emu.ledger().cost() == second_emu.ledger().cost()
