"""LLM compaction: summarise everything but the recent turns into a structured outline.

What the model keeps seeing verbatim: every system message (instructions), the tool
schemas (bound to the model, never touched), and the last ``policy.compact_keep_turns``
user turns with their assistant/tool messages. Everything else, *including an earlier
summary*, is summarised into one ``SystemMessage`` marked ``"summary"`` whose text starts
with :data:`SUMMARY_HEADER`.

Unlike LangChain's ``SummarizationMiddleware`` (which trims the span it summarises to its
last 4,000 tokens), the summariser sees the whole span: a span larger than
``policy.compact_chunk_tokens`` is summarised chunk by chunk, each call folding the
summary so far into the next (so the result merges all chunks), and a later compaction
folds the previous summary in, so facts from before the first compaction survive the
second and the third. Only the reply's visible text becomes the summary; in the
transcript form thinking parts (``reasoning_content``, reasoning blocks) never reach the
summariser (the cached-prefix form sends the conversation as the model already saw it).

Two request forms (``policy.compact_summary_form``):

* ``"transcript"``: ``[SystemMessage(summariser prompt), HumanMessage(rendered span)]``,
  chunked; every token is new to the cache, so it is read at the cache-miss price;
* ``"cached_prefix"``: the conversation exactly as the model last saw it (same system
  prompt, same tools bound with ``tool_choice="none"``, same history, previous summary
  included) with one user message appended that starts with
  :data:`COMPACTION_REQUEST_LEAD` and carries the instructions, so the provider's prefix
  cache serves the history at the cache-hit price. It needs a model that can bind the
  tools and a view well inside the window (80% of it less the reply reserve), and is
  never used after an overflow; otherwise the transcript form is used.

``"auto"`` estimates both requests at the model's prices (``model_profile`` of a
:class:`~langchain_kimi_context.KimiChatModel`) and sends the cheaper one: the cached
prefix when the history is read at a discount larger than the share of it that is
summarised, the transcript when the kept tail dominates or the prices are unknown.

A failed or empty summary is never stored: up to ``policy.compact_max_attempts`` calls
with exponential backoff (retryable errors and empty replies only), then the draft is
returned unchanged with the failure noted, so the history stays as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import Runnable, RunnableBinding

from langchain_kimi_context.backoff import arun_with_retries, backoff_delay, run_with_retries
from langchain_kimi_context.context.compaction._common import (
    is_real_user_turn,
    is_system,
    message_text,
    tool_call_index,
    tool_name_of,
)
from langchain_kimi_context.context.compaction.base import (
    CompactionCancelledError,
    CompactionContext,
    CompactionDraft,
)
from langchain_kimi_context.context.compaction.records import apply_compactions
from langchain_kimi_context.context.markers import with_marker
from langchain_kimi_context.context.recall import RECALL_SUMMARY_NOTE
from langchain_kimi_context.errors import KimiEmptyResponseError, is_retryable_error

__all__ = [
    "COMPACTION_REQUEST_LEAD",
    "COMPACTION_SYSTEM_PROMPT",
    "SUMMARY_HEADER",
    "SUMMARY_SECTIONS",
    "LLMCompaction",
    "render_transcript",
]

SUMMARY_HEADER = "Previous context has been compacted. Here is the compaction output:"
"""First line of every summary message."""

SUMMARY_SECTIONS = (
    "Current Task",
    "Errors & Solutions",
    "Code",
    "System Context",
    "Design Decisions",
    "TODO",
)
"""The outline's headings, in priority order."""

