"""When to compact: the trigger, in the four forms the policy can express.

* budget form: ``tokens >= budget``. ``policy.compact_budget="price"`` (the default,
  when the model profile is given and has a cache-hit discount): the view size at which
  compacting is cheapest per call (:mod:`.budget`), used only when it is below the
  window rule (ratio/reserve), which stays the hard ceiling, and not when the seed-style
  ``compact_trigger_tokens`` is set; an integer ``compact_budget`` is a fixed budget;
* ratio form: ``tokens >= window * compact_trigger_ratio`` (Kimi CLI: 0.85);
* reserve form: ``tokens + compact_reserve_tokens >= window`` (Kimi CLI: 50,000, i.e.
  212,144 tokens of a 262,144 window), never below half the window (so a large reserve
  on a small model does not compact on every turn);
* absolute form: ``tokens > compact_trigger_tokens`` (the project seed: 180,000).

The first threshold reached wins. The seed's setting ("past 180K of 256K, keep 20% in
reserve") is ``ContextPolicy.seed_defaults()``.

Why these defaults (ratio 0.85, reserve 50K; numbers in ``docs/benchmarks/compaction.md``,
from ``benchmarks/bench_compaction.py``): every request re-sends the whole view, so a
session's input cost follows the *average* view size, while each compaction costs a
summariser call and one cache miss (the new prefix is paid for once, then cached). The
cost is U-shaped in the trigger: on the emulator's 60-turn session (24K window) compacting
at 60% cost +1.8% (7 compactions, more cache misses) and at 95% +2.6% (larger requests) against
the 75-85% band, which was cheapest. The upper limit is safety: the reply
(``reserved_output_tokens``), the next tool results and the estimate error must still
fit; 50K of reserve (about 19% of a 262K window) covers a maximal tool result (40,000
chars, about 10K tokens) several times plus an 8K reply, so the reserve form fires first
on 262K models (at 212,144 tokens) and the ratio form on small windows.

"Current tokens" = the last server-reported usage plus a local estimate of what was
appended since (:func:`current_context_tokens`), so the trigger uses the server's
exact count whenever it has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage

from langchain_kimi_context.context.compaction._common import (
    TokenCounterLike,
    resolve_token_counter,
)
from langchain_kimi_context.context.compaction.budget import price_budget
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.profiles import KimiModelProfile

__all__ = [
    "CompactionDecision",
    "TriggerReason",
    "budget_for",
    "compaction_target",
    "current_context_tokens",
    "should_compact",
]

TriggerReason = Literal["budget", "ratio", "reserve", "absolute"]


@dataclass(frozen=True)
class CompactionDecision:
    """The trigger's verdict; truthy when compaction should run.

    Attributes:
        compact: Whether to compact now.
        reason: The form that fired first (lowest threshold reached), or ``None``.
        tokens: The current token count that was checked.
        window: The context window.
        threshold: The lowest enabled threshold (``None`` if every form is disabled).
        reasons: Every form that fired.
        budget: The budget trigger in force (``None``: the window rule alone applies).

    Example:
        >>> d = should_compact(230_000, 262_144, ContextPolicy())
        >>> bool(d), d.reason, d.reasons, d.threshold
        (True, 'reserve', ('reserve', 'ratio'), 212144)
    """

    compact: bool
    reason: TriggerReason | None
    tokens: int
    window: int
    threshold: int | None
    reasons: tuple[TriggerReason, ...] = ()
    budget: int | None = None

    def __bool__(self) -> bool:
        return self.compact


def _window_rule(window: int, policy: ContextPolicy) -> int:
    """The lowest ratio/reserve threshold (the window itself when both are off)."""
    found = _thresholds(window, policy)
    rule = [found[r] for r in ("ratio", "reserve") if r in found]
    return min(rule) if rule else window


def budget_for(
    window: int,
    policy: ContextPolicy,
    profile: KimiModelProfile | None,
    *,
    floor_tokens: int | None = None,
) -> int | None:
    """The budget trigger (tokens) in force for a model, or ``None`` (window rule alone).

    Args:
        window: The context window.
        policy: ``compact_budget`` and the budget inputs.
        profile: The model profile (prices, cache kind); ``None``: no price budget.
        floor_tokens: The size the last compaction actually returned to (its
            ``tokens_after``); ``policy.compact_budget_floor_tokens`` until one ran.

    Returns:
        A fixed ``compact_budget`` (capped by the window rule); or, for ``"price"``,
        :func:`~langchain_kimi_context.context.compaction.budget.price_budget`'s trigger
        when no fixed ``compact_trigger_tokens`` is set, the model caches prefixes
        automatically with a hit discount, and the optimum is below the window rule;
        else ``None``.

    Example:
        >>> from langchain_kimi_context.profiles import get_profile
        >>> budget_for(1_048_576, ContextPolicy(), get_profile("kimi-k3"))
        61833
        >>> budget_for(1_048_576, ContextPolicy(compact_budget=100_000), None)
        100000
        >>> budget_for(1_048_576, ContextPolicy(compact_budget="off"), get_profile("kimi-k3"))
    """
    budget = policy.compact_budget
    ceiling = _window_rule(window, policy)
    if not isinstance(budget, str):
        return min(budget, ceiling)
    if (
        budget != "price"
        or profile is None
        or policy.compact_trigger_tokens is not None
        or profile.cache_kind != "automatic"
    ):
        return None
    floor = policy.compact_budget_floor_tokens if floor_tokens is None else floor_tokens
    if floor >= ceiling:
        return None
    found = price_budget(
        profile.pricing,
        growth_tokens=policy.compact_budget_growth_tokens,
        floor_tokens=floor,
        summary_tokens=policy.compact_budget_summary_tokens,
        ceiling=ceiling,
    )
    return None if found is None or found.capped else found.trigger_tokens


def _thresholds(window: int, policy: ContextPolicy) -> dict[TriggerReason, int]:
    found: dict[TriggerReason, int] = {}
    if policy.compact_trigger_ratio is not None:
        # ceil without floats drifting: tokens >= window * ratio
        raw = window * policy.compact_trigger_ratio
        found["ratio"] = int(raw) if raw == int(raw) else int(raw) + 1
    if policy.compact_reserve_tokens is not None:
        # never below half the window: a 50K reserve on a 32K model would otherwise
        # ask for a compaction on every single turn
        found["reserve"] = max(window - policy.compact_reserve_tokens, window // 2)
    if policy.compact_trigger_tokens is not None:
        found["absolute"] = policy.compact_trigger_tokens + 1
    return found


def should_compact(
    tokens: int,
    window: int,
    policy: ContextPolicy,
    *,
    profile: KimiModelProfile | None = None,
    floor_tokens: int | None = None,
) -> CompactionDecision:
    """Decide whether a view of ``tokens`` tokens must be compacted.

    Args:
        tokens: Current tokens of what the model sees (see :func:`current_context_tokens`).
        window: The model's context window.
        policy: Thresholds (``compact_trigger_ratio``, ``compact_reserve_tokens``,
            ``compact_trigger_tokens``; ``None`` disables a form; ``compact_budget``).
        profile: The model profile; its prices give the budget form (:func:`budget_for`).
            Without it only the window rule and the absolute form apply.
        floor_tokens: The size the last compaction returned to (budget input).

    Returns:
        The decision; ``threshold`` is the lowest token count at which any enabled form
        fires.

    Raises:
        ValueError: If ``window`` is not positive or ``tokens`` is negative.

    Example:
        >>> p = ContextPolicy()  # ratio 0.85, reserve 50K
        >>> bool(should_compact(212_143, 262_144, p)), bool(should_compact(212_144, 262_144, p))
        (False, True)
        >>> seed = ContextPolicy.seed_defaults()  # > 180K, or 80% of the window
        >>> should_compact(180_001, 262_144, seed).reason
        'absolute'
        >>> should_compact(15_999, 32_000, p).threshold  # reserve floor: half the window
        16000
        >>> from langchain_kimi_context.profiles import get_profile
        >>> d = should_compact(70_000, 1_048_576, p, profile=get_profile("kimi-k3"))
        >>> d.reason, d.threshold
        ('budget', 61833)
    """
    if window <= 0:
        msg = f"window must be a positive token count (got {window})"
        raise ValueError(msg)
    if tokens < 0:
        msg = f"tokens must be >= 0 (got {tokens})"
        raise ValueError(msg)
    thresholds = _thresholds(window, policy)
    budget = budget_for(window, policy, profile, floor_tokens=floor_tokens)
    if budget is not None:
        thresholds["budget"] = budget
    fired = tuple(
        sorted(
            (reason for reason, at in thresholds.items() if tokens >= at),
            key=lambda r: thresholds[r],
        )
    )
    return CompactionDecision(
        compact=bool(fired),
        reason=fired[0] if fired else None,
        tokens=tokens,
        window=window,
        threshold=min(thresholds.values()) if thresholds else None,
        reasons=fired,
        budget=budget,
    )


def compaction_target(
    policy: ContextPolicy,
    window: int,
    trigger: str,
    *,
    tokens: int | None = None,
    local_tokens: int | None = None,
) -> int:
    """The size a compaction aims for, in the units of the local token counter.

    A price-budget compaction (``trigger="budget"``) returns to the floor the budget
    assumes (``policy.compact_budget_floor_tokens``, at most the target share of the
    window); any other to ``window * policy.compact_target_share``. When the trigger
    measured ``tokens`` with the server's count and the local counter gives
    ``local_tokens`` for the same view, the target is scaled by ``local / tokens``, so a
    counter that under- or over-counts still compacts to the intended real size.

    Args:
        policy: ``compact_target_share`` and the budget floor.
        window: The context window.
        trigger: Why the compaction runs (``"budget"``, ``"ratio"``, ``"manual"``, ...).
        tokens: The calibrated size the trigger saw (``None``: no scaling).
        local_tokens: The local counter's size of the same view.

    Returns:
        The target in tokens (at least 1).

    Example:
        >>> compaction_target(ContextPolicy(), 100_000, "ratio")
        50000
        >>> compaction_target(ContextPolicy(), 100_000, "ratio", tokens=90_000,
        ...     local_tokens=45_000)
        25000
    """
    share = int(window * policy.compact_target_share)
    target = share
    if trigger == "budget":
        target = max(min(policy.compact_budget_floor_tokens, share), 1)
    if tokens and local_tokens and local_tokens != tokens:
        target = int(target * local_tokens / tokens)
    return max(target, 1)


def _usage_total(message: AIMessage) -> int | None:
    usage = message.usage_metadata
    if not usage:
        return None
    return int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))


def current_context_tokens(
    messages: Sequence[BaseMessage],
    *,
    token_counter: TokenCounterLike | None = None,
    tools: Sequence[Any] | None = None,
    usage_valid_after: str | None = None,
) -> int:
    """Current size of a view: last server usage + an estimate of what came after it.

    The newest assistant message carrying ``usage_metadata`` gives the server's count of
    the request that produced it plus its own output; the messages after it are
    estimated with ``token_counter``. Without usage the whole view is estimated.

    Args:
        messages: The view the model sees.
        token_counter: Counter for the estimate (default: the package's counter).
        tools: Tool schemas bound to the model (counted when no usage is known).
        usage_valid_after: Ignore usage on messages up to and including this id (after a
            compaction, usage recorded before it describes a larger view; pass
            ``CompactionRecord.covered_until_id``).

    Returns:
        The token count.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> ai = AIMessage("ok", id="a", usage_metadata={"input_tokens": 1000,
        ...     "output_tokens": 20, "total_tokens": 1020})
        >>> current_context_tokens([HumanMessage("hi"), ai]) == 1020
        True
        >>> current_context_tokens([HumanMessage("hi"), ai, HumanMessage("more")]) > 1020
        True
    """
    counter = resolve_token_counter(token_counter)
    start = 0
    if usage_valid_after is not None:
        for index, message in enumerate(messages):
            if message.id == usage_valid_after:
                start = index + 1
                break
    for index in range(len(messages) - 1, start - 1, -1):
        message = messages[index]
        if isinstance(message, AIMessage):
            total = _usage_total(message)
            if total is not None:
                rest = messages[index + 1 :]
                return total + (counter.count_messages(rest) if rest else 0)
    return counter.count_messages(messages, tools)
