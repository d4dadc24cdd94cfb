"""The recall index (context/recall.py) and the recall tools (agent/recall_tools.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.prebuilt import ToolRuntime
from langgraph.store.memory import InMemoryStore

from langchain_kimi_context import ContextPolicy
from langchain_kimi_context.agent.recall_tools import (
    COMPACT_REQUEST,
    RecallCache,
    recall_tools,
)
from langchain_kimi_context.agent.tools import ToolRunner
from langchain_kimi_context.context.compaction import compact
from langchain_kimi_context.context.compaction.structural import ClearToolResults
from langchain_kimi_context.context.recall import (
    PASSAGE_CHARS,
    RecallIndex,
    RecallRefError,
    parse_ref,
    tokenize,
)
from langchain_kimi_context.context.truncation import truncate_tool_results


def _call(name: str, cid: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": cid}


def _session(n: int = 6, size: int = 3_000) -> list[BaseMessage]:
    log: list[BaseMessage] = []
    for i in range(n):
        body = "\n".join(f"line {j} of report {i}: all good" for j in range(size // 30))
        body += f"\nunique marker zq{i}x{i * 7} at the end"
        log += [
            HumanMessage(f"fetch report {i}", id=f"h{i}"),
            AIMessage("", id=f"a{i}", tool_calls=[_call("fetch", f"c{i}", n=i)]),
            ToolMessage(body, tool_call_id=f"c{i}", id=f"t{i}", name="fetch"),
            AIMessage(f"report {i} read", id=f"r{i}"),
        ]
    return log


def test_tokenize_splits_identifiers_and_cjk() -> None:
    assert tokenize("ERR_TIMEOUT at db.py:42") == ["err", "timeout", "at", "db", "py", "42"]
    assert tokenize("连接超时 timeout") == ["连接", "接超", "超时", "timeout"]
    assert tokenize("   ") == []


def test_search_finds_the_message_and_read_returns_it_exactly() -> None:
    log = _session()
    index = RecallIndex()
    assert index.update(log) == len(log)
    hits = index.search("zq3x21")
    assert [h.message_id for h in hits] == ["t3"]
    hit = hits[0]
    assert hit.tool_name == "fetch"
    assert "zq3x21" in hit.excerpt
    assert hit.end - hit.start <= PASSAGE_CHARS
    # the span ref reads exactly its span; the bare id reads the message, paged
    original = str(log[14].content)
    assert log[14].id == "t3"
    assert index.read(hit.ref).text == original[hit.start : hit.end]
    pages, start = [], 0
    while True:
        page = index.read("t3", start, 1_000)
        pages.append(page.text)
        if page.next_start is None:
            break
        start = page.next_start
    assert "".join(pages) == original
    assert len(pages) > 2


def test_search_ranks_the_verbatim_phrase_first_and_dedupes_per_message() -> None:
    log = [
        HumanMessage("the cache uses redis and the queue uses kafka", id="u1"),
        ToolMessage("error: connection refused by redis", tool_call_id="x", id="t1"),
        ToolMessage("redis redis redis connection ok", tool_call_id="y", id="t2"),
    ]
    index = RecallIndex()
    index.update(log)
    hits = index.search("connection refused")
    assert hits[0].message_id == "t1"
    assert len({h.message_id for h in index.search("redis", limit=10)}) == 3
    assert index.search("redis", limit=1)[0].message_id in {"t1", "t2", "u1"}
    assert index.search("nothing-like-this") == []
    assert index.search("redis", exclude_ids={"t1", "t2"})[0].message_id == "u1"
    with pytest.raises(ValueError, match="limit"):
        index.search("redis", limit=0)


def test_tool_calls_are_searchable_but_recall_results_are_not() -> None:
    log = [
        AIMessage("", id="a1", tool_calls=[_call("read_file", "c1", path="src/deep/conf.py")]),
        ToolMessage("x = 1", tool_call_id="c1", id="t1"),
        AIMessage("", id="a2", tool_calls=[_call("search_history", "c2", query="conf.py")]),
        ToolMessage("1 match: ref='a1' conf.py", tool_call_id="c2", id="t2"),
    ]
    index = RecallIndex()
    index.update(log)
    assert [h.message_id for h in index.search("conf.py")] == ["a1"]
    assert "[tool call] read_file" in index.text_of("a1")
    # recall results stay readable (a marker may name them)
    assert index.read("t2").text == "1 match: ref='a1' conf.py"


def test_index_grows_incrementally_and_rebuilds_on_a_different_log() -> None:
    log = _session(3)
    index = RecallIndex()
    index.update(log[:5])
    assert index.update(log[:5]) == 0
    assert index.update(log) == len(log) - 5
    assert index.search("zq2x14")[0].message_id == "t2"
    other = [HumanMessage("a different session about zq9", id="o1")]
    assert index.update(other) == 1  # not an extension: rebuilt from scratch
    assert index.message_ids == ("o1",)
    with pytest.raises(RecallRefError, match="not found"):
        index.read("t2")


def test_bad_refs_and_pages_are_clear_errors() -> None:
    index = RecallIndex()
    index.update([ToolMessage("abcdef", tool_call_id="c", id="t1")])
    assert parse_ref(" 't1#1-3' ") == ("t1", (1, 3))
    assert index.read("t1#1-3").text == "bc"
    assert index.read("t1#1-3", start=1).text == "c"
    with pytest.raises(RecallRefError, match="outside"):
        index.read("t1#2-99")
    with pytest.raises(RecallRefError, match="No message 'nope'"):
        index.read("nope")
    with pytest.raises(ValueError, match="start"):
        index.read("t1", start=-1)
    with pytest.raises(ValueError, match="length"):
        index.read("t1", length=0)


def test_truncation_marker_names_the_ref_only_with_recall() -> None:
    log = [
        AIMessage("", id="a", tool_calls=[_call("cat", "c1")]),
        ToolMessage("y" * 60_000, tool_call_id="c1", id="t-big"),
    ]
    plain, _ = truncate_tool_results(log, ContextPolicy(context_window=262_144))
    assert "read_history" not in str(plain[1].content)
    out, report = truncate_tool_results(log, ContextPolicy(context_window=262_144, recall=True))
    text = str(out[1].content)
    removed = report.truncated[0].removed_chars
    assert f"{removed:,} of 60,000 characters removed" in text
    assert "read_history('t-big') returns the whole result" in text
    kept = report.truncated[0].kept_chars
    assert f"read_history('t-big', start={kept}) returns the rest" in text
    # what the marker promises holds: the index reads the rest back exactly
    index = RecallIndex()
    index.update(log)
    assert text[:kept] + index.read("t-big", kept, 60_000).text == log[1].content


def test_cleared_tool_results_name_their_ref_with_recall() -> None:
    log = _session(5)
    policy = ContextPolicy(context_window=100_000, clear_tool_results_keep=1, recall=True)
    view, _ = compact(log, policy, strategy=ClearToolResults(), target_tokens=1)
    cleared = [m for m in view if isinstance(m, ToolMessage) and "cleared" in str(m.content)]
    assert cleared
    assert all(f"read_history({m.id!r}) returns it" in str(m.content) for m in cleared)


# ----------------------------------------------------------------------------- tools
def _runtime(log: list[BaseMessage], thread: str | None = "t1", **state: Any) -> ToolRuntime:
    conf = {"configurable": {"thread_id": thread}} if thread else {}
    return ToolRuntime(
        state={"messages": log, **state},
        context=None,
        config=conf,  # type: ignore[arg-type]
        stream_writer=lambda _c: None,
        tool_call_id="call-1",
        store=None,
    )


def _invoke(tool: Any, runtime: ToolRuntime, **args: Any) -> Any:
    return tool.invoke({**args, "runtime": runtime})


def test_tools_hide_the_runtime_from_the_model() -> None:
    tools = {t.name: t for t in recall_tools(compact_tool=True)}
    assert sorted(tools) == ["compact_context", "read_history", "search_history"]
    for tool in tools.values():
        assert "runtime" not in tool.tool_call_schema.model_json_schema()["properties"]


def test_threads_never_see_each_others_history() -> None:
    search, read = recall_tools(cache=RecallCache())
    a = _session(3)
    b = [HumanMessage("thread b talks about zq1x7 too", id="b1")]
    out_a = _invoke(search, _runtime(a, "A"), query="zq1x7")
    assert "ref='t1#" in out_a
    out_b = _invoke(search, _runtime(b, "B"), query="zq1x7")
    assert "ref='b1#" in out_b
    assert "t1" not in out_b
    refused = _invoke(read, _runtime(b, "B"), ref="t1")
    assert refused.startswith("Not found:")
    # same thread id, another log (e.g. another graph): the index follows the log given
    assert _invoke(read, _runtime(b, "A"), ref="t1").startswith("Not found:")


def test_concurrent_threads_get_their_own_answers() -> None:
    search, _ = recall_tools(cache=RecallCache(size=2))
    logs = {f"T{i}": [HumanMessage(f"secret{i} lives here", id=f"m{i}")] for i in range(8)}
    errors: list[str] = []

    def worker(thread: str) -> None:
        for _ in range(30):
            for other in logs:
                out = _invoke(search, _runtime(logs[thread], thread), query=f"secret{other[1:]}")
                expect_hit = other == thread
                if expect_hit != ("ref='" in out):
                    errors.append(f"{thread} asked {other}: {out}")

    workers = [threading.Thread(target=worker, args=(t,)) for t in logs]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []


def test_read_pages_are_capped_and_chain() -> None:
    _, read = recall_tools(max_read_chars=1_000, cache=RecallCache())
    log = _session(2)
    first = _invoke(read, _runtime(log), ref="t1", length=50_000)
    header, _, text = first.partition("\n")
    assert len(text) == 1_000
    assert "start=1000" in header
    second = _invoke(read, _runtime(log), ref="t1", start=1_000, length=50_000)
    assert (text + second.partition("\n")[2]).startswith(str(log[6].content)[:2_000])


def test_compact_context_is_refused_when_the_context_is_small() -> None:
    policy = ContextPolicy(context_window=20_000)
    (tool,) = [t for t in recall_tools(compact_tool=True, policy=policy) if t.name.startswith("c")]
    small = tool.invoke(
        {"type": "tool_call", "name": tool.name, "id": "c9", "args": {"runtime": _runtime([])}}
    )
    assert small.content.startswith("Not compacted: the context is already small")
    assert not small.artifact
    big_log = _session(8, size=6_000)
    big = tool.invoke(
        {
            "type": "tool_call",
            "name": tool.name,
            "id": "c9",
            "args": {"runtime": _runtime(big_log)},
        }
    )
    assert big.content.startswith("Compaction requested")
    assert big.artifact == {COMPACT_REQUEST: True}
    assert big.tool_call_id == "call-1"


def test_semantic_store_hits_are_fused_in() -> None:
    # a toy embedding: 1 on the axis of a concept word, so "database" finds "postgres"
    concepts = [("postgres", "database", "sql"), ("paris", "france", "city")]

    def embed(texts: list[str]) -> list[list[float]]:
        return [[float(any(w in t.lower() for w in words)) for words in concepts] for t in texts]

    store = InMemoryStore(index={"dims": 2, "embed": embed, "fields": ["text"]})
    search, _ = recall_tools(store=store, cache=RecallCache())
    log = [
        ToolMessage("we run postgres 16 in production", tool_call_id="c", id="t1"),
        ToolMessage("the office is in paris", tool_call_id="d", id="t2"),
    ]
    out = _invoke(search, _runtime(log, "S"), query="which database")
    assert "ref='t1#" in out  # no keyword in common: found by the store
    assert store.search(("kimi_recall", "S|"), query="x")  # namespaced by thread


def test_tool_runner_injects_the_runtime_and_ignores_a_forged_one() -> None:
    search, _ = recall_tools(cache=RecallCache())
    runner = ToolRunner([search])
    log: list[BaseMessage] = [HumanMessage("zebra facts", id="u")]
    call = _call("search_history", "s1", query="zebra", runtime="forged")
    ai = AIMessage("", id="a", tool_calls=[call])
    results, report = runner.run(
        ai, [*log, ai], state={"messages": [*log, ai]}, config={"configurable": {}}
    )
    assert report.errors == {}
    assert "ref='u#0-11'" in str(results[0].content)


def test_semantic_store_follows_a_rebuilt_index() -> None:
    store = InMemoryStore(index={"dims": 1, "embed": lambda texts: [[1.0] for _ in texts]})
    search, _ = recall_tools(store=store, cache=RecallCache())
    first = [ToolMessage("alpha report", tool_call_id="c", id="old")]
    _invoke(search, _runtime(first, "R"), query="alpha")
    second = [ToolMessage("beta report", tool_call_id="c", id="new")]  # same thread, new log
    out = _invoke(search, _runtime(second, "R"), query="anything")
    assert "ref='new#" in out
    assert "old" not in out
    assert [i.key for i in store.search(("kimi_recall", "R|"), limit=10)] == ["new#0-11"]


def test_head_tail_marker_points_at_the_removed_middle() -> None:
    text = "\n".join(f"line {i}" for i in range(8_000)) + "\nTraceback: boom"
    log = [
        AIMessage("", id="a", tool_calls=[_call("run", "c1")]),
        ToolMessage(text, tool_call_id="c1", id="t-run"),
    ]
    out, report = truncate_tool_results(log, ContextPolicy(context_window=16_000, recall=True))
    cut = report.truncated[0]
    assert cut.mode == "head_tail"
    shown = str(out[1].content)
    head, _, rest = shown.partition("\n\n[... ")
    marker, _, tail = rest.partition(" ...]\n\n")
    assert f"read_history('t-run', start={len(head)}) returns them" in marker
    index = RecallIndex()
    index.update(log)
    middle = index.read("t-run", len(head), cut.removed_chars).text
    assert head + middle + tail == text


def test_passages_never_split_a_word() -> None:
    blob = ",".join(f"k{i:04d}v{i * 7919 % 10007:05d}" for i in range(400))  # no spaces
    index = RecallIndex()
    index.update([ToolMessage(blob, tool_call_id="c", id="j")])
    for i in range(400):
        word = f"k{i:04d}v{i * 7919 % 10007:05d}"
        hit = index.search(word)[0]
        assert word in index.read(hit.ref).text
