"""create_kimi_agent against the Kimi emulator over real HTTP."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.types import Command

from langchain_kimi_context import ContextPolicy, KimiChatModel, prepare_context
from langchain_kimi_context.agent import (
    AgentSettings,
    KimiMaxStepsExceededError,
    RetrySettings,
    create_kimi_agent,
    open_sqlite_checkpointer,
)
from langchain_kimi_context.caching import canonicalize_messages
from langchain_kimi_context.context.compaction import forget_learned_windows
from langchain_kimi_context.errors import (
    KimiAuthenticationError,
    KimiConfigurationError,
    KimiQuotaExceededError,
)
from langchain_kimi_context.testing import KimiEmulator, directive_values
from langchain_kimi_context.tokens import default_token_counter
from tests.unit_tests.test_pipeline_properties import to_wire


@pytest.fixture(autouse=True)
def _forget_learned_windows() -> Iterator[None]:
    """Overflow errors teach a process-wide window table; keep other tests unaffected."""
    yield
    forget_learned_windows()


FAST = RetrySettings(initial_interval=0.001, max_interval=0.01, max_retry_after=0.01)


def read_file(path: str) -> str:
    """Read a file from the workspace."""
    if path.startswith("missing"):
        raise FileNotFoundError(f"{path} does not exist")
    return f"# {path}\n" + "\n".join(f"line {i} of {path}" for i in range(20))


def _agent(emu: KimiEmulator, tmp_path: Path, **kw: Any) -> Any:
    model = KimiChatModel(base_url=emu.base_url, api_key=emu.api_key)
    settings = kw.pop("settings", AgentSettings(retry=FAST))
    return create_kimi_agent(
        model,
        kw.pop("tools", [read_file]),
        db_path=tmp_path / "a.sqlite",
        settings=settings,
        sleep=lambda s: None,
        **kw,
    )


def _cfg(thread: str = "t") -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def _chat_requests(emu: KimiEmulator) -> list[Any]:
    return [r for r in emu.requests if r.path.endswith("/chat/completions")]


def assert_log_consistent(messages: list[Any]) -> None:
    """No duplicated message, every tool call answered once, no orphan tool result."""
    ids = [m.id for m in messages]
    assert len(ids) == len(set(ids)), "duplicated message ids"
    open_calls: set[str] = set()
    answered: set[str] = set()
    for m in messages:
        if isinstance(m, AIMessage):
            assert not open_calls, f"tool calls left unanswered: {open_calls}"
            open_calls = {c["id"] for c in m.tool_calls}
        elif isinstance(m, ToolMessage):
            assert m.tool_call_id in open_calls, f"orphan tool result {m.tool_call_id}"
            assert m.tool_call_id not in answered
            open_calls.discard(m.tool_call_id)
            answered.add(m.tool_call_id)
        elif isinstance(m, HumanMessage):
            assert not open_calls, f"tool calls left unanswered: {open_calls}"


def test_full_agent_loop_with_parallel_tools_and_tool_errors(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    agent = _agent(emulator, tmp_path, system_prompt="You are a careful coding agent.")
    script = (
        'Look at the code.\n@call read_file {"path": "a.py"}\n@call read_file {"path": "b.py"}'
        '\n@then\n@call read_file {"path": "missing.py"}'
    )
    out = agent.invoke({"messages": [HumanMessage(script)]}, _cfg())
    msgs = out["messages"]
    assert [m.type for m in msgs] == ["human", "ai", "tool", "tool", "ai", "tool", "ai"]
    assert "line 3 of a.py" in msgs[2].content
    assert "b.py" in msgs[3].content
    assert msgs[5].status == "error"
    assert "FileNotFoundError" in msgs[5].content
    assert msgs[-1].content.startswith("Tool results:")
    assert_log_consistent(msgs)
    # what went over the wire: system prompt first, results paired with their calls
    reqs = _chat_requests(emulator)
    assert len(reqs) == 3
    assert all(r.status == 200 for r in reqs)
    sent = reqs[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "You are a careful coding agent."}
    assert [m["role"] for m in sent[1:]] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
        "tool",
    ]
    assert reqs[0].body["tools"][0]["function"]["name"] == "read_file"
    # the system prompt is sent, not stored in the log
    assert all(m.type != "system" for m in msgs)
    assert out["usage"]["calls"] == 3
    assert out["usage"]["input_tokens"] == sum(r.usage["prompt_tokens"] for r in reqs)
    assert out["turn"]["steps"] == 3
    # a second turn continues the same thread
    out2 = agent.invoke({"messages": [HumanMessage("@say done")]}, _cfg())
    assert out2["messages"][-1].content == "done"
    assert out2["messages"][: len(msgs)] == msgs


@pytest.mark.filterwarnings("ignore::langchain_kimi_context.context.ContextWindowWarning")
def test_each_node_effect_is_visible_in_the_checkpoint_history(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    big = 60_000

    def dump(name: str) -> str:
        """Dump a big log."""
        return f"{name}: " + "0123456789abcdef\n" * (big // 17)

    policy = ContextPolicy(
        history_limit=2,
        tool_result_truncation="always",
        context_window=24_000,
        compact_trigger_ratio=0.4,
        compact_reserve_tokens=None,
        compact_keep_turns=1,
    )
    # every node checkpoint of every turn kept (finished turns are pruned by default)
    saver = open_sqlite_checkpointer(tmp_path / "full.sqlite", prune_turns=False)
    agent = _agent(emulator, tmp_path, tools=[dump], policy=policy, checkpointer=saver)
    cfg = _cfg("nodes")
    agent.invoke({"messages": [HumanMessage("@say first turn")]}, cfg)
    agent.invoke({"messages": [HumanMessage("@say second turn")]}, cfg)
    # a dangling tool call left in the log (e.g. by an older crash) for repair to fix
    agent.update_state(
        cfg,
        {
            "messages": [
                AIMessage(
                    "",
                    id="dangling",
                    additional_kwargs={"reasoning_content": "let me dump"},
                    tool_calls=[{"name": "dump", "args": {}, "id": "lost:0"}],
                )
            ]
        },
    )
    agent.invoke({"messages": [HumanMessage('@call dump {"name": "x"}')]}, cfg)
    turn3 = len(list(agent.get_state_history(cfg)))
    agent.invoke({"messages": [HumanMessage("@say fourth turn")]}, cfg)

    history = list(agent.get_state_history(cfg))[::-1][:turn3]  # oldest first, to turn 3
    ran: list[tuple[str, dict[str, Any]]] = []
    for before, after in itertools.pairwise(history):
        for node in before.next:
            ran.append((node, after.values.get("reports", {}).get(node, {})))
    nodes = [n for n, _ in ran]
    # the second turn's path through the graph, every node a checkpoint
    start = len(nodes) - 1 - nodes[::-1].index("__start__")
    turn = nodes[start + 1 :]
    pipeline = [
        "preflight",
        "sanitize",
        "repair_pairing",
        "limit_turns",
        "repair_after_limit",
        "truncate_results",
    ]
    assert turn[:8] == [*pipeline, "call_model", "tools"]
    assert turn[-2:] == ["call_model", "compact"]
    assert turn.count("call_model") == 2
    reports = dict(ran)  # last report of each node in the history
    assert reports["preflight"]["window"] == 24_000
    # history_limit=2 dropped the first turn from the view
    assert reports["limit_turns"]["changed"]
    assert reports["limit_turns"]["dropped_messages"]
    # the dangling call got a synthetic result in the view
    repairs = [r for n, r in ran if n == "repair_pairing" and r.get("changed")]
    assert any(r["added_synthetic_results"] for r in repairs)
    # the repair after the limit runs only when the limit cut, and says so when it did not
    seen_after_limit = set()
    for (first, limit), (second, after) in itertools.pairwise(ran):
        if second == "repair_after_limit":
            assert first == "limit_turns"
            assert after.get("ran", True) is bool(limit["changed"])
            seen_after_limit.add(bool(limit["changed"]))
    assert seen_after_limit == {True, False}
    assert reports["truncate_results"]["applied"]
    assert reports["truncate_results"]["truncated"]
    assert reports["tools"]["calls"] == 1
    assert reports["call_model"]["ok"] is True
    compact_reports = [r for n, r in ran if n == "compact"]
    # the trigger fired before the call; nothing older than the kept turn to compact yet
    assert compact_reports[-2]["phase"] == "before_call"
    assert compact_reports[-2]["trigger"] == "ratio"
    # turn 4: the big turn 3 is now old: the compaction node stores a record
    final = agent.get_state(cfg).values
    compacted = [
        h.values["reports"]["compact"]
        for h in agent.get_state_history(cfg)
        if h.values.get("reports", {}).get("compact", {}).get("changed")
    ]
    assert compacted
    assert compacted[0]["strategy"] == "llm_summary"
    (record,) = final["compactions"]
    assert record["summary"] is not None
    assert record["tokens_after"] < record["tokens_before"]
    assert record["snapshot_id"] in final["snapshots"]
    # the log itself is untouched: the full tool result is still there
    tool_msgs = [m for m in final["messages"] if isinstance(m, ToolMessage)]
    assert len(tool_msgs[-1].content) > big * 0.9
    # ...while the model saw the truncated one
    sent_tool = [
        m for r in _chat_requests(emulator) for m in r.body["messages"] if m["role"] == "tool"
    ]
    assert sent_tool
    assert max(len(m.get("content") or "") for m in sent_tool) < big // 2
    # and the summary replaced the old turns in what the model saw in turn 4
    last_sent = _chat_requests(emulator)[-1].body["messages"]
    assert last_sent[0]["role"] == "system"
    assert "compacted" in last_sent[0]["content"].lower()


@pytest.mark.parametrize(
    ("fault", "retried"),
    [
        ("rate_limit", True),
        ("overloaded", True),
        ("server_error", True),
        ("empty", True),
        ("cut", True),
        ("quota", False),
    ],
)
def test_retry_classification_over_http(
    emulator: KimiEmulator, tmp_path: Path, fault: str, retried: bool
) -> None:
    slept: list[float] = []
    model = KimiChatModel(base_url=emulator.base_url, api_key=emulator.api_key)
    agent = create_kimi_agent(
        model,
        [],
        db_path=tmp_path / "r.sqlite",
        settings=AgentSettings(retry=RetrySettings(jitter=0)),
        sleep=slept.append,
    )
    emulator.faults.add_from_dict({"kind": fault, "at": 1})
    if retried:
        out = agent.invoke({"messages": [HumanMessage("@say fine")]}, _cfg())
        assert out["messages"][-1].content == "fine"
        attempts = out["reports"]["call_model"]["retries"]
        assert len(attempts) == 1
        assert attempts[0]["retryable"]
        assert len(_chat_requests(emulator)) == 2
        assert slept
        assert slept[0] >= 1.0
    else:
        with pytest.raises(KimiQuotaExceededError):
            agent.invoke({"messages": [HumanMessage("@say fine")]}, _cfg())
        assert len(_chat_requests(emulator)) == 1
        assert slept == []


def test_timeouts_are_retried_and_auth_errors_are_not(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    model = KimiChatModel(base_url=emulator.base_url, api_key=emulator.api_key, timeout=0.3)
    agent = create_kimi_agent(
        model,
        [],
        db_path=tmp_path / "t.sqlite",
        settings=AgentSettings(retry=FAST),
        sleep=lambda s: None,
    )
    emulator.faults.slow(1.5, at=1)
    out = agent.invoke({"messages": [HumanMessage("@say late")]}, _cfg())
    assert out["messages"][-1].content == "late"
    assert (
        out["reports"]["call_model"]["retries"][0]["error_type"]
        in {
            "APITimeoutError",
            "ModelTimeoutError",
            "KimiTimeoutError",
            "TimeoutError",
        }
        or "imeout" in out["reports"]["call_model"]["retries"][0]["error_type"]
    )

    bad = KimiChatModel(base_url=emulator.base_url, api_key="sk-wrong")
    agent2 = create_kimi_agent(
        bad,
        [],
        db_path=tmp_path / "t2.sqlite",
        settings=AgentSettings(retry=FAST),
        sleep=lambda s: None,
    )
    before = len(_chat_requests(emulator))
    with pytest.raises(KimiAuthenticationError) as info:
        agent2.invoke({"messages": [HumanMessage("hi")]}, _cfg())
    assert "sk-wrong" not in str(info.value)
    assert len(_chat_requests(emulator)) == before + 1


def test_overflow_is_recovered_by_compaction_not_retried(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    agent = _agent(emulator, tmp_path)
    cfg = _cfg("ovf")
    for i in range(4):
        agent.invoke({"messages": [HumanMessage(f"turn {i}\n@reply 300")]}, cfg)
    emulator.faults.overflow(at=1)
    out = agent.invoke({"messages": [HumanMessage("@say recovered")]}, cfg)
    assert out["messages"][-1].content == "recovered"
    steps = out["reports"]["call_model"]["overflow_recovery"]
    assert steps[:3] == ["call", "overflow", "compact#1"]
    assert out["compactions"]
    reqs = _chat_requests(emulator)[-3:]
    assert reqs[0].status == 400  # the overflow
    assert "tools" not in reqs[1].body  # the summary request
    assert reqs[2].status == 200
    assert len(reqs[2].body["messages"]) < len(reqs[0].body["messages"])


def test_fault_injection_at_20_percent_over_30_turns_completes_every_turn(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    agent = _agent(emulator, tmp_path)
    cfg = _cfg("faulty")
    emulator.faults.server_error(rate=0.06, seed=11)
    emulator.faults.overloaded(rate=0.05, seed=12)
    emulator.faults.rate_limit(rate=0.04, seed=13, retry_after=0.01)
    emulator.faults.empty_reply(rate=0.03, seed=14)
    emulator.faults.add_from_dict({"kind": "cut", "rate": 0.03, "seed": 15})
    for turn in range(30):
        text = f"turn {turn}\n@reply 30"
        if turn % 3 == 0:
            text = f'turn {turn}\n@call read_file {{"path": "f{turn}.py"}}\n@reply 30'
        out = agent.invoke({"messages": [HumanMessage(text)]}, cfg)
        last = out["messages"][-1]
        assert isinstance(last, AIMessage)
        assert last.content
        assert not last.tool_calls
        assert "__interrupt__" not in out
    msgs = out["messages"]
    assert_log_consistent(msgs)
    assert sum(isinstance(m, HumanMessage) for m in msgs) == 30
    reqs = _chat_requests(emulator)
    failed = [r for r in reqs if r.fault]
    assert len(failed) / len(reqs) > 0.12  # the faults really fired
    assert Counter(r.fault for r in failed).keys() >= {"server_error", "overloaded"}


def test_consecutive_failures_interrupt_then_resume_continues(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    settings = AgentSettings(
        retry=RetrySettings(max_attempts=2, initial_interval=0.001), max_consecutive_failures=2
    )
    agent = _agent(emulator, tmp_path, settings=settings)
    cfg = _cfg("hitl")
    agent.invoke({"messages": [HumanMessage("@say warm")]}, cfg)
    emulator.faults.server_error(at=[1, 2, 3, 4])
    out = agent.invoke({"messages": [HumanMessage("@say after outage")]}, cfg)
    (intr,) = out["__interrupt__"]
    assert intr.value["reason"] == "consecutive_failures"
    assert intr.value["failed_steps"] == 2
    assert "KimiServerError x4" in intr.value["message"]
    assert "Command(resume=" in intr.value["message"]
    state = agent.get_state(cfg)
    assert state.next == ("call_model",)
    assert len(_chat_requests(emulator)) == 1 + 4
    # nothing was appended by the failed steps
    assert [m.content for m in state.values["messages"]][-1] == "@say after outage"

    out = agent.invoke(Command(resume="retry"), cfg)
    assert out["messages"][-1].content == "after outage"
    assert len(_chat_requests(emulator)) == 1 + 4 + 1
    assert_log_consistent(out["messages"])

    # abort path: the turn ends with a readable note instead of a model reply
    emulator.faults.server_error(at=[1, 2, 3, 4])
    out = agent.invoke({"messages": [HumanMessage("@say never")]}, cfg)
    assert "__interrupt__" in out
    out = agent.invoke(Command(resume="abort"), cfg)
    assert "stopped after repeated model-call failures" in out["messages"][-1].content
    assert out["turn"]["stop_reason"] == "aborted_after_failures"


def test_repeated_identical_tool_calls_stop_the_turn(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    settings = AgentSettings(retry=FAST, repeat_warn_at=2, repeat_stop_at=3)
    agent = _agent(emulator, tmp_path, settings=settings)
    out = agent.invoke(
        {"messages": [HumanMessage('@calls 6 read_file {"path": "same.py"}')]}, _cfg("loop")
    )
    tool_msgs = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert len(tool_msgs) == 3
    assert "warning: identical call repeated 2 times" in tool_msgs[1].content
    assert tool_msgs[2].status == "error"
    assert "Not executed" in tool_msgs[2].content
    assert out["turn"]["stop_reason"] == "repeated_tool_call"
    assert out["messages"][-1].content.startswith("[Stopped: the tool call read_file")
    assert len(_chat_requests(emulator)) == 3
    assert_log_consistent(out["messages"])


def test_max_steps_per_turn_is_a_clear_error(emulator: KimiEmulator, tmp_path: Path) -> None:
    settings = AgentSettings(retry=FAST, max_steps_per_turn=3)
    agent = _agent(emulator, tmp_path, settings=settings)
    cfg = _cfg("steps")
    with pytest.raises(KimiMaxStepsExceededError, match="max_steps_per_turn=3"):
        agent.invoke({"messages": [HumanMessage('@calls 10 read_file {"path": "f{i}.py"}')]}, cfg)
    assert len(_chat_requests(emulator)) == 3
    # the thread is usable afterwards: a new message starts a new turn
    out = agent.invoke({"messages": [HumanMessage("@say ok")]}, cfg)
    assert out["messages"][-1].content == "ok"
    assert_log_consistent(out["messages"])


def test_tool_hint_directive_roundtrip(emulator: KimiEmulator, tmp_path: Path) -> None:
    seen: list[str] = []

    def sized(n: int) -> str:
        """Return n characters."""
        seen.append(str(n))
        return "y" * n

    agent = _agent(emulator, tmp_path, tools=[sized])
    text = '@tool_result_chars 500\n@call sized {"n": 500}'
    assert directive_values(text, "tool_result_chars") == ["500"]
    out = agent.invoke({"messages": [HumanMessage(text)]}, _cfg("hint"))
    assert seen == ["500"]
    assert len(out["messages"][2].content) == 500
    body = json.dumps(_chat_requests(emulator)[-1].body)
    assert "y" * 500 in body


async def test_ainvoke_on_the_default_sqlite_checkpointer(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    agent = _agent(emulator, tmp_path)
    cfg = _cfg("async")
    out = await agent.ainvoke(
        {"messages": [HumanMessage('@call read_file {"path": "a.py"}\n@say done')]}, cfg
    )
    assert out["messages"][-1].content == "done"
    assert_log_consistent(out["messages"])
    state = await agent.aget_state(cfg)
    assert [m.id for m in state.values["messages"]] == [m.id for m in out["messages"]]
    # the sync API sees the same thread
    assert agent.get_state(cfg).values["messages"] == state.values["messages"]


@pytest.mark.filterwarnings("ignore::langchain_kimi_context.context.ContextWindowWarning")
def test_the_request_body_is_prepare_context_of_the_view(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    # One pipeline: what the agent sends is exactly prepare_context(view), converted the
    # way the chat model converts. The history has a user message typed while a tool
    # ran (inside the tool-call span): repaired BEFORE the limit, it survives (merged
    # into the next user turn) and the whole tool span is kept; a big result is cut.
    policy = ContextPolicy(history_limit=2, tool_result_truncation="always")
    prompt = "You are a careful coding agent."
    agent = _agent(emulator, tmp_path, policy=policy, system_prompt=prompt)
    call = {"id": "read_file:0", "name": "read_file", "args": {"path": "a.py"}}
    big = "\n".join(f"line {i} of a.py: " + "x" * 40 for i in range(1_500))  # ~80K chars
    history = [
        HumanMessage("read a.py", id="u1"),
        AIMessage("", tool_calls=[call], id="a1", additional_kwargs={"reasoning_content": "r"}),
        HumanMessage("only the imports", id="u2"),  # typed while the tool ran
        ToolMessage(big, tool_call_id="read_file:0", id="t1"),
        HumanMessage("@say done", id="u3"),
    ]
    out = agent.invoke({"messages": history}, _cfg("one-pipeline"))
    assert out["messages"][-1].content == "done"
    (request,) = _chat_requests(emulator)
    sent = request.body["messages"]

    log = out["messages"][:-1]  # the log as it was when the model was called
    assert [m.id for m in log] == ["u1", "a1", "u2", "t1", "u3"]
    view = [SystemMessage(prompt, id="kimi-agent-system-prompt"), *log]
    expected, report = prepare_context(
        view,
        policy,
        profile=KimiChatModel(api_key="k").model_profile,
        token_counter=default_token_counter(),
        tools=[convert_to_openai_tool(read_file)],
    )
    # (the cache strategy sends tool-call arguments in canonical JSON, nothing else differs)
    assert sent == canonicalize_messages(to_wire(expected))
    # the case is the one that used to differ: repair moved u2, the limit kept the span
    assert report.pairing.moved_messages == ("u2",)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "user"]
    assert sent[-1]["content"] == "only the imports\n\n@say done"
    assert report.truncation is not None
    assert report.truncation.truncated[0].message_id == "t1"
    assert "characters removed" in sent[3]["content"]
    assert len(sent[3]["content"]) < len(big)


def test_a_run_without_thread_id_is_a_clear_error(emulator: KimiEmulator, tmp_path: Path) -> None:
    # The agent's default durability lives in `configurable`, which used to switch off
    # LangGraph's own check: the saver then failed with a bare KeyError('thread_id').
    from langgraph.checkpoint.memory import InMemorySaver

    for agent in (
        _agent(emulator, tmp_path),
        _agent(emulator, tmp_path, checkpointer=InMemorySaver()),
    ):
        with pytest.raises(KimiConfigurationError, match=r"thread_id.*checkpointer=False"):
            agent.invoke({"messages": [("user", "hi")]})
        with pytest.raises(KimiConfigurationError, match="thread_id"):
            agent.invoke({"messages": [("user", "hi")]}, {"configurable": {"user": "u1"}})
        assert _chat_requests(emulator) == []  # refused before anything was sent
        # a thread id given through with_config is a thread id too
        out = agent.with_config(configurable={"thread_id": "w"}).invoke(
            {"messages": [("user", "@say bound")]}
        )
        assert out["messages"][-1].content == "bound"
        emulator.reset()


async def test_an_async_run_without_thread_id_is_a_clear_error(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    with pytest.raises(KimiConfigurationError, match="thread_id"):
        await _agent(emulator, tmp_path).ainvoke({"messages": [("user", "hi")]})


def test_checkpointer_false_runs_without_persistence(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    # Documented ("checkpointer=False disables persistence"); the sync durability default
    # used to crash LangGraph's loop (no '_put_checkpoint_fut' without a saver).
    agent = _agent(emulator, tmp_path, checkpointer=False)
    out = agent.invoke({"messages": [("user", '@call read_file {"path": "a.py"}\n@say done')]})
    assert [type(m).__name__ for m in out["messages"]] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert out["messages"][-1].content == "done"
    assert not (tmp_path / "a.sqlite").exists()


def test_the_api_key_never_reaches_the_checkpoint_db(
    emulator: KimiEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-qa-distinctive-secret-7f3a9c51e2"
    emulator.add_api_key(secret)
    monkeypatch.setenv("MOONSHOT_API_KEY", secret)
    monkeypatch.setenv("MOONSHOT_BASE_URL", emulator.base_url)
    db = tmp_path / "secret.sqlite"
    small = ContextPolicy(
        context_window=32_000,
        compact_trigger_tokens=2_000,
        compact_trigger_ratio=None,
        compact_reserve_tokens=None,
        compact_target_share=0.05,
    )
    agent = create_kimi_agent("kimi-k2.6", [read_file], db_path=db, policy=small)
    for i in range(4):
        agent.invoke(
            {"messages": [("user", f'@call read_file {{"path": "m{i}.py"}}\n@reply 400')]},
            _cfg("secret"),
        )
    state = agent.get_state(_cfg("secret")).values
    assert state["compactions"], "the run should also have stored a compaction record"
    agent.checkpointer.conn.close()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("secret.sqlite")]
    assert files
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data, path.name
        assert secret[-10:].encode() not in data, path.name  # nor a redacted form's tail
