"""State schema and settings of the agent built by :func:`create_kimi_agent`.

Every key is stored in a :class:`~langgraph.channels.DeltaChannel`: a checkpoint holds
only what its node wrote, so checkpoints stay small however long the session gets.

The state keeps LangChain's conventions (a ``messages`` key of LangChain messages) so
user code and LangGraph tooling work unchanged, plus small package keys. ``messages``
is the FULL, append-only log; what the model sees is rebuilt each call from the log and
the compaction records, then the pipeline, and never stored.

Keys:
    messages: The message log (delta channel: a checkpoint stores only new messages).
    compactions: Compaction records, oldest first (delta channel, append-only).
    usage: Cumulative token usage and calls of the thread.
    context: Window info: window, last estimate, the calibrated size tracker.
    reports: The latest report of each stage node (``{stage: report dict}``).
    turn: Bookkeeping of the current turn (steps, consecutive failures, stop reason).
    snapshots: Names of snapshots/archives made for this thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.messages import AnyMessage, BaseMessage
from langgraph.channels import UntrackedValue

from langchain_kimi_context.agent.channels import (
    DEFAULT_SNAPSHOT_FREQUENCY,
    delta_channel,
    last_value,
    merge_dicts,
    messages_channel,
    records_channel,
)
from langchain_kimi_context.agent.concurrency import MultitaskStrategy, strategy_problems
from langchain_kimi_context.agent.retry import RetrySettings
from langchain_kimi_context.context.pipeline import StageContext
from langchain_kimi_context.errors import KimiConfigurationError

__all__ = [
    "AgentSettings",
    "KimiAgentInput",
    "KimiAgentState",
    "KimiMaxStepsExceededError",
]


class KimiAgentInput(TypedDict, total=False):
    """What ``invoke`` accepts: new messages (and optionally nothing else).

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> KimiAgentInput(messages=[HumanMessage("hi")])["messages"][0].content
        'hi'
    """

    messages: Annotated[list[AnyMessage], messages_channel(DEFAULT_SNAPSHOT_FREQUENCY)]


class KimiAgentState(TypedDict, total=False):
    """The checkpointed state of a Kimi agent thread (see the module docstring).

    Example:
        >>> sorted(KimiAgentState.__annotations__)[:3]
        ['compactions', 'context', 'messages']
    """

    messages: Annotated[list[AnyMessage], messages_channel(DEFAULT_SNAPSHOT_FREQUENCY)]
    compactions: Annotated[list[Any], records_channel(DEFAULT_SNAPSHOT_FREQUENCY)]
    usage: Annotated[dict[str, Any], delta_channel(last_value, dict)]
    context: Annotated[dict[str, Any], delta_channel(last_value, dict)]
    reports: Annotated[dict[str, Any], delta_channel(merge_dicts, dict)]
    turn: Annotated[dict[str, Any], delta_channel(last_value, dict)]
    snapshots: Annotated[list[str], records_channel(DEFAULT_SNAPSHOT_FREQUENCY)]


class PreparedView:
    """The view travelling between pipeline nodes: iterable, but not a message list.

    LangGraph's ``stream_mode="messages"`` streams every message a node outputs (a
    message or a list of them); the prepared view holds compaction summaries and
    edited copies that are not answers, so it travels in this wrapper and is never
    streamed.
    """

    __slots__ = ("messages",)

    def __init__(self, messages: Sequence[BaseMessage]) -> None:
        self.messages = tuple(messages)

    def __iter__(self) -> Iterator[BaseMessage]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)


class _GraphState(KimiAgentState, total=False):
    """Internal state: adds transient (never checkpointed) pipeline channels.

    ``kimi_view`` is the prepared view; ``kimi_stage_context`` the pipeline's stage
    context (what earlier stages decided in this pass).
    """

    kimi_view: Annotated[PreparedView, UntrackedValue(PreparedView)]
    kimi_stage_context: Annotated[StageContext, UntrackedValue(StageContext)]


class KimiMaxStepsExceededError(RuntimeError):
    """A turn made more model calls than ``AgentSettings.max_steps_per_turn``.

    The state is checkpointed up to the last completed step; invoke again with a new
    message (or raise the limit) to go on.

    Attributes:
        steps: Model calls made in the turn.
        limit: The configured limit.

    Example:
        >>> str(KimiMaxStepsExceededError(steps=51, limit=50)).startswith("The turn made")
        True
    """

    def __init__(self, *, steps: int, limit: int) -> None:
        self.steps = steps
        self.limit = limit
        super().__init__(
            f"The turn made {steps} model calls, over max_steps_per_turn={limit}: the "
            f"model is probably looping on tools. The conversation is saved up to the last "
            f"step; send a new message to steer it, or raise AgentSettings("
            f"max_steps_per_turn=...)."
        )


def _frozen(value: Mapping[str, float] | None = None) -> Mapping[str, float]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True, kw_only=True)
class AgentSettings:
    """Reliability settings of :func:`create_kimi_agent`.

    Context thresholds live in :class:`~langchain_kimi_context.ContextPolicy`.

    Attributes:
        retry: Model-call retry settings (3 attempts, 1/2/4 s jittered backoff).
        max_consecutive_failures: Failed steps in a row after which the run pauses with
            a LangGraph ``interrupt`` instead of retrying blindly.
        max_steps_per_turn: Model calls allowed in one user turn.
        tool_timeout_s: Default per-tool-call timeout.
        tool_timeouts: Per-tool overrides ``{tool name: seconds}``.
        repeat_warn_at: Identical tool calls in a turn from which results carry a warning.
        repeat_stop_at: Identical tool calls in a turn at which the turn stops.
        durability: LangGraph durability mode. ``"sync"`` (default) persists each
            node's checkpoint before the next node starts, so a crash never repeats a
            model call whose result was already returned to the graph and checkpointed;
            ``"async"`` overlaps the write with the next node (faster, a crash may lose
            the last step); ``"exit"`` writes once per run. ``invoke(...,
            durability=...)`` overrides it per call.
        multitask_strategy: What a run does when another run holds its thread (in this
            process or another one on the same store): ``"enqueue"`` (default) waits
            for it, up to ``busy_timeout_s``; ``"reject"`` raises
            :class:`~langchain_kimi_context.errors.ThreadBusyError` at once;
            ``"interrupt"`` asks the running turn to stop after its current step (it
            raises :class:`~langchain_kimi_context.errors.ThreadInterruptedError`, its
            completed steps saved), then runs. A turn is kept exactly once or refused,
            never lost. A run's config may override it:
            ``{"configurable": {"multitask_strategy": "reject"}}``.
        busy_timeout_s: Longest wait of an enqueued run before it raises
            :class:`~langchain_kimi_context.errors.ThreadBusyError`.

    Example:
        >>> AgentSettings().max_consecutive_failures, AgentSettings().tool_timeout_s
        (5, 60.0)
        >>> AgentSettings(max_steps_per_turn=0)
        Traceback (most recent call last):
        ...
        langchain_kimi_context.errors.KimiConfigurationError: Invalid AgentSettings: ...
    """

    retry: RetrySettings = field(default_factory=RetrySettings)
    max_consecutive_failures: int = 5
    max_steps_per_turn: int = 100
    tool_timeout_s: float = 60.0
    tool_timeouts: Mapping[str, float] = field(default_factory=_frozen)
    repeat_warn_at: int = 3
    repeat_stop_at: int = 8
    durability: Literal["sync", "async", "exit"] = "sync"
    multitask_strategy: MultitaskStrategy = "enqueue"
    busy_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_timeouts", _frozen(self.tool_timeouts))
        problems = []
        if self.max_consecutive_failures < 1:
            problems.append("max_consecutive_failures must be >= 1")
        if self.max_steps_per_turn < 1:
            problems.append("max_steps_per_turn must be >= 1")
        if self.tool_timeout_s <= 0:
            problems.append("tool_timeout_s must be > 0")
        if not 1 <= self.repeat_warn_at <= self.repeat_stop_at:
            problems.append("need 1 <= repeat_warn_at <= repeat_stop_at")
        problems.extend(strategy_problems(self.multitask_strategy, self.busy_timeout_s))
        if problems:
            raise KimiConfigurationError("Invalid AgentSettings: " + "; ".join(problems))
