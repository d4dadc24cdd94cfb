"""Tool execution: timeouts, errors the model sees, repeated identical calls."""

from __future__ import annotations

import threading
import time

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from langchain_kimi_context.agent.tools import ToolRunner, call_signature, count_repeats
from langchain_kimi_context.errors import KimiConfigurationError

release = threading.Event()


@tool
def slow(seconds: float) -> str:
    """Sleep, then answer."""
    release.wait(seconds)
    return "done"


@tool
def boom(path: str) -> str:
    """Always fails."""
    raise FileNotFoundError(f"no such file: {path}")


@tool
def echo(text: str) -> str:
    """Echo."""
    return text


def _ai(*calls: tuple[str, dict[str, object], str]) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": n, "args": a, "id": i} for n, a, i in calls])


def test_results_in_call_order_with_errors_and_unknown_tools() -> None:
    runner = ToolRunner([echo, boom])
    ai = _ai(("echo", {"text": "hi"}, "1"), ("boom", {"path": "a.py"}, "2"), ("zap", {}, "3"))
    results, report = runner.run(ai, [HumanMessage("go"), ai])
    assert [m.tool_call_id for m in results] == ["1", "2", "3"]
    assert results[0].content == "hi"
    assert results[0].status == "success"
    assert results[1].status == "error"
    assert "FileNotFoundError" in results[1].content
    assert "a.py" in results[1].content
    assert results[2].status == "error"
    assert "unknown tool 'zap'" in results[2].content
    assert report.errors == {"2": "FileNotFoundError", "3": "unknown_tool"}


def test_per_tool_timeout_abandons_the_call_and_reports_it() -> None:
    release.clear()
    runner = ToolRunner([slow, echo], timeout_s=30, timeouts={"slow": 0.2})
    ai = _ai(("slow", {"seconds": 30}, "s"), ("echo", {"text": "fast"}, "e"))
    started = time.perf_counter()
    results, report = runner.run(ai, [ai])
    elapsed = time.perf_counter() - started
    release.set()
    assert elapsed < 5
    assert results[0].status == "error"
    assert "timed out after 0.2 s" in results[0].content
    assert results[1].content == "fast"
    assert report.timeouts == ["s"]
    runner.close()


def test_parallel_calls_run_concurrently() -> None:
    release.clear()
    runner = ToolRunner([slow], timeout_s=0.5)
    ai = _ai(*[("slow", {"seconds": 30 + i}, str(i)) for i in range(4)])
    started = time.perf_counter()
    results, _ = runner.run(ai, [ai])
    release.set()
    # four 0.5 s timeouts in parallel, not 2 s in sequence
    assert time.perf_counter() - started < 1.8
    assert all(m.status == "error" for m in results)


def test_repeated_identical_calls_warn_then_stop() -> None:
    runner = ToolRunner([echo], warn_at=2, stop_at=3)
    log: list[object] = [HumanMessage("loop please")]
    contents = []
    stopped = None
    for i in range(3):
        ai = _ai(("echo", {"text": "same"}, f"c{i}"))
        log.append(ai)
        results, report = runner.run(ai, log)  # type: ignore[arg-type]
        log.extend(results)
        contents.append(results[0].content)
        stopped = report.stopped
    assert contents[0] == "same"
    assert "warning: identical call repeated 2 times" in contents[1]
    assert "Not executed" in contents[2]
    assert stopped == call_signature({"name": "echo", "args": {"text": "same"}})


def test_repeats_are_counted_per_user_turn() -> None:
    call = {"name": "echo", "args": {"text": "x"}, "id": "1"}
    log = [
        HumanMessage("first"),
        AIMessage("", tool_calls=[call]),
        ToolMessage("x", tool_call_id="1"),
        HumanMessage("second"),
        AIMessage("", tool_calls=[{**call, "id": "2"}]),
    ]
    assert count_repeats(log) == {'echo({"text": "x"})': 1}


def test_bad_configuration_is_a_clear_error() -> None:
    with pytest.raises(KimiConfigurationError, match="unknown tools"):
        ToolRunner([echo], timeouts={"ech": 5})
    with pytest.raises(KimiConfigurationError, match="> 0"):
        ToolRunner([echo], timeout_s=0)
    with pytest.raises(KimiConfigurationError, match="warn_at"):
        ToolRunner([echo], warn_at=5, stop_at=2)
    with pytest.raises(KimiConfigurationError, match="tools must be"):
        ToolRunner([42])  # type: ignore[list-item]


def test_tool_mistakes_say_how_to_fix_them() -> None:
    # A lone tool used to be iterated as a pydantic model: "got tuple".
    with pytest.raises(
        KimiConfigurationError, match=r"a list .* e\.g\. \[read_file\], got a single StructuredTool"
    ):
        ToolRunner(echo)  # type: ignore[arg-type]
    with pytest.raises(KimiConfigurationError, match="got a single function"):
        ToolRunner(call_signature)  # type: ignore[arg-type]
    with pytest.raises(
        KimiConfigurationError, match=r"got str 'echo' \(pass the function or tool itself"
    ):
        ToolRunner(["echo"])  # type: ignore[list-item]

    def no_doc(x: int) -> int:
        return x

    # LangChain's bare ValueError, now typed and with the fix
    with pytest.raises(KimiConfigurationError, match=r"'no_doc' .*docstring.*Add a docstring"):
        ToolRunner([no_doc])
    with pytest.raises(KimiConfigurationError, match=r"\['echo'\] appear more than once"):
        ToolRunner([echo, echo])


def test_no_tools_may_be_none_as_in_create_agent() -> None:
    assert ToolRunner(None).tools == {}  # used to be TypeError: 'NoneType' is not iterable
