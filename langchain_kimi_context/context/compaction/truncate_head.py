"""``TruncateHead``: drop the head of what the model sees, keep the recent turns verbatim.

Contract (pure, no model call): the draft gets a short notice (a ``SystemMessage``
marked ``"summary"`` with ``truncated=<dropped messages>``) as its summary and the cut as
its ``first_kept_id``; the log is untouched and every system message before the cut
stays. The cut keeps the most recent turns that fit the budget:

* it falls at a user-turn start (the earliest one whose tail fits keeps the most);
* when the last turn alone is larger, its user message is pinned and the cut falls
  between its assistant steps (the earliest that fits, else the last), so tool calls
  and their results stay paired;
* nothing changes when no cut drops anything (the whole body already fits).

Only messages of the log can be cut at or pinned (not an earlier summary or notice).
Sizes use the token counter without the tool schemas (they are bound to the model,
never dropped).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage

from langchain_kimi_context.context.compaction.base import (
    CompactionContext,
    CompactionDraft,
    LocalCompaction,
)
from langchain_kimi_context.context.markers import with_marker
from langchain_kimi_context.context.messages import is_system, is_user_turn

__all__ = ["TRUNCATION_NOTICE", "TruncateHead"]

TRUNCATION_NOTICE = (
    "[Earlier conversation truncated: {dropped} older messages were removed from the "
    "context to save space. Continue from the messages below.]"
)
"""Text of the notice that replaces the dropped head (``{dropped}``: how many)."""


def _cut(
    view: list[BaseMessage], log_ids: set[str | None], budget: int, count: CompactionContext
) -> tuple[int, tuple[str, ...]] | None:
    """``(index of the first kept message, pinned ids)``, or ``None`` without a cut."""
    tokens = count.token_counter.count_messages
    body = [i for i, m in enumerate(view) if not is_system(m)]
    starts = [i for i in body if is_user_turn(view[i]) and view[i].id in log_ids]
    for start in starts:  # oldest first: the earliest start that fits keeps the most
        if tokens(view[start:]) <= budget:
            return start, ()
    if not starts:
        return None
    last = starts[-1]
    steps = [i for i in body if i > last and isinstance(view[i], AIMessage)]
    steps = [i for i in steps if view[i].id in log_ids]
    pinned = (str(view[last].id),)
    for step in steps:
        if tokens([view[last], *view[step:]]) <= budget:
            return step, pinned
    return (steps[-1], pinned) if steps else None


class TruncateHead(LocalCompaction):
    """Drop the oldest turns, keeping the most recent ones that fit ``preserve_tokens``.

    Args:
        preserve_tokens: Token budget of the kept recent messages (default: the run's
            ``target_tokens``).

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
        >>> from langchain_kimi_context.context.compaction import compact
        >>> log = [SystemMessage("sys", id="s")]
        >>> for i in range(4):
        ...     log += [HumanMessage(f"q{i} " * 300, id=f"h{i}"), AIMessage("a", id=f"a{i}")]
        >>> view, report = compact(log, strategy=TruncateHead(preserve_tokens=1_500))
        >>> [m.id for m in view][2:], report.record.strategy
        (['h2', 'a2', 'h3', 'a3'], 'truncate_head')
        >>> view[1].content[:55]
        '[Earlier conversation truncated: 4 older messages were '
    """

    name = "truncate_head"

    def __init__(self, preserve_tokens: int | None = None) -> None:
        self.preserve_tokens = preserve_tokens

    def compact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
        """Cut the head of the view (see the module docstring for where).

        Args:
            ctx: Run inputs.
            draft: The draft so far.

        Returns:
            The draft with the notice as its summary, or unchanged.
        """
        view = ctx.view(draft)
        log_ids = {m.id for m in ctx.log}
        budget = ctx.target_tokens if self.preserve_tokens is None else self.preserve_tokens
        found = _cut(view, log_ids, budget, ctx)
        body = [i for i, m in enumerate(view) if not is_system(m)]
        if found is None or found[0] <= (body[0] if body else len(view)):
            return draft
        cut, pinned = found
        dropped = sum(1 for i in body if i < cut and str(view[i].id) not in pinned)
        first_kept = str(view[cut].id)
        covered = ctx.log[-1].id if ctx.log else None
        raw = f"{first_kept}|{covered}|{','.join(pinned)}".encode()
        key = hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:16]
        notice = with_marker(
            SystemMessage(TRUNCATION_NOTICE.format(dropped=dropped), id=f"kc-trunc-{key}"),
            "summary",
            truncated=dropped,
        )
        return replace(
            draft,
            summary=notice,
            first_kept_id=first_kept,
            pinned_ids=pinned,
            strategies=(*draft.strategies, self.name),
        )
