"""Structural compaction: shrink the view without a model call.

Applied before any summary and often enough on its own (LangChain's
``ClearToolUsesEdit``, Republic's ``select``):

* :class:`DedupeFileReads`: keep only the newest read of each file;
* :class:`CollapseCodeBlocks`: long code blocks become their signatures;
* :class:`ClearToolResults`: old tool results become a placeholder (the newest
  ``policy.clear_tool_results_keep`` stay).

Replacements keep the message id, ``tool_call_id`` and tool name, so tool-call pairing
stays valid, and carry a marker (``cleared_tool_result`` / ``collapsed_code``). The
originals stay in the log: a structural edit changes what the model sees, not what is
recoverable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from langchain_kimi_context.context.compaction._common import (
    is_real_user_turn,
    tool_call_index,
    tool_name_of,
)
from langchain_kimi_context.context.compaction.base import (
    CompactionContext,
    CompactionDraft,
    LocalCompaction,
)
from langchain_kimi_context.context.markers import get_marker, is_marked, with_marker

__all__ = [
    "ClearToolResults",
    "CollapseCodeBlocks",
    "DedupeFileReads",
    "collapse_code",
    "is_read_file_tool",
]

_Calls = dict[str, tuple[str, dict[str, Any]]]

_READ_TOOL = re.compile(
    r"(^|[_\-.])(read|cat|view|open|show|get)([_\-.]?(file|files|text|document|source|code))?$"
    r"|^(read|view|open|get)[_\-.]?(file|files|text|document|source|code)"
    r"|file[_\-.]?(read|view|get|content|contents)$",
    re.IGNORECASE,
)
_PATH_KEYS = ("path", "file_path", "filepath", "file", "filename", "target_file", "uri")
_RANGE_KEYS = ("offset", "limit", "start_line", "end_line", "line", "lines", "range", "start")
_CODE_SUFFIXES = (
    ".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".kt", ".c", ".h",
    ".cc", ".cpp", ".hpp", ".cs", ".rb", ".php", ".swift", ".scala", ".sh", ".sql", ".lua",
)  # fmt: skip
_FENCE = re.compile(r"^(?P<fence>```+|~~~+)(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$",
                    re.MULTILINE | re.DOTALL)  # fmt: skip
_SIGNATURE = re.compile(
    r"^\s*(@\w[\w.]*|(async\s+)?def\s|class\s|function\s|(export\s+)?(default\s+)?"
    r"(async\s+)?(function|class|interface|type|const|enum)\s|interface\s|struct\s|enum\s|"
    r"impl\b|trait\s|(pub(\([a-z]+\))?\s+)?(async\s+)?fn\s|func\s|"
    r"(public|private|protected|static|final)\s[^=;]*\(|CREATE\s|module\s)",
)


def is_read_file_tool(name: str, args: dict[str, Any]) -> str | None:
    """Return the file path if a tool call looks like a file read, else ``None``.

    A read is a tool whose name looks like ``read_file``/``cat``/``view_file``/
    ``file_read`` and whose arguments name a path (``path``, ``file_path``, ...).

    Args:
        name: The tool name.
        args: The call arguments.

    Returns:
        The path, or ``None``.

    Example:
        >>> is_read_file_tool("read_file", {"path": "src/app.py"})
        'src/app.py'
        >>> is_read_file_tool("write_file", {"path": "src/app.py"}) is None
        True
    """
    if not _READ_TOOL.search(name):
        return None
    for key in _PATH_KEYS:
        value = args.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def collapse_code(code: str, *, min_lines: int = 20) -> str | None:
    r"""Condense a code block to its signatures, or ``None`` if it is short enough.

    Code of ``min_lines`` lines or fewer is kept whole (the compaction rules: keep code
    under 20 lines). Longer code keeps decorators, ``def``/``class``/``function``/
    ``fn``/... lines (indentation preserved) and says how many lines were collapsed.

    Args:
        code: The code text.
        min_lines: Longest code kept whole.

    Returns:
        The condensed text, or ``None`` when nothing needs collapsing.

    Example:
        >>> code = "def f(x):\n" + "    x += 1\n" * 30 + "    return x\n"
        >>> print(collapse_code(code))
        def f(x):
            ... (31 of 32 lines collapsed: signatures kept, full text in the session log)
        >>> collapse_code("x = 1") is None
        True
    """
    lines = code.rstrip("\n").split("\n")
    if len(lines) <= min_lines:
        return None
    kept = [line for line in lines if _SIGNATURE.match(line)]
    indent = "    " if kept else ""
    note = (
        f"{indent}... ({len(lines) - len(kept)} of {len(lines)} lines collapsed: "
        f"signatures kept, full text in the session log)"
    )
    return "\n".join([*kept, note])


def _protected_start(view: Sequence[BaseMessage], keep_turns: int) -> int:
    """Index where the last ``keep_turns`` user turns begin (len(view) if none kept)."""
    if keep_turns <= 0:
        return len(view)
    starts = [i for i, m in enumerate(view) if is_real_user_turn(m)]
    if len(starts) < keep_turns:
        return starts[0] if starts else len(view)
    return starts[-keep_turns]


class _EditingCompaction(LocalCompaction):
    """A structural strategy: replaces messages of the view, keeping their ids."""

    def compact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
        """Return ``draft`` with this strategy's replacements of the current view added."""
        view = ctx.view(draft)
        return draft.with_replacements(self.name, self._edits(ctx, view, tool_call_index(view)))

    def _edits(
        self, ctx: CompactionContext, view: list[BaseMessage], calls: _Calls
    ) -> dict[str, BaseMessage]:
        raise NotImplementedError