COMPACTION_SYSTEM_PROMPT = """\
You are a helpful assistant that compacts conversation context. Summarise the conversation \
you are given into a structured outline from which the assistant can continue the work \
without the original messages.

Compression priorities (in order):
1. Current Task: what is being worked on RIGHT NOW and the next step.
2. Errors & Solutions: every error encountered and how it was resolved.
3. Code: final working versions only.
4. System Context: project structure, file paths, dependencies, environment, commands.
5. Design Decisions: architectural choices and their reasons.
6. TODO: unfinished tasks.

Rules:
- MUST KEEP: exact error messages, key stack-trace lines, file paths, identifiers, numbers, \
working solutions, and the user's explicit instructions and constraints.
- MERGE similar discussions into single points.
- REMOVE redundant explanations and failed attempts (keep the lesson learned).
- CONDENSE long code to signatures plus key logic; keep code under 20 lines whole.
- If a previous summary is given, fold all of its facts into the new outline; drop none.
- Output only the outline, with exactly these Markdown headings, in this order:
## Current Task
## Errors & Solutions
## Code
## System Context
## Design Decisions
## TODO
Write "- none" under a heading with nothing to report."""
"""System prompt of the summariser call (no tools are bound to that call)."""

COMPACTION_REQUEST_LEAD = "Compaction request:"
"""First words of the instruction appended in the cached-prefix request form."""

SummaryForm = Literal["cached_prefix", "transcript"]

_Ask = tuple[list[BaseMessage], Runnable[LanguageModelInput, BaseMessage] | None, list[str]]
"""One summariser request: the messages, the model (``None``: the strategy's), failures."""

# The cached-prefix form re-sends the whole view: only while the view is well inside the
# window (this share of it minus the reply reserve), and never when the view itself was
# refused (overflow) or judged too large to send (preflight).
_CACHED_FORM_WINDOW_SHARE = 0.8
_UNSENDABLE_VIEW_TRIGGERS = frozenset({"overflow", "preflight"})


