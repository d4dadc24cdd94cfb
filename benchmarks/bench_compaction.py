"""Compaction benchmark: fact retention and session cost, against the Kimi emulator.

A scripted 60-turn coding session (tool calls, tracebacks, file reads, decisions, TODOs,
a current task stated near the end) runs over real HTTP against the emulator, three ways:

* ``kimi``: this package: ``maybe_compact`` after every turn (structural strategies
  first, then the structured LLM summary; records over an append-only log);
* ``langchain``: LangChain's ``SummarizationMiddleware`` (``before_model`` on the same
  history; its summariser sees the span trimmed to the last 4,000 tokens);
* ``none``: no compaction (the plain history; overflows the window at some point).

It prints, per way: compactions, the view/summary ratio, the facts retained in what the
model finally sees, prompt tokens, cache hits and the ledger cost; then the cost of the
``kimi`` way under several trigger settings (the cost benchmark behind the defaults).

Run: ``.venv/bin/python benchmarks/bench_compaction.py`` (about 10-20 s, offline).
The retention test (``tests/integration_tests/test_retention_compaction.py``) runs the
same scenario.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    get_buffer_string,
)

from langchain_kimi_context import KimiChatModel
from langchain_kimi_context.context.compaction import (
    CompactionRecord,
    CompactionReport,
    apply_compactions,
    maybe_compact,
)
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.testing import KimiEmulator

MODEL = "kimi-k2.6"
SYSTEM_PROMPT = "You are a careful coding agent working in the repository of a data uploader."

# Facts seeded into the session that the compaction rules say to keep:
# (kind, turn where it appears, text planted, probe searched for in the final view).
FACTS: list[tuple[str, int, str, str]] = [
    ("path", 3, "The parser lives in src/ingest/parser.py.", "src/ingest/parser.py"),
    (
        "error",
        4,
        "ValueError: invalid literal for int() with base 10: 'v2'",
        "ValueError: invalid literal for int() with base 10",
    ),
    ("decision", 7, "Decision: use SQLite instead of Postgres for the local cache.", "SQLite"),
    ("path", 9, "Settings are read from config/settings.toml.", "config/settings.toml"),
    (
        "error",
        12,
        "ModuleNotFoundError: No module named 'yaml'",
        "ModuleNotFoundError: No module named 'yaml'",
    ),
    ("fix", 13, "Fix: pin PyYAML>=6.0 in requirements.txt.", "PyYAML>=6.0"),
    ("todo", 15, "TODO: add a --dry-run flag to the uploader CLI.", "--dry-run"),
    (
        "error",
        25,
        "TimeoutError: upload to s3://backups/nightly exceeded 30s",
        "TimeoutError: upload to s3://backups/nightly",
    ),
    (
        "decision",
        27,
        "Decision: retry uploads 3 times with exponential backoff.",
        "retry uploads 3 times",
    ),
    ("path", 30, "The uploader tests are in tests/test_uploader.py.", "tests/test_uploader.py"),
    ("todo", 40, "TODO: document the new config keys in README.md.", "new config keys"),
    (
        "task",
        50,
        "Current task: make the nightly uploader resumable (src/uploader/resume.py).",
        "src/uploader/resume.py",
    ),
]

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file of the repository.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_tests",
            "description": "Run the test suite (or one test file) and return the output.",
            "parameters": {
                "type": "object",
                "properties": {"target": {"type": "string"}},
                "required": ["target"],
            },
        },
    },
]

_FILLER = (
    "Please keep the code style consistent with the rest of the module and keep the "
    "public interface unchanged while you work on this step of the refactoring. "
)


def _traceback(turn: int) -> str | None:
    for kind, at, text, _ in FACTS:
        if kind == "error" and at == turn:
            return (
                "Traceback (most recent call last):\n"
                '  File "src/ingest/pipeline.py", line 88, in run\n'
                "    rows = parse(batch)\n"
                f"{text}\n1 failed, 41 passed in 3.2s"
            )
    return None


def read_file(path: str) -> str:
    """A deterministic file body (~1,500 tokens of code)."""
    body = [f"# {path}", "from __future__ import annotations", ""]
    for i in range(40):
        body += [
            f"def step_{i}(rows: list[dict[str, str]]) -> list[dict[str, str]]:",
            f'    """Transform stage {i} of the pipeline."""',
            f"    return [dict(r, stage='{i}') for r in rows if r.get('id')]",
            "",
        ]
    return "\n".join(body)


def run_tests(target: str, turn: int) -> str:
    tb = _traceback(turn)
    if tb is not None:
        return f"$ pytest {target}\n" + "." * 40 + "F\n" + tb
    return f"$ pytest {target}\n" + "." * 42 + "\n42 passed in 3.1s"


def user_turn(turn: int) -> str:
    """The user message of ``turn`` (0-based) with the emulator's script directives."""
    planted = [text for kind, at, text, _ in FACTS if at == turn and kind != "error"]
    if turn >= 50:
        lead = f"Next step {turn - 49} of making the nightly uploader resumable."
    else:
        lead = f"Step {turn}: continue the refactoring of the ingest pipeline."
    lines = [lead, *planted, _FILLER * 2]
    if turn % 5 == 1:
        lines.append(f'@call read_file {{"path": "src/ingest/stage_{turn}.py"}}')
    if turn % 5 == 3 or any(kind == "error" and at == turn for kind, at, _, _ in FACTS):
        lines.append(f'@call run_tests {{"target": "tests/test_stage_{turn}.py"}}')
    lines.append("@reply 250")
    return "\n".join(lines)


