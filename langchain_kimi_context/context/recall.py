"""Recall index: keyword search and exact read-back over a session's full message log.

Compaction and truncation only shrink what the model *sees*; the append-only log keeps
every message whole. :class:`RecallIndex` makes that log reachable again: a BM25
keyword index over passages of the log's messages (user text, assistant text and tool
calls, tool results), built incrementally as the log grows, with

* :meth:`RecallIndex.search`: the best passage of each matching message, as a
  :class:`RecallHit` with a stable ref (``"<message id>#<start>-<end>"``: the message id
  and the passage's character span) and a short excerpt;
* :meth:`RecallIndex.read`: a page of the original text of a ref, character for
  character (a bare message id names the whole message; a span ref names its span).

Rules:

* The text of a message is its content text (``context._common.content_text``; thinking
  parts excluded). An assistant message's tool calls follow it as
  ``[tool call] name({json args})`` lines, so a search for a file name finds the call.
* Results of the recall tools themselves (:data:`RECALL_TOOL_NAMES`) and calls of them
  are readable but never searchable, so a search does not find earlier searches.
* One index belongs to one log (one session): a ref that is not in it is a
  :class:`RecallRefError`, whatever another session holds.
* The index only grows while the log only grows; a log that does not extend the indexed
  one (a rollback, a removed message) is re-indexed from scratch.

Pure and I/O-free: the orchestration layer (``agent/recall_tools.py``) keeps one index
per thread and turns hits and pages into tool results.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from langchain_kimi_context.context._common import content_text
from langchain_kimi_context.context.messages import ensure_message_ids

__all__ = [
    "DEFAULT_READ_CHARS",
    "RECALL_SUMMARY_NOTE",
    "RECALL_TOOL_NAMES",
    "RecallHit",
    "RecallIndex",
    "RecallPage",
    "RecallRefError",
    "format_ref",
    "parse_ref",
    "tokenize",
]

RECALL_TOOL_NAMES: frozenset[str] = frozenset({"search_history", "read_history", "compact_context"})
"""Tools whose calls and results are never indexed for search (they quote the log)."""

RECALL_SUMMARY_NOTE = (
    "Earlier details are not lost: search_history('keywords') searches the whole "
    "conversation (exact errors, values, file contents, tool results) and "
    "read_history(ref) returns the original text."
)
"""Last line of summaries made with ``ContextPolicy(recall=True)``."""

DEFAULT_READ_CHARS = 8_000
"""Characters a read returns when no length is given."""

PASSAGE_CHARS = 800
"""Longest passage indexed (a cut moves back to a newline, else to a break between
words, when one is in the passage's second half)."""

EXCERPT_CHARS = 240
"""Length of a hit's excerpt."""

_K1 = 1.2
_B = 0.75
_WORD = re.compile(r"[^\W_]+")
_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_SPLIT = re.compile(f"[{_CJK}]+|[^{_CJK}]+")
_IS_CJK = re.compile(f"[{_CJK}]")
_BREAK = re.compile(r"[^\w]|_")


class RecallRefError(LookupError):
    """A ref that names no message (or no valid span) of this session's log.

    Example:
        >>> str(RecallRefError("abc")).startswith("No message 'abc'")
        True
    """

    def __init__(self, ref: str, reason: str | None = None) -> None:
        self.ref = ref
        super().__init__(
            reason
            or (
                f"No message {ref!r} in this conversation's history (not found). Refs come "
                "from search_history results or from the markers of truncated tool results "
                "of this same conversation; run search_history to find one."
            )
        )


def tokenize(text: str) -> list[str]:
    """Split ``text`` into lower-case search terms.

    Words are runs of letters and digits (underscores and punctuation separate them);
    Chinese, Japanese and Korean text becomes overlapping character bigrams.

    Args:
        text: Any text.

    Returns:
        The terms, in order.
    """
    words: list[str] = _WORD.findall(text.lower())
    if not _IS_CJK.search(text):
        return words
    out: list[str] = []
    for word in words:
        if not _IS_CJK.search(word):
            out.append(word)
            continue
        for run in _CJK_SPLIT.findall(word):
            if not _IS_CJK.match(run) or len(run) == 1:
                out.append(run)
            else:
                out.extend(run[i : i + 2] for i in range(len(run) - 1))
    return out


def format_ref(message_id: str, start: int | None = None, end: int | None = None) -> str:
    """Return the ref of a message (``start``/``end`` given: of a span of its text).

    Args:
        message_id: The log message id.
        start: First character of the span.
        end: End (exclusive) of the span.

    Returns:
        ``"<id>"`` or ``"<id>#<start>-<end>"``.
    """
    if start is None or end is None:
        return message_id
    return f"{message_id}#{start}-{end}"


_SPAN = re.compile(r"^(?P<id>.+)#(?P<start>\d+)-(?P<end>\d+)$")


def parse_ref(ref: str) -> tuple[str, tuple[int, int] | None]:
    """Split a ref into the message id and the span (``None``: the whole message).

    Args:
        ref: ``"<id>"`` or ``"<id>#<start>-<end>"`` (quotes and spaces around it are
            ignored, models often keep them).

    Returns:
        ``(message_id, (start, end) or None)``.
    """
    ref = ref.strip().strip("'\"`").strip()
    match = _SPAN.match(ref)
    if match is None:
        return ref, None
    return match["id"], (int(match["start"]), int(match["end"]))


@dataclass(frozen=True)
class RecallHit:
    """One search result: the best passage of a matching message.

    Attributes:
        ref: ``"<message id>#<start>-<end>"``: read it with :meth:`RecallIndex.read`.
        message_id: The log message id.
        position: Index of the message in the log.
        role: ``"user"``, ``"assistant"``, ``"tool"`` or ``"system"``.
        tool_name: The tool of a tool result (else ``None``).
        start: First character of the passage in the message text.
        end: End (exclusive) of the passage.
        total_chars: Length of the whole message text.
        score: BM25 score (higher is better).
        excerpt: A short excerpt around the first matching term (whitespace folded).
    """

    ref: str
    message_id: str
    position: int
    role: str
    tool_name: str | None
    start: int
    end: int
    total_chars: int
    score: float
    excerpt: str

    def render(self) -> str:
        """Return the one-line form the ``search_history`` tool shows the model.

        Returns:
            ``ref=... (what, where): excerpt``.
        """
        what = f"tool result of {self.tool_name}" if self.tool_name else f"{self.role} message"
        return (
            f"ref={self.ref!r} ({what}, message {self.position}, chars {self.start}-"
            f"{self.end} of {self.total_chars}): {self.excerpt}"
        )


@dataclass(frozen=True)
class RecallPage:
    """One page of a message's original text.

    Attributes:
        ref: The ref that was read.
        message_id: The log message id.
        start: First character of the page in the message text.
        end: End (exclusive) of the page.
        limit: End of what the ref names (the span end, or the text length).
        total_chars: Length of the whole message text.
        text: ``message_text[start:end]``, exactly.
    """

    ref: str
    message_id: str
    start: int
    end: int
    limit: int
    total_chars: int
    text: str

    @property
    def next_start(self) -> int | None:
        """``start`` of the next page (relative to the ref), ``None`` at the end."""
        if self.end >= self.limit:
            return None
        _, span = parse_ref(self.ref)
        return self.end - (span[0] if span else 0)

    def render(self) -> str:
        """Return the tool result: a one-line header, a newline, then the text verbatim.

        Returns:
            The header and the exact text.
        """
        more = (
            f"; more: read_history({self.ref!r}, start={self.next_start})"
            if self.next_start is not None
            else "; end of it"
        )
        return (
            f"[read_history {self.ref!r}: chars {self.start}-{self.end} of "
            f"{self.total_chars}{more}]\n{self.text}"
        )


@dataclass(frozen=True)
class _Doc:
    message_id: str
    position: int
    role: str
    tool_name: str | None
    text: str
    searchable: bool


_ROLES = {"human": "user", "ai": "assistant", "tool": "tool", "system": "system"}


def _call_lines(message: AIMessage) -> list[str]:
    return [
        f"[tool call] {c['name']}({json.dumps(c.get('args') or {}, ensure_ascii=False)})"
        for c in message.tool_calls
        if c["name"] not in RECALL_TOOL_NAMES
    ]


def _document(message: BaseMessage, position: int, call_names: dict[str, str]) -> _Doc:
    text = content_text(message.content)
    tool_name: str | None = None
    searchable = True
    if isinstance(message, AIMessage) and message.tool_calls:
        lines = _call_lines(message)
        if lines:
            text = "\n".join([text, *lines]) if text else "\n".join(lines)
        elif not text.strip():
            searchable = False  # only recall calls: they quote the log
    elif isinstance(message, ToolMessage):
        tool_name = message.name or call_names.get(message.tool_call_id)
        searchable = tool_name not in RECALL_TOOL_NAMES
    return _Doc(
        message_id=str(message.id),
        position=position,
        role=_ROLES.get(message.type, message.type),
        tool_name=tool_name,
        text=text,
        searchable=searchable,
    )


def _passages(text: str) -> Iterable[tuple[int, int]]:
    start, n = 0, len(text)
    while start < n:
        end = min(start + PASSAGE_CHARS, n)
        if end < n:
            half = start + PASSAGE_CHARS // 2
            cut = text.rfind("\n", half, end)
            if cut < 0:  # else the last break between words, so no word is split
                cut = max((m.start() for m in _BREAK.finditer(text, half, end)), default=-1)
            if cut > start:
                end = cut + 1
        yield start, end
        start = end


def _excerpt(text: str, start: int, end: int, terms: Sequence[str]) -> str:
    lowered = text[start:end].lower()
    hits = [i for t in terms if (i := lowered.find(t)) >= 0]
    first = start + (min(hits) if hits else 0)
    lo = max(start, first - EXCERPT_CHARS // 3)
    hi = min(end, lo + EXCERPT_CHARS)
    lo = max(start, min(lo, hi - EXCERPT_CHARS))
    body = " ".join(text[lo:hi].split())
    return ("…" if lo > 0 else "") + body + ("…" if hi < len(text) else "")


def _hit(doc: _Doc, start: int, end: int, score: float, terms: Sequence[str]) -> RecallHit:
    return RecallHit(
        ref=format_ref(doc.message_id, start, end),
        message_id=doc.message_id,
        position=doc.position,
        role=doc.role,
        tool_name=doc.tool_name,
        start=start,
        end=end,
        total_chars=len(doc.text),
        score=score,
        excerpt=_excerpt(doc.text, start, end, terms),
    )


class RecallIndex:
    r"""A BM25 keyword index over one session's log, with exact read-back.

    Thread-safe: one lock guards updates and reads.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
        >>> log = [HumanMessage("read the config", id="u1"),
        ...        AIMessage("", id="a1", tool_calls=[{"name": "cat", "id": "c1",
        ...            "args": {"path": "settings.toml"}}]),
        ...        ToolMessage("port = 8443\nhost = 'db.internal'", tool_call_id="c1",
        ...            id="t1")]
        >>> index = RecallIndex()
        >>> index.update(log)
        3
        >>> hit = index.search("which port?")[0]
        >>> hit.ref, hit.tool_name
        ('t1#0-32', 'cat')
        >>> index.read("t1").text == log[2].content
        True
        >>> index.search("settings.toml")[0].message_id
        'a1'
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.generation = -1
        """Bumped whenever the index is rebuilt (what was mirrored elsewhere is stale)."""
        self._reset()

    def _reset(self) -> None:
        self.generation += 1
        self._ids: list[str] = []
        self._docs: list[_Doc] = []
        self._by_id: dict[str, int] = {}
        self._call_names: dict[str, str] = {}
        # passage -> (doc index, start, end, length in terms)
        self._passages: list[tuple[int, int, int, int]] = []
        self._postings: dict[str, dict[int, int]] = {}
        self._total_terms = 0

    def __len__(self) -> int:
        return len(self._docs)

    @property
    def message_ids(self) -> tuple[str, ...]:
        """Ids of the indexed messages, in log order."""
        return tuple(self._ids)

    def update(self, log: Sequence[BaseMessage]) -> int:
        """Index the messages of ``log`` that are not indexed yet.

        Args:
            log: The session's full, append-only log (messages without ids get the
                deterministic ids of ``ensure_message_ids``).

        Returns:
            How many messages were indexed by this call (the whole log when it does
            not extend the indexed one: then the index is rebuilt).
        """
        with self._lock:
            n = len(self._ids)
            if len(log) == n and (not n or log[-1].id == self._ids[-1]):
                return 0
            full = ensure_message_ids(log)
            if len(full) < n or any(m.id != i for m, i in zip(full, self._ids, strict=False)):
                self._reset()
                n = 0
            new = full[n:]
            for offset, message in enumerate(new):
                self._add(message, n + offset)
            return len(new)

    def _add(self, message: BaseMessage, position: int) -> None:
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                if call.get("id"):
                    self._call_names[str(call["id"])] = call["name"]
        doc = _document(message, position, self._call_names)
        index = len(self._docs)
        self._docs.append(doc)
        self._ids.append(doc.message_id)
        self._by_id.setdefault(doc.message_id, index)
        if not doc.searchable:
            return
        for start, end in _passages(doc.text):
            terms = tokenize(doc.text[start:end])
            if not terms:
                continue
            pid = len(self._passages)
            self._passages.append((index, start, end, len(terms)))
            self._total_terms += len(terms)
            postings = self._postings
            for term, tf in Counter(terms).items():
                entry = postings.get(term)
                if entry is None:
                    postings[term] = {pid: tf}
                else:
                    entry[pid] = tf

    def search(
        self, query: str, limit: int = 5, *, exclude_ids: Iterable[str] = ()
    ) -> list[RecallHit]:
        """Return the best-matching messages for ``query`` (BM25 over passages).

        Each message appears once, with its best passage. A passage holding the query
        verbatim (case-insensitive) ranks above one holding its words apart. Ties go to
        the newer message.

        Args:
            query: Keywords (an error text, a file name, an identifier...).
            limit: At most this many hits (>= 1).
            exclude_ids: Message ids to leave out (e.g. messages fully in view).

        Returns:
            The hits, best first (empty when nothing matches).

        Raises:
            ValueError: ``limit`` below 1.
        """
        if limit < 1:
            msg = f"limit must be at least 1 (got {limit})"
            raise ValueError(msg)
        terms = list(dict.fromkeys(tokenize(query)))
        if not terms:
            return []
        phrase = " ".join(query.lower().split())
        excluded = set(exclude_ids)
        with self._lock:
            count = len(self._passages)
            if not count:
                return []
            avg = self._total_terms / count
            scores: dict[int, float] = {}
            for term in terms:
                postings = self._postings.get(term)
                if not postings:
                    continue
                idf = math.log(1 + (count - len(postings) + 0.5) / (len(postings) + 0.5))
                for pid, tf in postings.items():
                    length = self._passages[pid][3]
                    norm = tf * (_K1 + 1) / (tf + _K1 * (1 - _B + _B * length / avg))
                    scores[pid] = scores.get(pid, 0.0) + idf * norm
            best: dict[int, tuple[float, int]] = {}
            for pid, score in scores.items():
                doc_index, start, end, _ = self._passages[pid]
                doc = self._docs[doc_index]
                if doc.message_id in excluded:
                    continue
                if len(phrase) > 3 and phrase in " ".join(doc.text[start:end].lower().split()):
                    score *= 2.0
                if doc_index not in best or score > best[doc_index][0]:
                    best[doc_index] = (score, pid)
            ranked = sorted(best.items(), key=lambda item: (-item[1][0], -item[0]))[:limit]
            hits = []
            for doc_index, (score, pid) in ranked:
                doc = self._docs[doc_index]
                _, start, end, _ = self._passages[pid]
                hits.append(_hit(doc, start, end, round(score, 4), terms))
            return hits

    def passages(self) -> list[tuple[str, str]]:
        """Return every searchable passage as ``(ref, text)``, in indexing order.

        New passages are only ever appended (until a rebuild), so a caller mirroring
        them elsewhere (an embedding store) can resume from the count it has.

        Returns:
            The passages.
        """
        with self._lock:
            return [
                (format_ref(self._docs[d].message_id, s, e), self._docs[d].text[s:e])
                for d, s, e, _ in self._passages
            ]

    def hit_for(self, ref: str) -> RecallHit | None:
        """Return a hit (score 0, excerpt from its start) for a span ref of this log.

        Args:
            ref: ``"<id>#<start>-<end>"``.

        Returns:
            The hit, or ``None`` when the ref is not in this log.
        """
        message_id, span = parse_ref(ref)
        with self._lock:
            index = self._by_id.get(message_id)
            if index is None:
                return None
            doc = self._docs[index]
        start, end = span or (0, len(doc.text))
        if not 0 <= start <= end <= len(doc.text):
            return None
        return _hit(doc, start, end, 0.0, ())

    def text_of(self, message_id: str) -> str:
        """Return the whole text of a message (see the module docstring for what it is).

        Args:
            message_id: A log message id.

        Returns:
            The text.

        Raises:
            RecallRefError: No such message in this log.
        """
        with self._lock:
            index = self._by_id.get(message_id)
            if index is None:
                raise RecallRefError(message_id)
            return self._docs[index].text

    def read(self, ref: str, start: int = 0, length: int | None = None) -> RecallPage:
        """Return a page of the original text a ref names.

        Args:
            ref: A message id (the whole message) or ``"<id>#<start>-<end>"`` (a span).
            start: Offset of the page, counted from the start of what the ref names.
            length: Characters to return (default :data:`DEFAULT_READ_CHARS`).

        Returns:
            The page; ``page.text`` is exactly that slice of the original text.

        Raises:
            RecallRefError: The ref names no message of this log, or a span outside it.
            ValueError: ``start`` below 0 or ``length`` below 1.
        """
        if start < 0:
            msg = f"start must be 0 or more (got {start})"
            raise ValueError(msg)
        length = DEFAULT_READ_CHARS if length is None else length
        if length < 1:
            msg = f"length must be at least 1 (got {length})"
            raise ValueError(msg)
        message_id, span = parse_ref(ref)
        text = self.text_of(message_id)
        lo, hi = span if span is not None else (0, len(text))
        if lo > hi or hi > len(text):
            raise RecallRefError(
                ref,
                f"The span of ref {ref!r} ({lo}-{hi}) is outside its message (0-"
                f"{len(text)} characters); read_history({message_id!r}) reads it whole.",
            )
        begin = min(lo + start, hi)
        end = min(begin + length, hi)
        canonical = format_ref(message_id, *span) if span else message_id
        return RecallPage(
            ref=canonical,
            message_id=message_id,
            start=begin,
            end=end,
            limit=hi,
            total_chars=len(text),
            text=text[begin:end],
        )