class DedupeFileReads(_EditingCompaction):
    r"""Keep only the newest read of each file; older reads become a short placeholder.

    A read with the same path and the same range arguments as a newer one, or any
    read of a path that is later read whole, is superseded.

    Args:
        tool_names: Treat exactly these tools as file reads (default: detect by name
            and a path-like argument, see :func:`is_read_file_tool`).

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
        >>> from langchain_kimi_context.context.compaction import compact
        >>> from langchain_kimi_context.context.policy import ContextPolicy
        >>> call = lambda i: AIMessage("", id=f"a{i}", tool_calls=[
        ...     {"name": "read_file", "args": {"path": "a.py"}, "id": f"c{i}"}])
        >>> log = [HumanMessage("go", id="h"), call(1),
        ...        ToolMessage("x = 1\n" * 400, tool_call_id="c1", id="t1"),
        ...        call(2), ToolMessage("x = 2\n" * 400, tool_call_id="c2", id="t2")]
        >>> view, report = compact(log, ContextPolicy(context_window=100_000),
        ...     strategy=DedupeFileReads(), target_tokens=10)
        >>> view[2].content[:12], view[4].content[:5]
        ('[superseded:', 'x = 2')
    """

    name = "dedupe_file_reads"

    def __init__(self, tool_names: Iterable[str] | None = None) -> None:
        self.tool_names = frozenset(tool_names) if tool_names is not None else None

    def _path(self, name: str, args: dict[str, Any]) -> str | None:
        if self.tool_names is None:
            return is_read_file_tool(name, args)
        if name not in self.tool_names:
            return None
        return next((str(args[k]) for k in _PATH_KEYS if args.get(k)), None)

    def _edits(
        self, ctx: CompactionContext, view: list[BaseMessage], calls: _Calls
    ) -> dict[str, BaseMessage]:
        """Replace superseded reads."""
        full_read_seen: set[str] = set()
        exact_seen: set[tuple[str, str]] = set()
        edits: dict[str, BaseMessage] = {}
        for message in reversed(view):
            if not isinstance(message, ToolMessage) or message.id is None:
                continue
            name, args = calls.get(message.tool_call_id, (message.name or "", {}))
            path = self._path(name, args)
            if path is None:
                continue
            ranges = {k: args[k] for k in _RANGE_KEYS if k in args}
            key = (path, repr(sorted(ranges.items())))
            superseded = path in full_read_seen or key in exact_seen
            exact_seen.add(key)
            if not ranges:
                full_read_seen.add(path)
            if superseded and not is_marked(message, "cleared_tool_result"):
                text = f"[superseded: a newer read of {path} appears later in the conversation]"
                replacement = message.model_copy(update={"content": text})
                edits[message.id] = with_marker(
                    replacement, "cleared_tool_result", reason="superseded_read", path=path
                )
        return edits