@dataclass
class SessionResult:
    """What a scripted session produced."""

    way: str
    view: list[BaseMessage]
    log: list[BaseMessage]
    records: list[CompactionRecord] = field(default_factory=list)
    reports: list[CompactionReport] = field(default_factory=list)
    summaries: int = 0
    overflowed_at: int | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cost: float = 0.0
    requests: int = 0
    max_prompt: int = 0
    max_summary_prompt: int = 0

    def retained(self) -> list[tuple[str, str, bool]]:
        """(kind, probe, present in what the model sees) for every fact."""
        seen = "\n".join(get_buffer_string([m]) for m in self.view)
        return [(kind, probe, probe in seen) for kind, _, _, probe in FACTS]

    @property
    def summary_ratios(self) -> list[float]:
        """Summarised tokens / summary tokens of every summary."""
        return [r.summary_ratio for r in self.records if r.summary_ratio is not None]

    @property
    def llm_ratios(self) -> list[float]:
        """View ratios of the compactions that produced a summary."""
        return [r.ratio for r in self.records if r.summary is not None]


def _agent_model(emu: KimiEmulator) -> Any:
    return KimiChatModel(
        model=MODEL, base_url=emu.base_url, api_key=emu.api_key, max_retries=0
    ).bind_tools(TOOLS)


def _summary_model(emu: KimiEmulator) -> KimiChatModel:
    return KimiChatModel(model=MODEL, base_url=emu.base_url, api_key=emu.api_key, max_retries=0)


def _run_turn(
    agent: Any, history: Callable[[], list[BaseMessage]], log: list[BaseMessage], turn: int
) -> None:
    log.append(HumanMessage(user_turn(turn), id=f"u{turn}"))
    for step in range(8):
        reply = agent.invoke(history())
        reply = reply.model_copy(update={"id": f"r{turn}-{step}"})
        log.append(reply)
        if not isinstance(reply, AIMessage) or not reply.tool_calls:
            return
        for call in reply.tool_calls:
            args = call["args"]
            if call["name"] == "read_file":
                out = read_file(str(args.get("path", "")))
            else:
                out = run_tests(str(args.get("target", "")), turn)
            log.append(
                ToolMessage(out, tool_call_id=call["id"], name=call["name"], id=f"t{call['id']}")
            )


def session_policy(**overrides: Any) -> ContextPolicy:
    """The policy of the benchmark: a 24K window, ratio 0.85 or a 6K reserve."""
    values: dict[str, Any] = {
        "context_window": 24_000,
        "compact_reserve_tokens": 6_000,
        "compact_retry_backoff_s": 0.01,
    }
    values.update(overrides)
    return ContextPolicy(**values)


def run_kimi(
    emu: KimiEmulator, *, turns: int = 60, policy: ContextPolicy | None = None
) -> SessionResult:
    """The session with this package's compaction after every turn."""
    policy = policy or session_policy()
    agent, summariser = _agent_model(emu), _summary_model(emu)
    log: list[BaseMessage] = [SystemMessage(SYSTEM_PROMPT, id="system")]
    records: list[CompactionRecord] = []
    result = SessionResult("kimi", [], log)
    for turn in range(turns):
        _run_turn(agent, lambda: apply_compactions(log, records), log, turn)
        _, report = maybe_compact(
            log, policy, model=summariser, records=records, tools=TOOLS, snapshot_id=f"turn-{turn}"
        )
        if report is not None:
            result.reports.append(report)
            if report.record is not None:
                records.append(report.record)
    result.records = records
    result.view = apply_compactions(log, records)
    return _bill(emu, result)