def _render(message: BaseMessage, calls: dict[str, tuple[str, dict[str, Any]]], cap: int) -> str:
    text = message_text(message)
    if len(text) > cap:
        head, tail = text[: cap * 2 // 3], text[-(cap // 3) :]
        text = f"{head}\n[... {len(text) - len(head) - len(tail)} chars omitted ...]\n{tail}"
    if isinstance(message, ToolMessage):
        label = f"tool result ({tool_name_of(message, calls)})"
    elif isinstance(message, AIMessage):
        label = "assistant"
        if message.tool_calls:
            rendered = ", ".join(
                f"{c['name']}({json.dumps(c.get('args') or {}, ensure_ascii=False)})"
                for c in message.tool_calls
            )
            text = f"{text}\n[calls: {rendered}]" if text else f"[calls: {rendered}]"
    elif isinstance(message, HumanMessage):
        label = "user"
    elif isinstance(message, SystemMessage):
        label = "system"
    else:
        label = message.type
    return f"[{label}]: {text}"


def render_transcript(
    messages: Sequence[BaseMessage], *, max_chars_per_message: int = 60_000
) -> str:
    """Render messages as the plain transcript the summariser reads (no thinking parts).

    Args:
        messages: The messages to render.
        max_chars_per_message: Longer texts keep their head and tail around a marker.

    Returns:
        The transcript.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> print(render_transcript([HumanMessage("Fix a.py"), AIMessage("Done",
        ...     additional_kwargs={"reasoning_content": "secret thoughts"})]))
        [user]: Fix a.py
        <BLANKLINE>
        [assistant]: Done
    """
    calls = tool_call_index(messages)
    return "\n\n".join(_render(m, calls, max_chars_per_message) for m in messages)


@dataclass(frozen=True)
class _Plan:
    first_kept_id: str | None
    pinned_ids: tuple[str, ...]
    span: tuple[BaseMessage, ...]
    previous_summary: str | None
    first_kept_text: str = ""


def _profile_of(model: Any) -> Any:
    """The ``KimiModelProfile`` of a model or of the model inside a binding."""
    for candidate in (model, getattr(model, "bound", None)):
        profile = getattr(candidate, "model_profile", None)
        if profile is not None and hasattr(profile, "pricing"):
            return profile
    return None


def _anchor_of(ctx: CompactionContext, draft: CompactionDraft) -> tuple[Any, ...] | None:
    if draft.summary is not None:
        return (draft.summary, draft.first_kept_id, draft.pinned_ids, None)
    for record in reversed(ctx.records):
        if record.summary is not None:
            return (
                record.summary,
                record.first_kept_id,
                record.pinned_ids,
                record.covered_until_id,
            )
    return None


def _strip_header(text: str) -> str:
    text = text.removesuffix(RECALL_SUMMARY_NOTE).rstrip()
    return text[len(SUMMARY_HEADER) :].strip() if text.startswith(SUMMARY_HEADER) else text


class LLMCompaction:
    r"""Summarise all but the last N user turns with a model (the one model call allowed).

    Args:
        model: Any chat model / runnable taking messages and returning a message (e.g.
            ``KimiChatModel``; a cheap model is fine). No tools are bound for the call.
        keep_turns: Recent user turns kept verbatim (default ``policy.compact_keep_turns``).
        max_tail_share: When the kept turns exceed this share of the target, fewer turns
            are kept (down to cutting inside the current turn, whose user message is then
            pinned) so the compaction actually gets under the target.
        system_prompt: The summariser's instructions.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> from langchain_kimi_context.context.compaction import compact
        >>> from langchain_kimi_context.context.policy import ContextPolicy
        >>> fake = GenericFakeChatModel(messages=iter([AIMessage(
        ...     "## Current Task\n- ship v2\n## Errors & Solutions\n- none")]))
        >>> log = []
        >>> for i in range(6):
        ...     log += [HumanMessage(f"step {i} " * 200, id=f"h{i}"),
        ...             AIMessage(f"done {i} " * 200, id=f"a{i}")]
        >>> view, report = compact(log, ContextPolicy(context_window=100_000,
        ...     compact_keep_turns=2), target_tokens=3_000, strategy=LLMCompaction(fake))
        >>> view[0].content.startswith("Previous context has been compacted")
        True
        >>> [m.id for m in view[1:]]
        ['h4', 'a4', 'h5', 'a5']
    """

    name = "llm_summary"

    def __init__(
        self,
        model: Runnable[LanguageModelInput, BaseMessage],
        *,
        keep_turns: int | None = None,
        max_tail_share: float = 0.6,
        system_prompt: str = COMPACTION_SYSTEM_PROMPT,
    ) -> None:
        if not 0 < max_tail_share <= 1:
            msg = f"max_tail_share must be in (0, 1] (got {max_tail_share})"
            raise ValueError(msg)
        self.model = model
        self.keep_turns = keep_turns
        self.max_tail_share = max_tail_share
        self.system_prompt = system_prompt

    # ----------------------------------------------------------------- planning
    def plan(self, ctx: CompactionContext, draft: CompactionDraft) -> _Plan | None:
        """Choose the cut: what stays verbatim and which span is summarised.

        Args:
            ctx: Run inputs.
            draft: The draft so far (its replacements count for the tail's size).

        Returns:
            The plan, or ``None`` when there is nothing to summarise.
        """
        log = ctx.log
        n = len(log)
        anchor = _anchor_of(ctx, draft)
        previous: str | None = None
        prev_cut = 0
        prev_pinned: set[str] = set()
        if anchor is not None:
            summary, first_kept, pinned, covered = anchor
            previous = _strip_header(message_text(summary))
            ids = [m.id for m in log]
            if first_kept is not None:
                prev_cut = ids.index(first_kept)
            elif covered is not None:
                prev_cut = ids.index(covered) + 1
            else:
                prev_cut = n
            prev_pinned = set(pinned)
        live = [
            i
            for i in range(n)
            if (i >= prev_cut or log[i].id in prev_pinned) and not is_system(log[i])
        ]
        starts = [i for i in live if is_real_user_turn(log[i])]
        keep = ctx.policy.compact_keep_turns if self.keep_turns is None else self.keep_turns
        candidates: list[tuple[int, tuple[int, ...]]] = []
        if keep == 0:
            candidates.append((n, ()))
        for k in range(min(keep, len(starts)), 0, -1):
            candidates.append((starts[-k], ()))
        last_start = starts[-1] if starts else -1
        steps = [i for i in live if i > last_start and isinstance(log[i], AIMessage)]
        pin = (last_start,) if last_start >= 0 else ()
        # inside the current turn (a long tool loop): pin its user message, keep the
        # newest assistant steps; steps[0] would equal the one-turn cut above
        candidates.extend((j, pin) for j in steps[1:])

        def span_of(cut: int, pinned: tuple[int, ...]) -> list[int]:
            return [i for i in live if i < cut and i not in pinned]

        viable = [(cut, pinned) for cut, pinned in candidates if span_of(cut, pinned)]
        if not viable:
            return None
        replacements = dict(draft.replacements)
        for record in reversed(ctx.records):  # the draft, then the newest record, wins
            for key, value in record.replacements.items():
                replacements.setdefault(key, value)
        budget = int(ctx.target_tokens * self.max_tail_share)
        chosen = viable[-1]
        for cut, pinned in viable:
            tail_ids = [*pinned, *(i for i in live if i >= cut)]
            tail = [replacements.get(log[i].id or "", log[i]) for i in tail_ids]
            if ctx.token_counter.count_messages(tail) <= budget:
                chosen = (cut, pinned)
                break
        cut, pinned = chosen
        span_ids = span_of(cut, pinned)
        if previous is None and ctx.policy.compact_min_span_share > 0:
            # a summary of a span this small next to what stays verbatim buys nothing:
            # no model call, no record (the truncate stage handles a dominant tail)
            every = [replacements.get(log[i].id or "", log[i]) for i in live]
            span = [replacements.get(log[i].id or "", log[i]) for i in span_ids]
            total = ctx.token_counter.count_messages(every)
            if ctx.token_counter.count_messages(span) < ctx.policy.compact_min_span_share * total:
                return None
        return _Plan(
            first_kept_id=log[cut].id if cut < n else None,
            pinned_ids=tuple(log[i].id or "" for i in pinned),
            span=tuple(log[i] for i in span_ids),
            previous_summary=previous,
            first_kept_text=message_text(log[cut])[:80] if cut < n else "",
        )

    # ----------------------------------------------------------------- prompts
    def _text_tokens(self, ctx: CompactionContext, text: str) -> int:
        count_text = getattr(ctx.token_counter, "count_text", None)
        if callable(count_text):
            return int(count_text(text))
        return int(len(text) / ctx.policy.chars_per_token) + 1

    def requests(self, ctx: CompactionContext, plan: _Plan) -> list[tuple[str, int]]:
        """Split the span into chunks of at most ``compact_chunk_tokens`` (and 60% of the window).

        Args:
            ctx: Run inputs.
            plan: The plan.

        Returns:
            ``(transcript chunk, its tokens)`` pairs, in order.
        """
        policy = ctx.policy
        # the summariser call must fit the model's window too (with the prompt, the
        # summary so far and the reply), whatever compact_chunk_tokens says
        room = max(min(policy.compact_chunk_tokens, int(ctx.window * 0.6)), 1_000)
        cap = max(int(room * policy.chars_per_token / 2), 2_000)
        calls = tool_call_index(ctx.log)
        chunks: list[tuple[str, int]] = []
        parts: list[str] = []
        size = 0
        for message in plan.span:
            piece = _render(message, calls, cap)
            tokens = self._text_tokens(ctx, piece)
            if parts and size + tokens > room:
                chunks.append(("\n\n".join(parts), size))
                parts, size = [], 0
            parts.append(piece)
            size += tokens
        if parts:
            chunks.append(("\n\n".join(parts), size))
        return chunks

    def build_messages(
        self, ctx: CompactionContext, chunk: str, chunk_tokens: int, previous: str | None
    ) -> list[BaseMessage]:
        """Build the summariser request for one chunk.

        Args:
            ctx: Run inputs.
            chunk: The transcript chunk.
            chunk_tokens: Its size.
            previous: The summary so far (an earlier compaction or earlier chunks).

        Returns:
            ``[SystemMessage(instructions), HumanMessage(previous summary + transcript)]``.
        """
        policy = ctx.policy
        prev_tokens = self._text_tokens(ctx, previous) if previous else 0
        budget = max(
            policy.compact_summary_min_tokens,
            int((chunk_tokens + prev_tokens) / policy.compact_target_ratio),
        )
        body: list[str] = []
        if previous:
            body.append(
                "Summary of the conversation before this part (fold every fact of it into "
                f"your outline):\n<previous_summary>\n{previous}\n</previous_summary>"
            )
        body.append(f"Conversation to compact:\n<conversation>\n{chunk}\n</conversation>")
        body.append(
            f"Write the compacted outline now, at most about {budget} tokens "
            f"(a {policy.compact_target_ratio:g}:1 compression)."
        )
        return [SystemMessage(self.system_prompt), HumanMessage("\n\n".join(body))]

    def _budget_tokens(self, ctx: CompactionContext, tokens: int) -> int:
        policy = ctx.policy
        return max(policy.compact_summary_min_tokens, int(tokens / policy.compact_target_ratio))

    def cached_request(self, ctx: CompactionContext, plan: _Plan) -> list[BaseMessage]:
        """Build the cached-prefix request: the view the model last saw + the instruction.

        Args:
            ctx: Run inputs.
            plan: The plan.

        Returns:
            The pre-compaction view as the caller sends it (``ctx.prepare``), so it is
            byte-identical to the last request's messages, with one ``HumanMessage``
            appended that starts with :data:`COMPACTION_REQUEST_LEAD`.
        """
        view = self._sent_view(ctx)
        span_tokens = self._text_tokens(ctx, render_transcript(plan.span))
        if plan.previous_summary:
            span_tokens += self._text_tokens(ctx, plan.previous_summary)
        budget = self._budget_tokens(ctx, span_tokens)
        if plan.first_kept_id is not None:
            scope = (
                "The messages from the one that begins "
                f"{json.dumps(plan.first_kept_text, ensure_ascii=False)} onward stay "
                "verbatim after your outline: compact everything before that message."
            )
        else:
            scope = "Compact the whole conversation above."
        instruction = (
            f"{COMPACTION_REQUEST_LEAD} pause the task; do not call tools. {scope} An "
            "earlier compaction output (a system message beginning "
            f'"{SUMMARY_HEADER}") counts as part of the conversation: fold all of its '
            f"facts in.\n\n{self.system_prompt}\n\nWrite the compacted outline now, at "
            f"most about {budget} tokens (a {ctx.policy.compact_target_ratio:g}:1 "
            "compression)."
        )
        return [*view, HumanMessage(instruction)]

    @staticmethod
    def _sent_view(ctx: CompactionContext) -> list[BaseMessage]:
        """The messages the model last received for this view (``ctx.prepare`` applied)."""
        view = apply_compactions(ctx.log, ctx.records)
        return list(ctx.prepare(view)) if ctx.prepare is not None else view

    def choose_form(
        self, ctx: CompactionContext, plan: _Plan, chunks: Sequence[tuple[str, int]]
    ) -> SummaryForm:
        """Pick the request form (``policy.compact_summary_form``; ``"auto"``: cheaper).

        Args:
            ctx: Run inputs.
            plan: The plan.
            chunks: The transcript chunks (their sizes price the transcript form).

        Returns:
            ``"cached_prefix"`` or ``"transcript"``.
        """
        form = ctx.policy.compact_summary_form
        if form == "transcript" or self._cache_model(ctx) is None:
            return "transcript"
        if ctx.trigger in _UNSENDABLE_VIEW_TRIGGERS:
            return "transcript"  # the view itself did not fit: re-sending it cannot work
        view_tokens = ctx.tokens(self._sent_view(ctx))
        room = ctx.window - ctx.policy.reserved_output_tokens
        if view_tokens > _CACHED_FORM_WINDOW_SHARE * room:
            return "transcript"  # near the window, the estimate's error could overflow
        if form == "cached_prefix":
            return "cached_prefix"
        profile = _profile_of(self.model)
        if profile is None or getattr(profile, "cache_kind", None) != "automatic":
            return "transcript"
        hit = profile.pricing.input_cache_hit
        miss = profile.pricing.input_cache_miss
        instruction = self._text_tokens(ctx, self.system_prompt) + 200
        cached = hit * view_tokens + miss * instruction
        prompt = self._text_tokens(ctx, self.system_prompt)
        transcript = miss * sum(
            tokens + prompt + (self._text_tokens(ctx, plan.previous_summary or "") if i else 0)
            for i, (_, tokens) in enumerate(chunks)
        )
        return "cached_prefix" if cached < transcript else "transcript"

    def _cache_model(
        self, ctx: CompactionContext
    ) -> Runnable[LanguageModelInput, BaseMessage] | None:
        """The summariser with the session's tools bound (``None``: it cannot bind them)."""
        if not ctx.tools:
            return self.model
        bind = getattr(self.model, "bind_tools", None)
        if bind is None:
            return None
        try:
            bound: Runnable[LanguageModelInput, BaseMessage] = bind(
                list(ctx.tools), tool_choice="none"
            )
        except (NotImplementedError, TypeError, ValueError):
            return None
        if isinstance(self.model, RunnableBinding):
            # bind_tools reaches through a binding to the bare model: the summariser's own
            # tags (``nostream``), run name and bound arguments must survive it
            bound = bound.with_config(self.model.config).bind(**self.model.kwargs)
        return bound

    def _cached_call(
        self, ctx: CompactionContext, plan: _Plan
    ) -> tuple[list[BaseMessage], Runnable[LanguageModelInput, BaseMessage], int]:
        """The cached-prefix request, the model with the session's tools, its size."""
        request = self.cached_request(ctx, plan)
        return request, self._cache_model(ctx) or self.model, ctx.tokens(request)

    def _summary_message(
        self,
        text: str,
        plan: _Plan,
        ctx: CompactionContext,
        form: SummaryForm = "transcript",
        request_tokens: int = 0,
    ) -> BaseMessage:
        digest = hashlib.sha1(
            f"{plan.first_kept_id}|{text}".encode(), usedforsecurity=False
        ).hexdigest()[:16]
        note = ""
        if ctx.policy.recall:  # the note ends the summary once, even if the summariser echoed it
            lines = _strip_header(text).splitlines()
            text = "\n".join(ln for ln in lines if RECALL_SUMMARY_NOTE not in ln).strip()
            note = f"\n\n{RECALL_SUMMARY_NOTE}"
        message = SystemMessage(f"{SUMMARY_HEADER}\n\n{text}{note}", id=f"kc-summary-{digest}")
        rendered = render_transcript(plan.span)
        summarized = self._text_tokens(ctx, rendered)
        if plan.previous_summary:
            summarized += self._text_tokens(ctx, plan.previous_summary)
        return with_marker(
            message,
            "summary",
            summarized_messages=len(plan.span),
            summarized_tokens=summarized,
            summary_tokens=self._text_tokens(ctx, text),
            first_kept_id=plan.first_kept_id,
            folded_previous_summary=plan.previous_summary is not None,
            request_form=form,
            request_tokens=request_tokens,
            **({"summarized_ids": [m.id for m in plan.span]} if ctx.policy.recall else {}),
        )

    def _finish(
        self,
        ctx: CompactionContext,
        draft: CompactionDraft,
        plan: _Plan,
        text: str | None,
        failures: list[str],
        calls: int,
        form: SummaryForm = "transcript",
        request_tokens: int = 0,
    ) -> CompactionDraft:
        if text is None:
            return replace(
                draft,
                failures=(*draft.failures, *failures),
                model_calls=draft.model_calls + calls,
            )
        new = replace(
            draft,
            summary=self._summary_message(text, plan, ctx, form, request_tokens),
            first_kept_id=plan.first_kept_id,
            pinned_ids=plan.pinned_ids,
            strategies=(*draft.strategies, self.name),
            model_calls=draft.model_calls + calls,
            failures=(*draft.failures, *failures),
        )
        before = ctx.tokens(ctx.view(draft))
        after = ctx.tokens(ctx.view(new))
        if after >= before:
            note = (
                f"summary discarded: the view would grow from {before} to {after} tokens "
                f"(the summarised span is too small to be worth summarising)"
            )
            return replace(draft, failures=(*draft.failures, *failures, note))
        return new

    @staticmethod
    def _failure(attempt: int, exc: BaseException) -> str:
        return f"summary attempt {attempt}: {type(exc).__name__}: {exc}"[:400]

    @staticmethod
    def _text_of(result: BaseMessage) -> str:
        text = message_text(result).strip()
        if not text:
            msg = "the summariser returned an empty summary"
            raise KimiEmptyResponseError(msg)
        return text

    # ----------------------------------------------------------------- running
    def _retries(
        self, ctx: CompactionContext, failures: list[str]
    ) -> tuple[list[int], Callable[[Exception, int], float | None]]:
        """``(call counter, decide)`` for the backoff drivers: retryable errors only."""
        calls = [0]
        policy = ctx.policy

        def decide(exc: Exception, attempt: int) -> float | None:
            if isinstance(exc, CompactionCancelledError):
                raise exc
            failures.append(self._failure(attempt, exc))
            if not is_retryable_error(exc) or attempt >= policy.compact_max_attempts:
                return None
            return backoff_delay(attempt, initial=policy.compact_retry_backoff_s)

        return calls, decide

    @staticmethod
    def _attempt(ctx: CompactionContext, calls: list[int]) -> None:
        """Before each summariser call: stop if abandoned, count the call."""
        ctx.check_cancelled()
        calls[0] += 1

    def _summarise_sync(self, ctx: CompactionContext, ask: _Ask) -> tuple[str | None, int]:
        request, model, failures = ask
        calls, decide = self._retries(ctx, failures)

        def once() -> str:
            self._attempt(ctx, calls)
            return self._text_of((model or self.model).invoke(request))

        try:
            return run_with_retries(once, decide, sleep=ctx.cancelled.wait), calls[0]
        except CompactionCancelledError:
            raise
        except Exception:
            return None, calls[0]

    async def _summarise_async(self, ctx: CompactionContext, ask: _Ask) -> tuple[str | None, int]:
        request, model, failures = ask
        calls, decide = self._retries(ctx, failures)

        async def once() -> str:
            self._attempt(ctx, calls)
            return self._text_of(await (model or self.model).ainvoke(request))

        try:
            return await arun_with_retries(once, decide), calls[0]
        except CompactionCancelledError:
            raise
        except Exception:
            return None, calls[0]

    def _steps(
        self, ctx: CompactionContext, draft: CompactionDraft
    ) -> Generator[_Ask, tuple[str | None, int], CompactionDraft]:
        """The summary flow: yields each request, receives ``(text or None, calls)``."""
        plan = self.plan(ctx, draft)
        if plan is None:
            return draft
        failures: list[str] = []
        chunks = self.requests(ctx, plan)
        if self.choose_form(ctx, plan, chunks) == "cached_prefix":
            request, model, size = self._cached_call(ctx, plan)
            text, calls = yield request, model, failures
            return self._finish(ctx, draft, plan, text, failures, calls, "cached_prefix", size)
        summary = plan.previous_summary
        total_calls = 0
        size = 0
        for chunk, tokens in chunks:
            request = self.build_messages(ctx, chunk, tokens, summary)
            size += ctx.token_counter.count_messages(request)
            text, calls = yield request, None, failures
            total_calls += calls
            if text is None:
                return self._finish(ctx, draft, plan, None, failures, total_calls)
            summary = text
        return self._finish(ctx, draft, plan, summary, failures, total_calls, "transcript", size)

    def compact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
        """Summarise the span chosen by :meth:`plan` (chunk by chunk when large).

        Args:
            ctx: Run inputs.
            draft: The draft so far.

        Returns:
            The draft with the summary, or unchanged (plus failures) if it failed.
        """
        steps = self._steps(ctx, draft)
        try:
            ask = next(steps)
            while True:
                ask = steps.send(self._summarise_sync(ctx, ask))
        except StopIteration as stop:
            return stop.value

    async def acompact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
        """Async variant of :meth:`compact`."""
        steps = self._steps(ctx, draft)
        try:
            ask = next(steps)
            while True:
                ask = steps.send(await self._summarise_async(ctx, ask))
        except StopIteration as stop:
            return stop.value