class CollapseCodeBlocks(_EditingCompaction):
    r"""Collapse long code (fenced blocks; whole read results of code files) to signatures.

    Messages of the last ``policy.compact_keep_turns`` user turns, user messages and
    messages the package already rewrote are left alone.

    Args:
        min_lines: Longest code kept whole (default: ``policy.collapse_code_min_lines``).

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> from langchain_kimi_context.context.compaction import compact
        >>> from langchain_kimi_context.context.policy import ContextPolicy
        >>> body = "class A:\n" + "    x = 1\n" * 40
        >>> log = [HumanMessage("q", id="h1"), AIMessage(f"```python\n{body}```", id="a1"),
        ...        HumanMessage("next", id="h2")]
        >>> view, _ = compact(log, ContextPolicy(compact_keep_turns=1, context_window=99_000),
        ...     strategy=CollapseCodeBlocks(), target_tokens=1)
        >>> print(view[1].content)
        ```python
        class A:
            ... (40 of 41 lines collapsed: signatures kept, full text in the session log)
        ```
    """

    name = "collapse_code"

    def __init__(self, min_lines: int | None = None) -> None:
        self.min_lines = min_lines

    def _collapse_fenced(self, text: str, min_lines: int) -> str | None:
        changed = False

        def repl(match: re.Match[str]) -> str:
            nonlocal changed
            short = collapse_code(match.group("body"), min_lines=min_lines)
            if short is None:
                return match.group(0)
            changed = True
            return f"{match.group('fence')}{match.group('lang')}\n{short}\n{match.group('fence')}"

        new = _FENCE.sub(repl, text)
        return new if changed else None

    def _edits(
        self, ctx: CompactionContext, view: list[BaseMessage], calls: _Calls
    ) -> dict[str, BaseMessage]:
        """Collapse long code outside the protected recent turns."""
        min_lines = self.min_lines or ctx.policy.collapse_code_min_lines
        stop = _protected_start(view, ctx.policy.compact_keep_turns)
        edits: dict[str, BaseMessage] = {}
        for message in view[:stop]:
            if message.id is None or get_marker(message) is not None:
                continue
            if not isinstance(message, (AIMessage, ToolMessage)):
                continue
            if not isinstance(message.content, str):
                continue
            new = self._collapse_fenced(message.content, min_lines)
            if new is None and isinstance(message, ToolMessage):
                name, args = calls.get(message.tool_call_id, (tool_name_of(message, calls), {}))
                path = is_read_file_tool(name, args)
                if path and path.lower().endswith(_CODE_SUFFIXES):
                    short = collapse_code(message.content, min_lines=min_lines)
                    new = f"{path}:\n{short}" if short is not None else None
            if new is not None and len(new) < len(message.content):
                original_chars = len(message.content)
                replacement = message.model_copy(update={"content": new})
                edits[message.id] = with_marker(
                    replacement, "collapsed_code", original_chars=original_chars
                )
        return edits


class ClearToolResults(_EditingCompaction):
    """Replace all but the newest tool results with a placeholder (ids kept).

    Args:
        keep: Newest results kept verbatim (default: ``policy.clear_tool_results_keep``).
        placeholder: Replacement text (default: ``policy.clear_tool_results_placeholder``).

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
        >>> from langchain_kimi_context.context.compaction import compact
        >>> from langchain_kimi_context.context.policy import ContextPolicy
        >>> log = [HumanMessage("go", id="h")]
        >>> for i in range(4):
        ...     log += [AIMessage("", id=f"a{i}", tool_calls=[{"name": "search",
        ...             "args": {"q": str(i)}, "id": f"c{i}"}]),
        ...             ToolMessage("result " * 300, tool_call_id=f"c{i}", id=f"t{i}")]
        >>> view, _ = compact(log, ContextPolicy(context_window=100_000,
        ...     clear_tool_results_keep=2), strategy=ClearToolResults(), target_tokens=1)
        >>> [m.content[:7] for m in view if isinstance(m, ToolMessage)]
        ['[tool r', '[tool r', 'result ', 'result ']
        >>> view[2].tool_call_id
        'c0'
    """

    name = "clear_tool_results"

    def __init__(self, keep: int | None = None, placeholder: str | None = None) -> None:
        self.keep = keep
        self.placeholder = placeholder

    def _edits(
        self, ctx: CompactionContext, view: list[BaseMessage], calls: _Calls
    ) -> dict[str, BaseMessage]:
        """Clear old tool results."""
        keep = ctx.policy.clear_tool_results_keep if self.keep is None else self.keep
        placeholder = self.placeholder or ctx.policy.clear_tool_results_placeholder
        results = [m for m in view if isinstance(m, ToolMessage)]
        old = results[: max(len(results) - keep, 0)]
        edits: dict[str, BaseMessage] = {}
        for message in old:
            if message.id is None or is_marked(message, "cleared_tool_result"):
                continue
            size = len(message.content) if isinstance(message.content, str) else 0
            tool = tool_name_of(message, calls)
            where = (
                f"read_history({message.id!r}) returns it"
                if ctx.policy.recall
                else "the full text is in the log"
            )
            text = f"{placeholder} ({tool} result, {size} chars; {where})"
            if isinstance(message.content, str) and size <= len(text):
                continue
            replacement = message.model_copy(update={"content": text})
            edits[message.id] = with_marker(
                replacement, "cleared_tool_result", reason="old_tool_result", original_chars=size
            )
        return edits