def run_langchain(
    emu: KimiEmulator, *, turns: int = 60, trigger_tokens: int = 18_000
) -> SessionResult:
    """The same session with LangChain's SummarizationMiddleware (trim 4,000 tokens)."""
    from langchain.agents.middleware import SummarizationMiddleware

    agent, summariser = _agent_model(emu), _summary_model(emu)

    def summarize(messages: Sequence[BaseMessage]) -> str:
        request = [
            SystemMessage("Summarize the conversation below for the assistant."),
            HumanMessage(get_buffer_string(list(messages))),
        ]
        return str(summariser.invoke(request).content)

    middleware = SummarizationMiddleware(
        summariser, trigger=("tokens", trigger_tokens), keep=("messages", 8), summarizer=summarize
    )
    messages: list[BaseMessage] = [SystemMessage(SYSTEM_PROMPT, id="system")]
    result = SessionResult("langchain", [], messages)
    for turn in range(turns):
        _run_turn(agent, lambda: list(messages), messages, turn)
        update = middleware.before_model({"messages": messages}, None)  # type: ignore[arg-type]
        if update:
            kept = [m for m in update["messages"] if m.type != "remove"]
            messages[:] = [messages[0], *kept] if messages[0] not in kept else kept
            result.summaries += 1
    result.view = list(messages)
    return _bill(emu, result)


def run_none(emu: KimiEmulator, *, turns: int = 60, window: int = 24_000) -> SessionResult:
    """The same session without compaction; stops where the window would overflow."""
    agent = _agent_model(emu)
    log: list[BaseMessage] = [SystemMessage(SYSTEM_PROMPT, id="system")]
    result = SessionResult("none", [], log)
    for turn in range(turns):
        _run_turn(agent, lambda: list(log), log, turn)
        last = [m for m in log if isinstance(m, AIMessage) and m.usage_metadata]
        if last and last[-1].usage_metadata and last[-1].usage_metadata["input_tokens"] > window:
            result.overflowed_at = turn
            break
    result.view = list(log)
    return _bill(emu, result)


def _bill(emu: KimiEmulator, result: SessionResult) -> SessionResult:
    ledger = emu.ledger(emu.api_key)
    result.prompt_tokens = ledger.prompt_tokens
    result.cached_tokens = ledger.cached_tokens
    result.cost = ledger.cost("USD")
    result.requests = ledger.requests
    result.max_prompt = max(
        (r.usage or {}).get("prompt_tokens", 0) for r in emu.chat_requests if r.body.get("tools")
    )
    result.max_summary_prompt = max(
        [
            (r.usage or {}).get("prompt_tokens", 0)
            for r in emu.chat_requests
            if not r.body.get("tools")
        ]
        or [0]
    )
    return result


def _row(result: SessionResult) -> dict[str, Any]:
    kept = result.retained()
    return {
        "way": result.way,
        "compactions": len(result.records) if result.way == "kimi" else result.summaries,
        "llm_summaries": len(result.llm_ratios) if result.way == "kimi" else result.summaries,
        "min_view_ratio": round(min(result.llm_ratios), 2) if result.llm_ratios else None,
        "min_summary_ratio": (
            round(min(result.summary_ratios), 2) if result.summary_ratios else None
        ),
        "facts_retained": f"{sum(k for _, _, k in kept)}/{len(kept)}",
        "lost": [probe for _, probe, k in kept if not k],
        "requests": result.requests,
        "prompt_tokens": result.prompt_tokens,
        "cached_tokens": result.cached_tokens,
        "max_agent_prompt": result.max_prompt,
        "max_summary_prompt": result.max_summary_prompt,
        "cost_usd": round(result.cost, 4),
        "overflowed_at_turn": result.overflowed_at,
    }


def main() -> None:
    """Run every way and the trigger sweep; print JSON lines and a table."""
    rows = []
    with KimiEmulator() as emu:
        for way in ("kimi", "langchain", "none"):
            emu.reset()
            res = {"kimi": run_kimi, "langchain": run_langchain, "none": run_none}[way](emu)
            rows.append(_row(res))
        sweep = []
        no_reserve = {"compact_reserve_tokens": None}
        for name, pol in (
            ("ratio 0.60", session_policy(compact_trigger_ratio=0.6, **no_reserve)),
            ("ratio 0.75", session_policy(compact_trigger_ratio=0.75, **no_reserve)),
            ("default 0.85 / reserve 6K", session_policy()),
            ("ratio 0.95", session_policy(compact_trigger_ratio=0.95, **no_reserve)),
            (
                "seed-like: >18K abs + 20%",
                session_policy(
                    compact_trigger_tokens=18_000, compact_trigger_ratio=0.8, **no_reserve
                ),
            ),
        ):
            emu.reset()
            res = run_kimi(emu, policy=pol)
            row = _row(res)
            row["trigger"] = name
            sweep.append(row)
    print("## ways (60 turns, 24K window)")
    for row in rows:
        print(json.dumps(row))
    print("## trigger sweep (kimi way)")
    for row in sweep:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
