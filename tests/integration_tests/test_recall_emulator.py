"""Recall over real HTTP: the model reads back what compaction and truncation took away.

A 40-turn session (each turn a large tool result carrying unique tokens) runs through
``create_kimi_agent(recall=True)`` against the emulator under a small window, so it is
compacted several times. The model (scripted with ``@call`` directives) then searches
for 20 randomly chosen early tokens and reads the hits back: every search finds the
message and every read returns its original text exactly. A tool result too large for
the window is truncated in view with a marker naming its ref, and is read back whole
through that ref. Another thread's ref is refused as not found.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from langchain_kimi_context import ContextPolicy, KimiChatModel
from langchain_kimi_context.agent import AgentSettings, RetrySettings, create_kimi_agent
from langchain_kimi_context.context.compaction import forget_learned_windows
from langchain_kimi_context.context.recall import RECALL_SUMMARY_NOTE
from langchain_kimi_context.testing import KimiEmulator

FAST = RetrySettings(initial_interval=0.001, max_interval=0.01, max_retry_after=0.01)
TURNS = 40
SEED = 18
BIG_DOC = 999


def token_of(n: int, which: int = 0) -> str:
    """The unique tokens planted in document ``n`` (two per document)."""
    return "tk" + hashlib.sha1(f"{n}:{which}".encode()).hexdigest()[:10]


def document(n: int) -> str:
    """A ~5,000-character tool result; common words everywhere, two unique tokens."""
    lines = [f"== report {n} =="]
    for j in range(60):
        lines.append(f"row {j}: status ok latency {(n * 7 + j) % 97} ms region eu-west shard {j}")
        if j == 20:
            lines.append(f"release marker {token_of(n, 0)} was deployed by the pipeline")
        if j == 45:
            lines.append(f"rollback key {token_of(n, 1)} kept for audit")
    if n == BIG_DOC:
        lines += [f"bulk line {k} " + "x" * 80 for k in range(700)]
        lines.append(f"final checksum {token_of(n, 2)}")
    return "\n".join(lines)


def fetch_report(n: int) -> str:
    """Fetch report number n."""
    return document(n)


def _agent(emu: KimiEmulator, tmp_path: Path, **kw: Any) -> Any:
    model = KimiChatModel(model="kimi-k2.6", base_url=emu.base_url, api_key=emu.api_key)
    policy = ContextPolicy(
        context_window=16_000,
        reserved_output_tokens=2_000,
        compact_keep_turns=2,
        clear_tool_results_keep=5,
    )
    return create_kimi_agent(
        model,
        [fetch_report],
        policy=policy,
        settings=AgentSettings(retry=FAST),
        db_path=tmp_path / "recall.sqlite",
        sleep=lambda s: None,
        recall=True,
        **kw,
    )


def _cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def _say(agent: Any, thread: str, text: str) -> list[Any]:
    out = agent.invoke({"messages": [HumanMessage(text)]}, _cfg(thread))
    return list(out["messages"])


def _results(log: list[Any], tool: str, since: int) -> list[ToolMessage]:
    return [m for m in log[since:] if isinstance(m, ToolMessage) and m.name == tool]


def _calls(agent: Any, tool: str, calls: list[dict[str, Any]]) -> list[ToolMessage]:
    """One turn in thread "main" in which the model calls ``tool`` in parallel."""
    script = "\n".join(f"@call {tool} {json.dumps(args)}" for args in calls)
    log = _say(agent, "main", f"Use {tool}.\n{script}\n@say done")
    start = max(i for i, m in enumerate(log) if isinstance(m, HumanMessage))
    results = _results(log, tool, start)
    assert len(results) == len(calls)
    return results


def _page_text(result: ToolMessage) -> str:
    header, _, text = str(result.content).partition("\n")
    assert header.startswith("[read_history "), result.content
    return text


@pytest.fixture(autouse=True)
def _forget_learned_windows() -> Any:
    yield
    forget_learned_windows()


def test_forty_turn_session_recalls_compacted_and_truncated_results_over_http(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    agent = _agent(emulator, tmp_path)
    for n in range(1, TURNS + 1):
        _say(agent, "main", f'Fetch report {n}.\n@call fetch_report {{"n": {n}}}\n@say ok {n}')
    state = agent.get_state(_cfg("main")).values
    records = state["compactions"]
    summaries = [r for r in records if r.get("summary")]
    assert len(records) >= 5, f"expected several compactions, got {len(records)}"
    assert len(summaries) >= 2  # the second summary folded the first in
    for record in summaries:  # every summary ends with the note, once (never folded in)
        assert str(record["summary"]["content"]).endswith(RECALL_SUMMARY_NOTE)
        assert str(record["summary"]["content"]).count(RECALL_SUMMARY_NOTE) == 1
    # the record keeps the refs of the span it summarised
    summarized = set(
        summaries[-1]["summary"]["additional_kwargs"]["kimi_context"]["summarized_ids"]
    )
    log = list(state["messages"])
    originals = {
        m.id: m.content for m in log if isinstance(m, ToolMessage) and m.name == "fetch_report"
    }
    assert len(originals) == TURNS

    rng = random.Random(SEED)
    chosen = rng.sample(range(1, TURNS // 2 + 6), 20)  # early reports
    wanted = {n: token_of(n, rng.randrange(2)) for n in chosen}
    last_sent = json.dumps(emulator.chat_requests[-1].body["messages"])
    assert not any(tok in last_sent for tok in wanted.values()), "early reports still in view"

    # the model searches (5 parallel calls per turn) ...
    found: dict[int, str] = {}
    for picks in (chosen[i : i + 5] for i in range(0, 20, 5)):
        args = [{"query": wanted[n], "limit": 3} for n in picks]
        for n, result in zip(picks, _calls(agent, "search_history", args), strict=True):
            refs = re.findall(r"ref='([^']+)'", str(result.content))
            # first the report (out of view); the user line naming the token is in view
            first = refs[0].split("#")[0]
            assert first in originals, result.content
            assert wanted[n] in originals[first]
            assert wanted[n] in str(result.content)  # the excerpt shows it
            assert not any(r.split("#")[0] in originals for r in refs[1:])
            found[n] = first
    assert len(found) == 20
    assert set(found.values()) & summarized  # hits reach into summarised spans

    # ... and reads every hit back, character for character
    for picks in (chosen[i : i + 5] for i in range(0, 20, 5)):
        args = [{"ref": found[n], "length": 19_000} for n in picks]
        pages = _calls(agent, "read_history", args)
        assert [_page_text(p) for p in pages] == [originals[found[n]] for n in picks]

    # a result too large for the window: truncated in view, its marker names the ref
    log = _say(agent, "main", f'Fetch the big one.\n@call fetch_report {{"n": {BIG_DOC}}}\n@say ok')
    big = next(m for m in reversed(log) if isinstance(m, ToolMessage) and m.name == "fetch_report")
    assert big.content == document(BIG_DOC)
    assert len(big.content) > 60_000
    sent = [
        str(m.get("content"))
        for r in emulator.chat_requests
        for m in r.body["messages"]
        if m.get("role") == "tool" and "final checksum" not in str(m.get("content"))
    ]
    markers = [c for c in sent if "characters removed" in c and f"'{big.id}'" in c]
    assert markers, "the truncated result's marker names no ref"
    ref = re.search(r"read_history\('([^']+)'\)", markers[-1])
    assert ref is not None
    assert ref.group(1) == big.id
    args = [
        {"ref": ref.group(1), "start": s, "length": 15_000}
        for s in range(0, len(big.content), 15_000)
    ]
    pages = _calls(agent, "read_history", args)
    assert "".join(_page_text(p) for p in pages) == document(BIG_DOC)

    # recall never leaves the session: another thread cannot read this one's refs
    foreign = found[chosen[0]]
    other = _say(
        agent,
        "other",
        f'Try.\n@call read_history {{"ref": "{foreign}"}}\n'
        f'@call search_history {{"query": "{wanted[chosen[0]]}"}}\n@say tried',
    )
    read, search = _results(other, "read_history", 0)[0], _results(other, "search_history", 0)[0]
    assert str(read.content).startswith("Not found:")
    assert "not found" in str(read.content)
    hit_ids = {r.split("#")[0] for r in re.findall(r"ref='([^']+)'", str(search.content))}
    assert hit_ids
    assert hit_ids <= {m.id for m in other}
    assert not hit_ids & set(originals)
    assert isinstance(other[-1], AIMessage)
