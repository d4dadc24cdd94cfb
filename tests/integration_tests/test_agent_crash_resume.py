"""Crash safety: kill a real agent subprocess mid-turn, restart it, check nothing broke.

The emulator runs in this (parent) process; the agent runs in a child process against
the same SQLite file. The child is killed at a chosen point (right after a model call,
in the middle of a tool, while the compaction summary request is in flight), then
restarted with the same thread id. Afterwards: every turn completed once, the log has
no duplicated message and no orphan tool result, and the emulator's request log shows
no model request repeated whose reply had been checkpointed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from langchain_kimi_context import KimiChatModel
from langchain_kimi_context.agent import create_kimi_agent
from langchain_kimi_context.testing import (
    DefaultResponder,
    KimiEmulator,
    ReplySpec,
    ResponderRequest,
    is_compaction_request,
)
from tests.compaction_helpers import is_summary_request

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(120)]

CHILD = r'''
import json, os, sys
from langchain_core.messages import HumanMessage
from langchain_kimi_context import ContextPolicy, KimiChatModel
from langchain_kimi_context.agent import AgentSettings, RetrySettings, create_kimi_agent

args = json.loads(sys.argv[1])
workdir = args["workdir"]

def read_file(path: str) -> str:
    """Read a file."""
    marker = os.path.join(workdir, "killed-in-tool")
    if path == "kill.py" and args["kill"] == "mid_tool" and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(137)  # die in the middle of the tools node
    return f"contents of {path}: " + "lorem ipsum " * 40

model = KimiChatModel(base_url=args["base_url"], api_key=args["api_key"])
policy = ContextPolicy(**args["policy"])
agent = create_kimi_agent(
    model, [read_file], policy=policy, db_path=args["db"],
    settings=AgentSettings(retry=RetrySettings(initial_interval=0.01)),
)
cfg = {"configurable": {"thread_id": args["thread"]}}
state = agent.get_state(cfg)
if state.next:  # a turn was interrupted by the crash: finish it from the checkpoint
    print("resuming", state.next, flush=True)
    agent.invoke(None, cfg)
done = {m.content for m in agent.get_state(cfg).values.get("messages", [])
        if isinstance(m, HumanMessage)}
model_calls = 0
for text in args["turns"]:
    if text in done:
        continue
    for update in agent.stream({"messages": [HumanMessage(text)]}, cfg,
                               stream_mode="updates"):
        if "call_model" in update:
            model_calls += 1
            if args["kill"] == f"after_model:{model_calls}":
                os._exit(137)  # die right after a model call returned
print("finished", flush=True)
'''


class _BlockingCompaction:
    """Responder that holds the first compaction request until the test says so."""

    def __init__(self) -> None:
        self.inner = DefaultResponder()
        self.armed = False
        self.arrived = threading.Event()
        self.release = threading.Event()

    def __call__(self, request: ResponderRequest) -> ReplySpec:
        if self.armed and is_compaction_request(request):
            self.armed = False
            self.arrived.set()
            self.release.wait(30)
        return self.inner(request)


def _run_child(
    tmp_path: Path, emu: KimiEmulator, turns: list[str], kill: str, policy: dict[str, Any]
) -> subprocess.Popen[str]:
    args = {
        "base_url": emu.base_url,
        "api_key": emu.api_key,
        "db": str(tmp_path / "agent.sqlite"),
        "thread": "crash",
        "turns": turns,
        "kill": kill,
        "workdir": str(tmp_path),
        "policy": policy,
    }
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, str(script), json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _state(tmp_path: Path, emu: KimiEmulator) -> Any:
    model = KimiChatModel(base_url=emu.base_url, api_key=emu.api_key)
    agent = create_kimi_agent(model, [], db_path=tmp_path / "agent.sqlite")
    state = agent.get_state({"configurable": {"thread_id": "crash"}})
    agent.checkpointer.conn.close()  # type: ignore[union-attr]
    return state


def _agent_requests(emu: KimiEmulator) -> list[Any]:
    return [
        r
        for r in emu.requests
        if r.path.endswith("/chat/completions")
        and r.status == 200
        and r.body.get("tools")
        and not is_summary_request(r.body)
    ]


def _check_final(tmp_path: Path, emu: KimiEmulator, turns: list[str]) -> list[Any]:
    state = _state(tmp_path, emu)
    assert state.next == ()
    msgs = state.values["messages"]
    humans = [m.content for m in msgs if isinstance(m, HumanMessage)]
    assert humans == turns, "a user message was lost or duplicated"
    ids = [m.id for m in msgs]
    assert len(ids) == len(set(ids)), "duplicated messages in the log"
    open_calls: set[str] = set()
    for m in msgs:
        if isinstance(m, AIMessage):
            assert not open_calls
            open_calls = {c["id"] for c in m.tool_calls}
        elif isinstance(m, ToolMessage):
            assert m.tool_call_id in open_calls, "orphan tool result"
            open_calls.discard(m.tool_call_id)
    assert not open_calls
    # every turn ended with an answer (the next user message follows an AI reply)
    for i, m in enumerate(msgs):
        if isinstance(m, HumanMessage) and i:
            assert isinstance(msgs[i - 1], AIMessage)
            assert not msgs[i - 1].tool_calls
    assert isinstance(msgs[-1], AIMessage)
    assert not msgs[-1].tool_calls
    return msgs


def _repeated_bodies(emu: KimiEmulator) -> list[str]:
    bodies = Counter(json.dumps(r.body["messages"], sort_keys=True) for r in _agent_requests(emu))
    return [b for b, n in bodies.items() if n > 1]


TURNS = [
    'first: read two files\n@call read_file {"path": "a.py"}\n@call read_file {"path": "b.py"}',
    '@call read_file {"path": "kill.py"}\n@then\n@call read_file {"path": "c.py"}',
    "third: just answer\n@reply 40",
]
BIG = {"context_window": 1_000_000}


@pytest.mark.parametrize("kill", ["after_model:1", "after_model:3", "mid_tool"])
def test_kill_and_resume_loses_nothing_and_repeats_no_checkpointed_call(
    make_emulator: Callable[..., KimiEmulator], tmp_path: Path, kill: str
) -> None:
    emu = make_emulator()
    child = _run_child(tmp_path, emu, TURNS, kill, BIG)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 137, err[-2000:]
    before = _state(tmp_path, emu)
    checkpointed_ai = [m for m in before.values["messages"] if isinstance(m, AIMessage)]
    requests_before = len(_agent_requests(emu))
    # every reply the emulator sent before the crash is in the checkpoint (sync durability)
    assert len(checkpointed_ai) == requests_before
    if kill == "mid_tool":
        assert before.next == ("tools",)  # the tool-call reply is saved, its results not
        assert checkpointed_ai[-1].tool_calls[0]["args"] == {"path": "kill.py"}

    child = _run_child(tmp_path, emu, TURNS, kill="none", policy=BIG)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err[-2000:]
    assert "finished" in out
    msgs = _check_final(tmp_path, emu, TURNS)
    assert _repeated_bodies(emu) == [], "a checkpointed model call was sent again"
    assert len(_agent_requests(emu)) == sum(isinstance(m, AIMessage) for m in msgs)


def test_kill_during_compaction_keeps_the_precompaction_state(
    make_emulator: Callable[..., KimiEmulator], tmp_path: Path
) -> None:
    responder = _BlockingCompaction()
    emu = make_emulator(responder=responder)
    policy = {
        "context_window": 20_000,
        "compact_trigger_ratio": 0.3,
        "compact_reserve_tokens": None,
        "compact_keep_turns": 1,
        "compact_target_share": 0.1,
    }
    turns = [f"turn {i}: explain\n@reply 1500" for i in range(4)]
    responder.armed = True
    child = _run_child(tmp_path, emu, turns, "none", policy)
    assert responder.arrived.wait(60), "no compaction request was made"
    child.kill()  # SIGKILL while the summary request is in flight
    child.communicate(timeout=30)
    responder.release.set()
    before = _state(tmp_path, emu)
    assert before.next in {("compact",)}
    assert not before.values.get("compactions"), "no half-finished compaction stored"
    requests_before = len(_agent_requests(emu))
    assert requests_before == sum(isinstance(m, AIMessage) for m in before.values["messages"])

    child = _run_child(tmp_path, emu, turns, kill="none", policy=policy)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err[-2000:]
    assert out.startswith("resuming ('compact',)")
    _check_final(tmp_path, emu, turns)
    after = _state(tmp_path, emu)
    assert after.values["compactions"], "the compaction was redone after the restart"
    assert _repeated_bodies(emu) == []
