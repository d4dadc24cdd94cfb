"""Benchmark: ``prepare_context`` vs LangChain's ``trim_messages`` on the same history.

Builds a deterministic agent session of about 1,200 messages / ~270K tokens (system
prompt, user turns, parallel tool calls with sizeable results, answers carrying
``reasoning_content``), then replays its last ``--turns`` messages as an agent grows its
history, and at every point where the agent calls the model (after a user message,
after a complete set of tool results) times:

- ``prepare_context`` (guard + sanitize + pairing + limit + pairing + estimate) with the
  package ``TokenCounter`` warm (incremental: only appended messages are tokenised);
- ``trim_messages(..., token_counter=count_tokens_approximately)`` on the same history
  (the plain LangChain way to keep a history under a budget), same budget.

Run: ``.venv/bin/python benchmarks/bench_pipeline.py`` (``--turns N``: how many trailing
messages are replayed, default 200).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    trim_messages,
)
from langchain_core.messages.utils import count_tokens_approximately

from langchain_kimi_context import ContextPolicy, prepare_context
from langchain_kimi_context.tokens import ApproximateBackend, TokenCounter

WORDS = tuple(
    [
        "context",
        "window",
        "cache",
        "prefix",
        "session",
        "tool",
        "result",
        "message",
        "model",
        "token",
        "compact",
        "summary",
        "agent",
        "graph",
        "state",
        "checkpoint",
        "request",
        "response",
        "error",
        "retry",
        "budget",
        "history",
        "turn",
        "kimi",
        "moonshot",
        "stream",
        "usage",
        "reasoning",
        "pipeline",
        "limit",
        "repair",
        "truncate",
        "guard",
        "policy",
    ]
)


def _text(rng: random.Random, n_words: int) -> str:
    lines = []
    words = [rng.choice(WORDS) for _ in range(n_words)]
    for i in range(0, len(words), 12):
        lines.append(" ".join(words[i : i + 12]))
    return "\n".join(lines)


def build_session(n_messages: int = 1_200, seed: int = 7) -> list[BaseMessage]:
    """A deterministic agent session of ``n_messages`` messages."""
    rng = random.Random(seed)
    messages: list[BaseMessage] = [SystemMessage(_text(rng, 400), id="system")]
    turn = 0
    while len(messages) < n_messages:
        turn += 1
        messages.append(HumanMessage(_text(rng, rng.randint(10, 60)), id=f"u{turn}"))
        for step in range(rng.randint(1, 3)):
            calls = [
                {
                    "id": f"functions.read_file:{turn}_{step}_{k}",
                    "name": "read_file",
                    "args": {"path": f"src/module_{turn}_{k}.py"},
                }
                for k in range(rng.randint(1, 2))
            ]
            messages.append(
                AIMessage(
                    "",
                    tool_calls=calls,
                    id=f"a{turn}_{step}",
                    additional_kwargs={"reasoning_content": _text(rng, 30)},
                )
            )
            for call in calls:
                messages.append(
                    ToolMessage(
                        _text(rng, rng.randint(100, 420)),
                        tool_call_id=call["id"],
                        name="read_file",
                        id=f"t{call['id']}",
                    )
                )
        messages.append(
            AIMessage(
                _text(rng, rng.randint(40, 150)),
                id=f"a{turn}_final",
                additional_kwargs={"reasoning_content": _text(rng, 20)},
            )
        )
    return messages[:n_messages]


def _time(fn: Callable[[], Any], repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def run(turns: int = 200) -> dict[str, float]:
    """Run the benchmark and print the numbers; returns them."""
    history = build_session()
    counter = TokenCounter(backend=ApproximateBackend())
    policy = ContextPolicy(context_window=400_000, reserved_output_tokens=8_192)
    total_tokens = counter.count_messages(history)
    budget = 262_144 - 8_192
    start = len(history) - turns

    def pipeline(msgs: Sequence[BaseMessage]) -> Any:
        return prepare_context(msgs, policy, token_counter=counter)

    def trim(msgs: Sequence[BaseMessage]) -> Any:
        return trim_messages(
            msgs,
            max_tokens=budget,
            token_counter=count_tokens_approximately,
            strategy="last",
            start_on="human",
            include_system=True,
        )

    # First (cold) call of each on the full history.
    cold_pipeline = _time(lambda: pipeline(history))
    cold_trim = _time(lambda: trim(history))

    # Warm, per model call: the history grows as an agent's does, and is prepared at
    # every point where the agent calls the model (after a user message, after a
    # complete set of tool results).
    points = [
        n
        for n in range(start, len(history) + 1)
        if isinstance(history[n - 1], HumanMessage)
        or (
            isinstance(history[n - 1], ToolMessage)
            and (n == len(history) or not isinstance(history[n], ToolMessage))
        )
    ]
    pipe_times: list[float] = []
    trim_times: list[float] = []
    for n in points:
        view = history[:n]
        pipe_times.append(_time(lambda v=view: pipeline(v)))  # type: ignore[misc]
        trim_times.append(_time(lambda v=view: trim(v)))  # type: ignore[misc]
    pipe_ms = statistics.median(pipe_times) * 1e3
    trim_ms = statistics.median(trim_times) * 1e3
    pipe_best = min(pipe_times) * 1e3
    trim_best = min(trim_times) * 1e3
    _out, report = pipeline(history)
    print(
        f"history: {len(history)} messages, ~{total_tokens:,} tokens (package counter), "
        f"{count_tokens_approximately(history):,} (count_tokens_approximately)"
    )
    print(
        f"timed calls: {len(pipe_times)} (one per model call over the last {turns} messages, "
        "history growing as an agent's)"
    )
    ratios = [t / p for p, t in zip(pipe_times, trim_times, strict=True)]
    print(
        f"prepare_context  first call {cold_pipeline * 1e3:8.2f} ms   "
        f"per turn: median {pipe_ms:6.3f} ms, best {pipe_best:6.3f} ms"
    )
    print(
        f"trim_messages    first call {cold_trim * 1e3:8.2f} ms   "
        f"per turn: median {trim_ms:6.3f} ms, best {trim_best:6.3f} ms"
    )
    print(
        f"speed-up per turn: median of medians {trim_ms / pipe_ms:5.1f}x, "
        f"median of per-turn ratios {statistics.median(ratios):5.1f}x"
    )
    print(f"prepare_context changed the history: {report.changed}; fits: {report.guard.fits}")
    return {"pipeline_ms": pipe_ms, "trim_ms": trim_ms, "speedup": trim_ms / pipe_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    run(args.turns)


if __name__ == "__main__":
    main()
