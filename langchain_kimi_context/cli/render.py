"""Text renderings of threads for the CLI: tables, a transcript, Markdown, JSON lines.

Contract: pure functions from :mod:`langchain_kimi_context.cli.store` results to text
(no I/O). JSON output is lossless for messages (``langchain_core``'s ``message_to_dict``,
loadable with ``messages_from_dict``) and never contains credentials (messages and usage
do not hold any).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage, message_to_dict

from langchain_kimi_context.cli.store import ThreadDetail, ThreadSummary
from langchain_kimi_context.context.compaction.records import CompactionRecord
from langchain_kimi_context.context.messages import is_summary, message_text

__all__ = [
    "compaction_rows",
    "detail_json",
    "jsonl",
    "markdown",
    "table",
    "thread_table",
    "transcript",
]

_ROLE = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Render rows as a plain-text table with aligned columns.

    Args:
        headers: Column titles.
        rows: Cells (any value; numbers are right-aligned).

    Returns:
        The table (no trailing newline).
    """
    cells = [[str(h) for h in headers], *[[_cell(c) for c in row] for row in rows]]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def thread_table(rows: Sequence[ThreadSummary]) -> str:
    """The ``threads list`` table.

    Args:
        rows: Thread summaries.

    Returns:
        The table, or a one-line note when there are no threads.
    """
    if not rows:
        return "no threads"
    return table(
        ["thread", "kind", "turns", "messages", "updated (UTC)", "calls", "cost"],
        [[r.thread_id, r.kind, r.turns, r.messages, r.updated, r.calls, _money(r)] for r in rows],
    )


def _money(row: ThreadSummary) -> str:
    return f"{row.currency} {row.cost:.4f}"


def _one_line(text: str, limit: int | None) -> str:
    flat = " ".join(text.split())
    if limit is not None and len(flat) > limit:
        return flat[: limit - 1] + "…"
    return flat


def _tool_calls(message: AIMessage) -> list[str]:
    return [
        f"{c['name']}({json.dumps(c.get('args') or {}, ensure_ascii=False, sort_keys=True)})"
        for c in message.tool_calls
    ]


def compaction_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The compaction records as small JSON-compatible rows.

    Args:
        records: Stored records (``CompactionRecord.to_dict`` output).

    Returns:
        One row per record: id, trigger, strategy, tokens before/after, ratio, the log
        message it covers up to, and the summary's length in characters.
    """
    out = []
    for raw in records:
        rec = CompactionRecord.from_dict(raw)
        out.append(
            {
                "record_id": rec.record_id,
                "trigger": rec.trigger,
                "strategy": rec.strategy,
                "tokens_before": rec.tokens_before,
                "tokens_after": rec.tokens_after,
                "ratio": rec.ratio,
                "covered_until_id": rec.covered_until_id,
                "summary_chars": len(message_text(rec.summary)) if rec.summary else 0,
            }
        )
    return out


def _label(message: BaseMessage) -> str:
    role = _ROLE.get(message.type, message.type)
    if is_summary(message):
        return f"{role} (summary)"
    if isinstance(message, ToolMessage):
        return f"tool {message.name or message.tool_call_id}"
    return role


def transcript(detail: ThreadDetail, *, width: int | None = 240) -> str:
    """``threads show``: header, usage, compactions, snapshots, then the full log.

    Args:
        detail: The thread.
        width: Characters kept per message (``None`` = everything).

    Returns:
        The text.
    """
    s, usage = detail.summary, detail.usage
    prompt = int(usage.get("input_tokens", 0))
    cached = int(usage.get("cache_read_tokens", 0))
    share = f" = {cached / prompt:.0%}" if prompt else ""
    lines = [
        f"thread {s.thread_id} ({s.kind}), model {detail.model or 'unknown'}",
        f"turns {s.turns}, messages {s.messages}, updated {s.updated} UTC",
        f"usage: {s.calls} calls, input {prompt:,} tokens (cached {cached:,}{share}), "
        f"output {int(usage.get('output_tokens', 0)):,}, cost {_money(s)}",
    ]
    rows = compaction_rows(detail.compactions)
    covered: dict[str, int] = {}
    lines.append(f"compactions: {len(rows)}")
    for i, r in enumerate(rows, 1):
        lines.append(
            f"  #{i} {r['trigger']}: {r['strategy']}, {r['tokens_before']:,} -> "
            f"{r['tokens_after']:,} tokens ({r['ratio']:.1f}x)"
        )
        if r["covered_until_id"]:
            covered[str(r["covered_until_id"])] = i
    lines.append(f"snapshots: {len(detail.snapshots)}")
    if detail.snapshots:
        snap_table = table(
            ["snapshot", "reason", "name", "created (UTC)"],
            [[p.snapshot_id, p.reason, p.name or "", p.created] for p in detail.snapshots],
        )
        lines.extend("  " + line for line in snap_table.splitlines())
    lines.append(f"transcript (full log, {len(detail.messages)} messages):")
    for i, m in enumerate(detail.messages):
        text = _one_line(message_text(m), width)
        if isinstance(m, AIMessage) and m.tool_calls:
            calls = ", ".join(_tool_calls(m))
            text = f"{text} -> {calls}" if text else f"-> {calls}"
        lines.append(f"  [{i}] {_label(m)}: {text}")
        if m.id in covered:
            lines.append(f"  ---- compaction #{covered[m.id]} summarised everything above ----")
    return "\n".join(lines)


def detail_json(detail: ThreadDetail) -> dict[str, Any]:
    """``threads show --json``: the same content as :func:`transcript`, as data.

    Args:
        detail: The thread.

    Returns:
        A JSON-compatible dict (messages as ``message_to_dict`` dicts).
    """
    return {
        **asdict(detail.summary),
        "model": detail.model,
        "usage": detail.usage,
        "compactions": compaction_rows(detail.compactions),
        "snapshots": [asdict(p) for p in detail.snapshots],
        "log": [message_to_dict(m) for m in detail.messages],
    }


def jsonl(messages: Sequence[BaseMessage]) -> str:
    """One JSON object per message (``message_to_dict``), one per line.

    Args:
        messages: The log.

    Returns:
        JSON lines (with a trailing newline when not empty).
    """
    return "".join(
        json.dumps(message_to_dict(m), ensure_ascii=False, default=str) + "\n" for m in messages
    )


def markdown(thread_id: str, messages: Sequence[BaseMessage]) -> str:
    """The full log as a Markdown transcript.

    Args:
        thread_id: Title of the document.
        messages: The log.

    Returns:
        Markdown text.
    """
    out = [f"# Thread {thread_id}", ""]
    for i, m in enumerate(messages, 1):
        out += [f"## {i}. {_label(m)}", ""]
        text = message_text(m)
        if isinstance(m, ToolMessage):
            out += ["```", text, "```", ""]
        elif text:
            out += [text, ""]
        if isinstance(m, AIMessage):
            out += [f"- tool call `{c}`" for c in _tool_calls(m)]
            if m.tool_calls:
                out.append("")
    return "\n".join(out)
