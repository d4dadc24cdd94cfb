"""``ContextPolicy``: every threshold of the context pipeline in one frozen object.

The stages in :mod:`langchain_kimi_context.context` read their limits from here and
nowhere else. ``ContextPolicy()`` works with no arguments; every field is keyword-only.
The window is resolved as: explicit ``context_window`` > the model profile (or what the
server taught the package) > ``default_context_window``; ``agent_context_cap`` can only
lower it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.profiles import DEFAULT_CONTEXT_WINDOW

__all__ = ["ContextPolicy"]


def _frozen_map(value: Mapping[str, int] | None = None) -> Mapping[str, int]:
    return MappingProxyType(dict(value or {}))


# Scalar field annotations (strings: ``from __future__ import annotations``) -> accepted
# types and how to name them in an error. Checked before any range check compares them.
_SCALAR_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "bool": ((bool,), "True or False"),
    "str": ((str,), "a string"),
}
_NAME_SETS = ("allowed_tool_names", "builtin_tool_names", "errored_finish_reasons")


def _type_problems(policy: ContextPolicy) -> list[str]:
    """Fields whose value has the wrong type (e.g. ``context_window="128k"``)."""
    problems: list[str] = []
    for f in dataclasses.fields(policy):
        value = getattr(policy, f.name)
        if f.name in _NAME_SETS or f.name == "debug_payload_keys":
            if isinstance(value, str):  # frozenset("read_file") would be a set of letters
                problems.append(
                    f"{f.name} must be a collection of names, e.g. {{{value!r}}}, not a string"
                )
            continue
        base, _, rest = str(f.type).partition(" | ")
        known = _SCALAR_KINDS.get(base)
        if known is None or rest not in ("", "None"):
            continue
        if value is None and rest == "None":
            continue
        kinds, label = known
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            label += " or None" if rest == "None" else ""
            problems.append(f"{f.name} must be {label} (got {value!r})")
    return problems


@dataclass(frozen=True, kw_only=True)
class ContextPolicy:
    """All thresholds of the context pipeline, compaction and overflow recovery.

    Attributes:
        context_window: Explicit window in tokens; wins over the model profile.
        agent_context_cap: A cap that may only LOWER the resolved window.
        default_context_window: Window used when neither the policy nor a profile knows.
        hard_min_context_window: Windows below this are refused before any call.
        warn_below_context_window: Windows below this log a warning.
        reserved_output_tokens: Tokens kept free for the reply (``max_tokens``).
        allowed_tool_names: If set, tool calls naming other tools are dropped.
        builtin_tool_names: Provider builtin tools (Kimi's ``$web_search``) whose names
            are exempt from the ``[A-Za-z0-9_:.-]`` rule (still subject to
            ``allowed_tool_names`` when that is set).
        max_tool_name_length: Longer tool-call names are dropped as malformed.
        debug_payload_keys: Keys stripped from tool results' ``additional_kwargs`` /
            ``response_metadata`` / ``artifact`` dicts (per-result debug payloads).
        merge_consecutive_user_messages: Merge back-to-back user messages into one.
        bootstrap_user_text: Text of the user turn prepended when history starts with
            an assistant message (strict providers reject that).
        strip_old_reasoning: Drop ``reasoning_content`` from earlier assistant messages
            that have no tool calls (thinking models only need it on tool-call turns).
        history_limit: Keep the last N user turns (``None``/``0`` = unlimited) when the
            session key gives no more specific limit.
        dm_history_limit: Limit for ``dm``/``direct`` session keys.
        dm_user_history_limits: Per-user overrides for direct sessions (0 counts as set).
        channel_history_limit: Limit for ``channel``/``group`` session keys.
        history_hysteresis: Cut back to N turns only once N + K are exceeded, so the
            request prefix stays byte-stable for K turns between cuts.
        errored_finish_reasons: An assistant message whose
            ``response_metadata["finish_reason"]`` is one of these ended in error/abort:
            pairing repair adds no synthetic results for its unanswered calls (it removes
            those calls instead).
        tool_result_max_window_share: Per-result cap as a share of the window (chars
            computed as tokens x ``chars_per_token``).
        tool_result_hard_max_chars: Absolute per-result cap in characters.
        tool_result_min_keep_chars: Never cut a result below this many characters.
        tool_result_single_max_window_share: A single result may use at most this share.
        tool_loop_overflow_share: Past this share of the window during a tool loop,
            raise overflow and recover.
        tool_result_truncation: When ``prepare_context`` truncates tool results:
            ``"auto"`` (when the preflight route says so), ``"always"`` (per-result caps
            on every call) or ``"never"``.
        tool_result_tail_share: Share of a result's cap kept from its tail when the
            tail holds error/summary/closing-JSON cues (head + tail mode).
        tool_result_newline_share: A cut moves back to a newline found within this
            last share of the kept part.
        tool_result_tail_cue_chars: How many trailing characters are searched for cues.
        chars_per_token: Conversion used to turn token budgets into character caps.
        compact_trigger_ratio: Compact when ``tokens >= window * ratio`` (``None`` off).
        compact_reserve_tokens: Compact when ``tokens + reserve >= window`` (``None`` off).
        compact_trigger_tokens: Compact when ``tokens > N`` (:meth:`seed_defaults`:
            180,000). Setting it is choosing a fixed budget: the price budget is then not
            applied.
        compact_budget: ``"price"``: also compact at the price budget, the view size at
            which compacting is cheapest per call for the model's cache-hit, cache-miss
            and output prices (``context.compaction.budget``), when it is below the
            window rule (which stays the hard ceiling) and the model has a cache-hit
            discount; an integer: a fixed budget in tokens (same compaction, capped by the
            window rule); ``"off"``: the window rule alone. A budget compaction runs the
            summary first and aims at ``compact_budget_floor_tokens``.
        compact_budget_growth_tokens: Price budget input: tokens a session appends per
            model call (tool results and replies).
        compact_budget_floor_tokens: Price budget input: the view's size right after a
            compaction (system prompt, tools, summary, kept turns), until a compaction
            record tells the real one; also the target of a budget compaction.
        compact_budget_summary_tokens: Price budget input: length of a summary.
        compact_summary_form: How the summariser reads the history: ``"cached_prefix"``
            (the conversation exactly as the model last saw it, with the instruction
            appended, so it is read at the cache-hit price), ``"transcript"`` (a rendered
            transcript of the summarised span under a summariser prompt) or ``"auto"``
            (the cheaper of the two at the model's prices; transcript when unknown).
        compact_keep_turns: Recent user turns kept verbatim by LLM compaction.
        compact_target_ratio: Target tokens-before / tokens-after of a summary (4:1).
        compact_max_attempts: Summary attempts before giving up (history is kept).
        compact_retry_backoff_s: Initial backoff between summary attempts (doubles).
        compact_timeout_s: A compaction running longer is abandoned (state unchanged).
        compact_chunk_tokens: Largest span sent to the summariser in one call.
        compact_target_share: Compaction stops once the view is at or below this share
            of the window (structural strategies first; a summary only if still above).
        compact_summary_min_tokens: Smallest length budget given to the summariser.
        compact_min_span_share: LLM compaction makes no model call (and stores no record)
            when the span it would summarise is under this share of the messages it
            would see, e.g. when the current turn's own huge tool result dominates and
            the tool-result truncation stage is what helps.
        collapse_code_min_lines: Code blocks of at most this many lines are kept whole
            by the structural code-collapsing strategy.
        clear_tool_results_keep: Structural stage: newest tool results kept verbatim.
        clear_tool_results_placeholder: Text that replaces cleared tool results.
        overflow_compact_attempts: Compactions tried after a provider overflow error.
        overflow_truncate_attempts: Tool-result truncations tried after that.
        max_append_tokens: Largest single message ``append_message`` accepts (8K).
        min_preserve_tokens: ``truncate(preserve_len=...)`` refuses less than this.
        recall: The model can read back what left its view (``search_history`` /
            ``read_history`` tools): truncation markers and cleared tool results name
            the ref that reads the whole result, and summaries end with
            :data:`~langchain_kimi_context.context.recall.RECALL_SUMMARY_NOTE`.

    Example:
        >>> policy = ContextPolicy(context_window=131_072, history_limit=20)
        >>> policy.compact_trigger_ratio, policy.history_limit
        (0.85, 20)
        >>> ContextPolicy.seed_defaults().compact_trigger_tokens
        180000
    """

    # --- window guard -------------------------------------------------------------
    context_window: int | None = None
    agent_context_cap: int | None = None
    default_context_window: int = DEFAULT_CONTEXT_WINDOW
    hard_min_context_window: int = 16_000
    warn_below_context_window: int = 32_000
    reserved_output_tokens: int = 8_192

    # --- sanitize -----------------------------------------------------------------
    allowed_tool_names: frozenset[str] | None = None
    builtin_tool_names: frozenset[str] = frozenset({"$web_search"})
    max_tool_name_length: int = 64
    debug_payload_keys: tuple[str, ...] = ("debug", "details", "raw", "trace")
    merge_consecutive_user_messages: bool = True
    bootstrap_user_text: str = "(continuing an earlier conversation)"
    strip_old_reasoning: bool = True

    # --- history limit by session kind -------------------------------------------
    history_limit: int | None = None
    dm_history_limit: int | None = None
    dm_user_history_limits: Mapping[str, int] = field(default_factory=_frozen_map)
    channel_history_limit: int | None = None
    history_hysteresis: int = 0

    # --- tool pairing ---------------------------------------------------------------
    errored_finish_reasons: frozenset[str] = frozenset({"error", "aborted"})

    # --- tool-result truncation ----------------------------------------------------
    tool_result_max_window_share: float = 0.3
    tool_result_hard_max_chars: int = 40_000
    tool_result_min_keep_chars: int = 2_000
    tool_result_single_max_window_share: float = 0.5
    tool_loop_overflow_share: float = 0.9
    chars_per_token: float = 4.0
    tool_result_truncation: Literal["auto", "always", "never"] = "auto"
    tool_result_tail_share: float = 0.3
    tool_result_newline_share: float = 0.2
    tool_result_tail_cue_chars: int = 2_000

    # --- compaction ---------------------------------------------------------------
    compact_trigger_ratio: float | None = 0.85
    compact_reserve_tokens: int | None = 50_000
    compact_trigger_tokens: int | None = None
    compact_budget: Literal["price", "off"] | int = "price"
    compact_budget_growth_tokens: int = 2_500
    compact_budget_floor_tokens: int = 20_000
    compact_budget_summary_tokens: int = 3_000
    compact_summary_form: Literal["auto", "cached_prefix", "transcript"] = "auto"
    compact_keep_turns: int = 3
    compact_target_ratio: float = 4.0
    compact_max_attempts: int = 3
    compact_retry_backoff_s: float = 1.0
    compact_timeout_s: float = 120.0
    compact_chunk_tokens: int = 60_000
    compact_target_share: float = 0.5
    compact_summary_min_tokens: int = 400
    compact_min_span_share: float = 0.05
    collapse_code_min_lines: int = 20
    clear_tool_results_keep: int = 3
    clear_tool_results_placeholder: str = "[tool result cleared to save context]"

    # --- overflow recovery --------------------------------------------------------
    overflow_compact_attempts: int = 3
    overflow_truncate_attempts: int = 1

    # --- session API (RollingSnapshotMemory) -----------------------------------------
    max_append_tokens: int = 8_000
    min_preserve_tokens: int = 4_096

    # --- recall (search and read back the full log) ---------------------------------
    recall: bool = False

    def __post_init__(self) -> None:
        if wrong_types := _type_problems(self):
            raise KimiConfigurationError("Invalid ContextPolicy: " + "; ".join(wrong_types))
        if not isinstance(self.dm_user_history_limits, MappingProxyType):
            object.__setattr__(
                self, "dm_user_history_limits", _frozen_map(self.dm_user_history_limits)
            )
        if self.allowed_tool_names is not None:
            names: Any = self.allowed_tool_names
            object.__setattr__(self, "allowed_tool_names", frozenset(names))
        for name in ("builtin_tool_names", "errored_finish_reasons"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))
        problems: list[str] = []
        for name in ("context_window", "agent_context_cap"):
            value = getattr(self, name)
            if value is not None and value < 0:
                problems.append(f"{name} must be >= 0 (got {value})")
        for name in (
            "tool_result_max_window_share",
            "tool_result_single_max_window_share",
            "tool_loop_overflow_share",
            "tool_result_tail_share",
        ):
            value = getattr(self, name)
            if not 0 < value <= 1:
                problems.append(f"{name} must be in (0, 1] (got {value})")
        if self.compact_trigger_ratio is not None and not 0 < self.compact_trigger_ratio <= 1:
            problems.append(
                f"compact_trigger_ratio must be in (0, 1] or None (got "
                f"{self.compact_trigger_ratio})"
            )
        if not 0 <= self.compact_min_span_share < 1:
            problems.append(
                f"compact_min_span_share must be in [0, 1) (got {self.compact_min_span_share})"
            )
        if not 0 < self.compact_target_share <= 1:
            problems.append(
                f"compact_target_share must be in (0, 1] (got {self.compact_target_share})"
            )
        if self.compact_chunk_tokens < 1_000:
            problems.append(
                f"compact_chunk_tokens must be >= 1000 (got {self.compact_chunk_tokens})"
            )
        budget = self.compact_budget
        fixed = isinstance(budget, int) and not isinstance(budget, bool) and budget > 0
        if not (fixed or budget in ("price", "off")):
            problems.append(
                "compact_budget must be 'price', 'off' or a token count > 0 (got "
                f"{self.compact_budget!r})"
            )
        if self.compact_summary_form not in ("auto", "cached_prefix", "transcript"):
            problems.append(
                "compact_summary_form must be 'auto', 'cached_prefix' or 'transcript' (got "
                f"{self.compact_summary_form!r})"
            )
        if self.compact_budget_growth_tokens < 1 or self.compact_budget_floor_tokens < 0:
            problems.append(
                "compact_budget_growth_tokens must be >= 1 and compact_budget_floor_tokens >= 0"
            )
        if self.compact_budget_summary_tokens < 0:
            problems.append("compact_budget_summary_tokens must be >= 0")
        if self.compact_max_attempts < 1 or self.compact_timeout_s <= 0:
            problems.append("compact_max_attempts must be >= 1 and compact_timeout_s > 0")
        if self.compact_target_ratio < 1:
            problems.append(f"compact_target_ratio must be >= 1 (got {self.compact_target_ratio})")
        if self.compact_keep_turns < 0 or self.history_hysteresis < 0:
            problems.append("compact_keep_turns and history_hysteresis must be >= 0")
        if self.chars_per_token <= 0:
            problems.append(f"chars_per_token must be > 0 (got {self.chars_per_token})")
        if self.reserved_output_tokens < 0:
            problems.append("reserved_output_tokens must be >= 0")
        if not 0 <= self.tool_result_newline_share < 1:
            problems.append(
                "tool_result_newline_share must be in [0, 1) (got "
                f"{self.tool_result_newline_share})"
            )
        if self.tool_result_truncation not in ("auto", "always", "never"):
            problems.append(
                "tool_result_truncation must be 'auto', 'always' or 'never' (got "
                f"{self.tool_result_truncation!r})"
            )
        if self.tool_result_min_keep_chars < 0 or self.tool_result_hard_max_chars <= 0:
            problems.append(
                "tool_result_min_keep_chars must be >= 0 and tool_result_hard_max_chars > 0"
            )
        if problems:
            raise KimiConfigurationError("Invalid ContextPolicy: " + "; ".join(problems))

    @classmethod
    def seed_defaults(cls, **overrides: Any) -> ContextPolicy:
        """The classic long-session setting: compact past 180K of a 256K window, 20% reserve.

        Args:
            **overrides: Any other fields.

        Returns:
            A policy with ``compact_trigger_tokens=180_000``, a 20% reserve expressed as
            ``compact_trigger_ratio=0.8``, the last 3 turns kept and a 4:1 target ratio.
        """
        values: dict[str, Any] = {
            "compact_trigger_tokens": 180_000,
            "compact_trigger_ratio": 0.8,
            "compact_reserve_tokens": None,
            "compact_keep_turns": 3,
            "compact_target_ratio": 4.0,
        }
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> ContextPolicy:
        """Return a copy of the policy with ``changes`` applied.

        Args:
            **changes: Field names and new values.

        Returns:
            The new policy (validated).
        """
        return dataclasses.replace(self, **changes)


def as_context_policy(policy: object, *, owner: str) -> ContextPolicy:
    """Return ``policy`` (default ``ContextPolicy()``) or a typed error naming the fix.

    The faces (agent, memory, middleware, hook) take ``policy=``; a dict or a model
    name there used to fail much later with ``AttributeError: 'dict' object has no
    attribute ...`` inside a graph node.

    Args:
        policy: What the caller passed (``None`` = the defaults).
        owner: The function or class that received it, for the message.

    Returns:
        The policy.

    Raises:
        KimiConfigurationError: If ``policy`` is not a :class:`ContextPolicy`.
    """
    if policy is None:
        return ContextPolicy()
    if isinstance(policy, ContextPolicy):
        return policy
    hint = (
        f"ContextPolicy(**{dict(policy)!r})"
        if isinstance(policy, Mapping)
        else "ContextPolicy(context_window=..., ...)"
    )
    msg = (
        f"{owner}(policy=...) must be a ContextPolicy, got {type(policy).__name__}; "
        f"pass {hint} (from langchain_kimi_context import ContextPolicy)."
    )
    raise KimiConfigurationError(msg)
