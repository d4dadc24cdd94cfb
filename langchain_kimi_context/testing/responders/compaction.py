"""The compaction responder: a Markdown summary built from the request text.

Contract: :func:`is_compaction_request` recognises a summarisation request (no tools and
a first system message about compacting or summarising, or the cache-friendly form
ending in a "Compaction request:" user message); :class:`CompactionResponder` answers it
with the six headings (current task, errors, code, system context, decisions, TODO),
at most a fraction of the request's prompt tokens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_kimi_context.context.compaction.llm import SUMMARY_SECTIONS
from langchain_kimi_context.testing.responders.directives import _plain_text
from langchain_kimi_context.testing.responders.protocol import ReplySpec, ResponderRequest
from langchain_kimi_context.testing.tokenizer import EmulatorTokenizer, message_text


def is_compaction_request(request: ResponderRequest) -> bool:
    """Return whether ``request`` asks for a compaction summary.

    True when the request has no tools and its FIRST message is a system message that
    contains "compact" or "summar" (case-insensitive) and is not itself a stored summary
    (text starting with "Previous context has been compacted"), so an ordinary tool-less
    turn after a compaction is answered by the agent responder, not summarised again.

    Returns:
        Whether the compaction responder should answer.

    Example:
        >>> is_compaction_request(ResponderRequest.from_messages([
        ...     {"role": "system", "content": "Summarize the conversation."},
        ...     {"role": "user", "content": "..."}]))
        True
        >>> is_compaction_request(ResponderRequest.from_messages([
        ...     {"role": "system", "content": "Previous context has been compacted. ..."},
        ...     {"role": "user", "content": "next question"}]))
        False
    """
    if _is_cached_compaction_request(request):
        return True
    if request.tools or not request.messages:
        return False
    first = request.messages[0]
    if first.get("role") != "system":
        return False
    text = message_text(first.get("content")).strip().lower()
    if text.startswith("previous context has been compacted"):
        return False
    return "compact" in text or "summar" in text


def _is_cached_compaction_request(request: ResponderRequest) -> bool:
    """The cache-friendly form: the conversation + a last user "Compaction request:"."""
    if not request.messages or request.messages[-1].get("role") != "user":
        return False
    text = message_text(request.messages[-1].get("content")).lstrip().lower()
    return text.startswith("compaction request:")


_ERROR_RE = re.compile(
    r"error|exception|traceback|failed|failure|fatal|panic|fix(?:ed)?\b|solution"
    r"|^File \"[^\"]+\", line \d+",
    re.I,
)
_PATH_RE = re.compile(
    r"(?<![\w/.-])(?:[\w.-]+/)*[\w-]+(?:\.[\w-]+)*\.(?:py|pyi|js|jsx|ts|tsx|md|json|toml|yaml|"
    r"yml|txt|rs|go|java|kt|c|h|cc|cpp|hpp|sh|cfg|ini|sql|html|css|ipynb|lock)\b"
)
_DECISION_RE = re.compile(r"\bdecision\s*:", re.I)
_TODO_RE = re.compile(r"\btodo\s*:", re.I)
_CONTEXT_RE = re.compile(
    r"\b(?:python|version|environment|platform|os|linux|macos|windows|config(?:uration)?|"
    r"cwd|working directory|branch)\b",
    re.I,
)
_TRANSCRIPT_USER_RE = re.compile(r"^\s*(?:\[?(?:user|human)\]?\s*[:>])\s*(.+)$", re.I)


def _until_next_marker(text: str) -> str:
    """Cut ``Decision: a. TODO: b`` before the second marker."""
    cut = [m.start() for m in (*_DECISION_RE.finditer(text), *_TODO_RE.finditer(text))]
    later = [c for c in cut if c > 0]
    return text[: min(later)].rstrip() if later else text


def _clip(line: str, limit: int = 200) -> str:
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _dedupe(items: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        if item and item not in seen:
            seen.add(item)
            out.append(item)
    return out


class CompactionResponder:
    r"""Answers compaction requests with a structured summary built from the input.

    Args:
        max_fraction: The summary is at most this fraction of the prompt tokens
            (headings excepted for tiny inputs).
        max_items_per_section: Cap on bullet points per section.

    Example:
        >>> msgs = [
        ...     {"role": "system", "content": "You compact conversations."},
        ...     {"role": "user", "content": "Fix the parser in src/parser.py"},
        ...     {"role": "assistant", "content": "ValueError: bad token at line 3.\n"
        ...      "Decision: use a regex lexer.\nTODO: add tests\n" + "filler " * 400},
        ...     {"role": "user", "content": "Summarize the conversation so far."}]
        >>> text = CompactionResponder()(ResponderRequest.from_messages(msgs)).content
        >>> "## Current Task" in text and "src/parser.py" in text and "Decision:" in text
        True
    """

    HEADINGS = SUMMARY_SECTIONS

    def __init__(self, *, max_fraction: float = 0.25, max_items_per_section: int = 40) -> None:
        if not 0 < max_fraction <= 1:
            msg = "max_fraction must be in (0, 1]"
            raise ValueError(msg)
        self.max_fraction = max_fraction
        self.max_items_per_section = max_items_per_section

    def __call__(self, request: ResponderRequest) -> ReplySpec:
        """Return the summary for ``request``.

        Args:
            request: The validated compaction request.

        Returns:
            The reply (content = the Markdown summary).
        """
        messages = request.messages
        if _is_cached_compaction_request(request):
            messages = messages[:-1]  # the instruction is not conversation content
        sections = self.extract(messages)
        budget = int(request.prompt_tokens * self.max_fraction)
        text = self._render(sections, budget, request.tokenizer)
        reasoning = "Summarising the conversation." if request.thinking else None
        return ReplySpec(content=text, reasoning=reasoning)

    def extract(self, messages: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
        """Extract the section items from ``messages``.

        Args:
            messages: The compaction request's messages.

        Returns:
            Heading -> items, most important first.
        """
        first_system = next((i for i, m in enumerate(messages) if m.get("role") == "system"), None)
        errors: list[str] = []
        paths: list[str] = []
        decisions: list[str] = []
        todos: list[str] = []
        context: list[str] = []
        user_requests: list[str] = []
        previous_task: str | None = None
        for index, message in enumerate(messages):
            role = message.get("role")
            text = message_text(message.get("content"))
            for call in message.get("tool_calls") or []:
                if isinstance(call, Mapping):
                    fn = call.get("function") or {}
                    text += f"\n{fn.get('name', '')} {fn.get('arguments', '')}"
            folded = text.lstrip().lower().startswith("previous context has been compacted")
            if role == "system" and not folded:
                if index != first_system and text.strip():
                    context.append(_clip(text))
                continue
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            # A rendered transcript ("[user]: ...") names the user turns itself.
            turns = [m.group(1) for m in map(_TRANSCRIPT_USER_RE.match, lines) if m]
            if role == "user":
                candidates = turns or [_plain_text(text)]
                user_requests.extend(
                    c
                    for c in candidates
                    if c
                    and not c.startswith("@")
                    and "compact" not in c.lower()
                    and "summar" not in c.lower()
                )
            heading = ""
            for stripped in lines:
                if stripped.startswith("#"):
                    heading = stripped.lstrip("#").strip().lower()
                    continue
                item = re.sub(r"^[-*]\s+", "", stripped)
                if item.lower() in {"none", "(none)"}:
                    continue
                if heading == "current task" and previous_task is None:
                    previous_task = item  # from a previous summary being folded in
                paths.extend(_PATH_RE.findall(item))
                decision = _DECISION_RE.search(item)
                if decision:
                    decisions.append(_clip(_until_next_marker(item[decision.start() :])))
                todo = _TODO_RE.search(item)
                if todo:
                    todos.append(_clip(_until_next_marker(item[todo.start() :])))
                if _ERROR_RE.search(item):
                    errors.append(_clip(item))
                elif item.lower().startswith("[system]") or (
                    _CONTEXT_RE.search(item)
                    and not (role == "user" and not turns)
                    and not _TRANSCRIPT_USER_RE.match(item)
                ):
                    context.append(_clip(item))
        if not user_requests and previous_task:
            user_requests.append(previous_task)
        task = [_clip(user_requests[-1], 400)] if user_requests else []
        cap = self.max_items_per_section
        return {
            "Current Task": task,
            "Errors & Solutions": _dedupe(errors)[-cap:],
            "Code": _dedupe(paths)[:cap],
            "System Context": _dedupe(context)[:cap],
            "Design Decisions": _dedupe(decisions)[:cap],
            "TODO": _dedupe(todos)[:cap],
        }

    def _render(
        self, sections: Mapping[str, list[str]], budget: int, tokenizer: EmulatorTokenizer
    ) -> str:
        body: dict[str, list[str]] = {h: [] for h in self.HEADINGS}
        used = sum(tokenizer.count_text(f"## {h}\n") for h in self.HEADINGS)
        # Round-robin over sections in priority order so each gets a share.
        priority = (
            "Current Task",
            "Design Decisions",
            "TODO",
            "Errors & Solutions",
            "Code",
            "System Context",
        )
        queues = {h: list(sections.get(h, [])) for h in priority}
        progress = True
        while progress:
            progress = False
            for heading in priority:
                if not queues[heading]:
                    continue
                item = queues[heading].pop(0)
                line = f"- {item}"
                cost = tokenizer.count_text(line)
                if used + cost > budget:
                    queues[heading] = []
                    continue
                body[heading].append(line)
                used += cost
                progress = True
        none_cost = tokenizer.count_text("- (none)")
        lines: list[str] = []
        for heading in self.HEADINGS:
            lines.append(f"## {heading}")
            if not body[heading] and used + none_cost <= budget:
                body[heading].append("- (none)")
                used += none_cost
            lines.extend(body[heading])
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"
