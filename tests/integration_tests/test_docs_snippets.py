"""Every ```python block of README.md and docs/*.md runs against the Kimi emulator.

The documentation is executed the way a reader would paste it: each block on its own,
in a fresh namespace, with ``MOONSHOT_API_KEY`` / ``MOONSHOT_BASE_URL`` pointing at the
bundled :class:`KimiEmulator` and ``KIMI_CONTEXT_DB`` at a temporary file. Blocks may use
a few names that the prose treats as "yours" (the app's tools, a chat history, a model);
they are defined below in :func:`_reader_namespace` and documented there. Everything
else a block uses it must import itself.

A block that is intentionally not runnable is preceded in the markdown by
``<!-- no-test: reason -->`` (the reason is required). ``docs/benchmarks/`` is excluded
(raw output of the benchmark scripts, not examples).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable
from langchain_core.tools import tool

from langchain_kimi_context import KimiChatModel
from langchain_kimi_context.context.compaction import forget_learned_windows
from langchain_kimi_context.testing import KimiEmulator

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_NO_TEST = re.compile(r"<!--\s*no-test\s*:?\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Snippet:
    """One ```python block of a markdown file."""

    path: Path
    line: int
    code: str
    skip_reason: str | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def extract_snippets(path: Path) -> list[Snippet]:
    """The ```python blocks of ``path`` with their line numbers and no-test markers."""
    text = path.read_text(encoding="utf-8")
    snippets = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = [ln for ln in text[: match.start()].splitlines() if ln.strip()]
        skip = None
        if before and (marker := _NO_TEST.search(before[-1])):
            skip = marker.group(1)
            if not skip:
                raise AssertionError(f"{path.name}:{line}: <!-- no-test --> needs a reason")
        snippets.append(Snippet(path, line, match.group(1), skip))
    return snippets


SNIPPETS = [s for path in DOC_FILES for s in extract_snippets(path)]


def test_extraction_finds_the_documented_blocks() -> None:
    # Guards the regex: a silently empty parametrisation would make the suite vacuous.
    by_file = {p.name: [s for s in SNIPPETS if s.path == p] for p in DOC_FILES}
    assert len(by_file["README.md"]) >= 5
    assert {"agent.md", "compaction.md", "memory.md"} <= set(by_file)
    assert all(s.code.strip() for s in SNIPPETS)
    assert not any("docs/benchmarks" in s.id for s in SNIPPETS)


# --- what a reader is assumed to have ------------------------------------------------


@tool
def read_file(path: str) -> str:
    """Read a source file of the project."""
    return f"# {path}\ndef add(a, b):\n    return a + b\n"


@tool
def run_tests(path: str = "tests") -> str:
    """Run the project's tests under ``path`` and return the summary."""
    return f"{path}: 12 passed, 1 failed (test_add: assert add(2, 2) == 5)"


def _history() -> list[BaseMessage]:
    """A chat history with the usual defect: a tool result whose call was trimmed away."""
    return [
        SystemMessage("You are a coding agent."),
        HumanMessage("Read a.py"),
        AIMessage("", tool_calls=[{"name": "read_file", "args": {"path": "a.py"}, "id": "c1"}]),
        ToolMessage("def add(a, b): ...", tool_call_id="c1"),
        AIMessage("a.py defines add."),
        ToolMessage("orphan result", tool_call_id="gone"),
        HumanMessage("Now run the tests."),
    ]


def _reader_namespace(emu: KimiEmulator) -> dict[str, Any]:
    """Names the docs use without defining them (the reader's own app objects).

    * ``read_file``, ``run_tests``: the app's tools (LangChain ``@tool`` functions).
    * ``tools``: ``[read_file, run_tests]``.
    * ``model``: ``KimiChatModel(model="kimi-k2.6")`` from the environment (the emulator).
    * ``history``: a list of LangChain messages with an orphan tool result.
    * ``chain``: ``prompt | model`` with a ``history`` placeholder and an ``input``
      variable, for ``RunnableWithMessageHistory``.
    """
    model = KimiChatModel(model="kimi-k2.6")
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are helpful."), MessagesPlaceholder("history"), ("human", "{input}")]
    )
    chain: Runnable[Any, Any] = prompt | model
    return {
        "__name__": "__doc_snippet__",
        "read_file": read_file,
        "run_tests": run_tests,
        "tools": [read_file, run_tests],
        "model": model,
        "history": _history(),
        "chain": chain,
    }


@pytest.fixture
def reader_env(
    emulator: KimiEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KimiEmulator]:
    monkeypatch.setenv("MOONSHOT_API_KEY", emulator.api_key)
    monkeypatch.setenv("MOONSHOT_BASE_URL", emulator.base_url)
    monkeypatch.setenv("KIMI_CONTEXT_DB", str(tmp_path / "checkpoints.sqlite"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    yield emulator
    forget_learned_windows()


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_doc_snippet_runs(snippet: Snippet, reader_env: KimiEmulator) -> None:
    if snippet.skip_reason is not None:
        pytest.skip(f"marked no-test: {snippet.skip_reason}")
    namespace = _reader_namespace(reader_env)
    code = compile(snippet.code, snippet.id, "exec")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        exec(code, namespace)  # the documentation is the code under test
