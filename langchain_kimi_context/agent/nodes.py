"""The nodes of the Kimi agent graph: thin wrappers over the context-layer stages.

After ``preflight`` (the window guard), the graph has one node per stage of
:data:`~langchain_kimi_context.context.pipeline.PIPELINE_STAGES` (or of the stages given
to ``create_kimi_agent``), named after it and in its order: the very tuple
``prepare_context`` folds, so the agent's request is by construction what
``prepare_context`` returns for the same view. Each pipeline node takes
the prepared view and the :class:`~langchain_kimi_context.context.pipeline.StageContext`
left by the previous node (transient, never-checkpointed channels), runs ONE stage, and
stores only that stage's small report in the state. If they are missing (the process
restarted between two nodes), the node rebuilds them deterministically from the log and
the compaction records by re-running the earlier stages, which are pure functions. The
model node sends the view; its reply (and the tools node's results) are appended to the
log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.constants import TAG_NOSTREAM
from langgraph.types import interrupt

from langchain_kimi_context import progress
from langchain_kimi_context.agent import stages as agent_stages
from langchain_kimi_context.agent.retry import RetryExhaustedError, call_with_retry
from langchain_kimi_context.agent.state import (
    AgentSettings,
    KimiMaxStepsExceededError,
    PreparedView,
)
from langchain_kimi_context.agent.tools import ToolRunner, ToolRunReport
from langchain_kimi_context.context.compaction import Compaction, CompactionService
from langchain_kimi_context.context.markers import is_marked
from langchain_kimi_context.context.pipeline import (
    PIPELINE_STAGES,
    PipelineStage,
    StageContext,
    run_stages,
)
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.errors import (
    KimiConfigurationError,
    is_retryable_error,
    is_unreachable_error,
)
from langchain_kimi_context.profiles import KimiModelProfile
from langchain_kimi_context.tokens import ContextSizeTracker, TokenCounter
from langchain_kimi_context.usage import add_usage

__all__ = ["PIPELINE_NODES", "AgentRuntime", "pipeline_nodes"]

logger = logging.getLogger(__name__)

_OTHER_NODES = frozenset({"preflight", "call_model", "tools", "compact"})


def pipeline_nodes(stages: Sequence[PipelineStage]) -> tuple[str, ...]:
    """The nodes before ``call_model`` for ``stages``: ``preflight``, then one per stage.

    Args:
        stages: The pipeline stages the agent runs.

    Returns:
        The node names, in order.

    Raises:
        KimiConfigurationError: Two stages share a name, or a stage is named like another
            node of the graph.
    """
    names = tuple(stage.name for stage in stages)
    clashes = sorted(
        {n for n in names if names.count(n) > 1 or n in _OTHER_NODES or n.startswith("__")}
    )
    if clashes:
        msg = f"pipeline stage names must be unique and not name another node: {clashes}"
        raise KimiConfigurationError(msg)
    return ("preflight", *names)


PIPELINE_NODES: tuple[str, ...] = pipeline_nodes(PIPELINE_STAGES)
"""The nodes before ``call_model``, in order: ``preflight``, then one node per stage of
:data:`~langchain_kimi_context.context.pipeline.PIPELINE_STAGES` (same names, same order)."""

_ABORT_WORDS = {"abort", "stop", "cancel"}


def _last_user_message(log: Sequence[BaseMessage]) -> BaseMessage | None:
    for m in reversed(log):
        if isinstance(m, HumanMessage) and not is_marked(m, "summary", "bootstrap"):
            return m
    return None


def _is_abort(answer: Any) -> bool:
    if isinstance(answer, str):
        return answer.strip().lower() in _ABORT_WORDS
    if isinstance(answer, Mapping):
        return str(answer.get("action", "")).lower() in _ABORT_WORDS
    return answer is False


@dataclass
class AgentRuntime:
    """Everything the nodes share: model, tools, policy, settings, counters.

    Built by :func:`~langchain_kimi_context.agent.create_kimi_agent`; not usually
    constructed directly.

    Attributes:
        model: The chat model (its own retries off: the agent retries).
        bound_model: The model with the tools bound.
        runner: The tool runner.
        policy: Context thresholds.
        settings: Reliability settings.
        token_counter: The token counter.
        tool_schemas: OpenAI tool schemas (for token counts).
        sleep: Sleep function used between retries.
        system_prompt: System prompt prepended to every view (not stored in the log).
        compaction: The compaction strategy (``None``: the default pipeline).
        stages: The pipeline stages, one graph node each (default: ``PIPELINE_STAGES``).
    """

    model: BaseChatModel
    bound_model: Runnable[Any, Any]
    runner: ToolRunner
    policy: ContextPolicy
    settings: AgentSettings
    token_counter: TokenCounter
    tool_schemas: list[dict[str, Any]] = field(default_factory=list)
    sleep: Callable[[float], None] = time.sleep
    system_prompt: str | None = None
    compaction: Compaction | None = None
    stages: tuple[PipelineStage, ...] = PIPELINE_STAGES

    @property
    def pipeline_nodes(self) -> tuple[str, ...]:
        """The nodes before ``call_model``: ``preflight``, then one per stage."""
        return pipeline_nodes(self.stages)

    @property
    def profile(self) -> KimiModelProfile:
        """The model profile (window, max output), read at each use.

        A window learned at run time applies at once (see
        :func:`~langchain_kimi_context.agent.stages.model_profile`).
        """
        return agent_stages.model_profile(self.model)

    # ------------------------------------------------------------------ helpers --
    def size_tracker(self, state: Mapping[str, Any]) -> ContextSizeTracker:
        """The session's calibrated size tracker (last server usage + calibrated delta).

        Args:
            state: The graph state (the tracker is kept under ``context``).

        Returns:
            The tracker (a fresh one before the session's first call).
        """
        data = (state.get("context") or {}).get("tracker")
        if data:
            return ContextSizeTracker.from_dict(data, self.token_counter)
        return ContextSizeTracker(self.token_counter)

    @property
    def compaction_service(self) -> CompactionService:
        """The compaction service for the model as it is now (window, strategy, summariser).

        Every compaction of the agent (trigger, end of turn, overflow) goes through it.
        """
        return CompactionService(
            self.policy,
            self.profile,
            self.compaction,
            self.summary_model,
            self.token_counter,
            self.tool_schemas or None,
        )

    def head(self) -> list[AnyMessage]:
        """The messages sent before the view: the system prompt, if any."""
        if not self.system_prompt:
            return []
        return [SystemMessage(self.system_prompt, id="kimi-agent-system-prompt")]

    def base_view(self, state: Mapping[str, Any]) -> list[AnyMessage]:
        """The log with the compaction records applied (before the pipeline).

        Args:
            state: The graph state.

        Returns:
            The messages the pipeline starts from.
        """
        log = list(state.get("messages") or [])
        return [*self.head(), *agent_stages.apply_records(log, state.get("compactions"))]

    def stage_context(self, state: Mapping[str, Any]) -> StageContext:
        """The context the first pipeline stage gets for this state.

        Args:
            state: The graph state (for the session key).

        Returns:
            A fresh :class:`~langchain_kimi_context.context.pipeline.StageContext`.
        """
        return StageContext.build(
            self.policy,
            profile=self.profile,
            token_counter=self.token_counter,
            tools=self.tool_schemas,
            session_key=_session_key(state),
        )

    def stage_input(
        self, state: Mapping[str, Any], node: str
    ) -> tuple[list[AnyMessage], StageContext]:
        """The view and stage context as the node ``node`` receives them.

        They come from the previous node through transient channels; when missing (a
        restarted process resuming mid-pipeline) they are rebuilt by re-running the
        stages before ``node`` on the log's view.

        Args:
            state: The graph state.
            node: A stage name from :data:`PIPELINE_NODES` or ``"call_model"``.

        Returns:
            ``(view, ctx)``.
        """
        view = state.get("kimi_view")
        ctx = state.get("kimi_stage_context")
        if view is not None and isinstance(ctx, StageContext):
            return list(view), ctx
        names = [stage.name for stage in self.stages]
        upto = names.index(node) if node in names else len(names)
        out, ctx, _ = run_stages(
            self.base_view(state), self.stage_context(state), self.stages[:upto]
        )
        return list(out), ctx  # type: ignore[arg-type]

    def prepare(self, raw_view: Sequence[BaseMessage], state: Mapping[str, Any]) -> list[Any]:
        """Run the pipeline stages (after the guard) on a freshly rebuilt view.

        Args:
            raw_view: ``apply_compactions(log, records)``.
            state: The graph state.

        Returns:
            The messages to send.
        """
        out, _, _ = run_stages([*self.head(), *raw_view], self.stage_context(state), self.stages)
        return list(out)

    @property
    def summary_model(self) -> Runnable[Any, Any]:
        """The model for summaries: tagged ``nostream``, so no token reaches the user.

        LangGraph's ``stream_mode="messages"`` skips runs tagged ``nostream``; a
        compaction summary is bookkeeping, not the answer.
        """
        return self.model.with_config(tags=[TAG_NOSTREAM], run_name="kimi_compaction_summary")

    def _learned_window(self, model_name: str, window: int) -> None:
        learn = getattr(self.model, "learn_context_window", None)
        if callable(learn):
            learn(window, model=model_name)
        progress.report(
            logger,
            "window_learned",
            "context window of %s learned from the server: %d tokens (used from now on)",
            model_name,
            window,
            model=model_name,
            window=window,
        )

    @staticmethod
    def _retrying(attempt: int, record: Any) -> None:
        progress.report(
            logger,
            "retry",
            "model call attempt %d failed (%s: %.120s); retrying in %.2f s",
            attempt,
            record.error_type,
            record.message,
            record.waited_s,
            attempt=attempt,
            error_type=record.error_type,
            message=record.message,
            wait_s=round(record.waited_s, 3),
        )

    # ------------------------------------------------------------------- nodes --
    def preflight(self, state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        """Window guard: resolve the window, estimate the request, pick a route.

        Also starts a new turn's bookkeeping when a new user message arrived, and asks
        for a compaction first when the trigger fires or the request does not fit.
        """
        log = list(state.get("messages") or [])
        turn = dict(state.get("turn") or {})
        last_user = _last_user_message(log)
        if last_user is not None and turn.get("id") != last_user.id:
            turn = {"id": last_user.id, "steps": 0, "failed_steps": 0}
        view = self.base_view(state)
        decision = self.compaction_service.decide(
            view, state.get("compactions"), self.size_tracker(state)
        )
        report = agent_stages.guard(
            view,
            self.policy,
            profile=self.profile,
            token_counter=self.token_counter,
            tools=self.tool_schemas,
        )
        report["calibrated_tokens"] = decision.tokens
        reason: str | None = (decision.reason or "trigger") if decision else None
        if reason is None and report.get("route") in ("compact", "compact_then_truncate"):
            reason = "preflight"
        # compact at most once per log length, so a compaction that cannot help
        # does not loop; the truncate stage and overflow recovery take it from there
        if reason is not None and turn.get("compacted_at") != len(log):
            turn["compact_reason"] = reason
        else:
            turn.pop("compact_reason", None)
        report["compact"] = turn.get("compact_reason")
        return {
            "kimi_view": PreparedView(view),
            "kimi_stage_context": self.stage_context(state),
            "turn": turn,
            "reports": {"preflight": report},
        }

    def route_after_preflight(self, state: Mapping[str, Any]) -> str:
        """``compact`` when the guard asked for it (once per step), else the first stage."""
        turn = state.get("turn") or {}
        return "compact" if turn.get("compact_reason") else self.pipeline_nodes[1]

    def make_stage_node(
        self, stage: PipelineStage
    ) -> Callable[[Mapping[str, Any], RunnableConfig], dict[str, Any]]:
        """A node running one pipeline stage on the view and storing its report.

        Args:
            stage: One of :attr:`stages`.

        Returns:
            The node function (named after the stage).
        """
        name, run, skip_reason = stage

        def node(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
            view, ctx = self.stage_input(state, name)
            new_view, report = run(view, ctx)
            small = agent_stages.stage_report(report, skip_reason=skip_reason)
            logger.debug("stage %s: %s", name, small)
            return {
                "kimi_view": PreparedView(new_view),
                "kimi_stage_context": ctx.after(report),
                "reports": {name: small},
            }

        node.__name__ = name
        return node

    def call_model(self, state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        """Send the view to the model with retries; append the reply to the log."""
        turn = dict(state.get("turn") or {})
        settings = self.settings
        if turn.get("failed_steps", 0) >= settings.max_consecutive_failures:
            summary = {
                "reason": "consecutive_failures",
                "failed_steps": turn.get("failed_steps", 0),
                "failures": turn.get("failures", []),
                "message": (
                    f"The model call failed in {turn.get('failed_steps', 0)} consecutive "
                    f"steps ({_failure_text(turn.get('failures', []))}). Resume with "
                    f"Command(resume='retry') to try again from the last checkpoint, or "
                    f"Command(resume='abort') to end the turn."
                ),
            }
            answer = interrupt(summary)
            turn["failed_steps"] = 0
            turn["failures"] = []
            if _is_abort(answer):
                turn["stop_reason"] = "aborted_after_failures"
                note = AIMessage(
                    "[The turn was stopped after repeated model-call failures: "
                    f"{_failure_text(summary['failures'])}.]"
                )
                return {"messages": [note], "turn": turn, "reports": {"call_model": summary}}
        steps = int(turn.get("steps", 0))
        if steps >= settings.max_steps_per_turn:
            raise KimiMaxStepsExceededError(steps=steps + 1, limit=settings.max_steps_per_turn)
        prepared, _ = self.stage_input(state, "call_model")
        log = list(state.get("messages") or [])
        records = agent_stages.load_records(state.get("compactions"))
        sent: list[list[AnyMessage]] = []

        # before the session's first answer an unreachable endpoint is a wrong base_url:
        # raised at once (resuming cannot fix it); later it is a blip, retried
        first_call = not int((state.get("usage") or {}).get("calls", 0))

        def retryable(exc: BaseException) -> bool:
            if first_call and is_unreachable_error(exc):
                return False
            return is_retryable_error(exc)

        def send(raw_view: list[BaseMessage]) -> tuple[Any, list[Any]]:
            # the first call sends the prepared view; after an overflow compaction the
            # new view goes through the same pipeline stages again
            view = prepared if not sent else self.prepare(raw_view, state)
            sent.append(view)
            return call_with_retry(
                lambda: self.bound_model.invoke(view, config),
                settings.retry,
                sleep=self.sleep,
                is_retryable=retryable,
                on_retry=self._retrying,
            )

        recovery = self.compaction_service.recovery(on_window_learned=self._learned_window)
        started = time.perf_counter()
        try:
            outcome = recovery.invoke(
                send, log, records=records, snapshot_id=_checkpoint_id(config)
            )
        except RetryExhaustedError as exc:
            turn["failed_steps"] = int(turn.get("failed_steps", 0)) + 1
            turn["failures"] = [
                *turn.get("failures", []),
                *(a.to_dict() for a in exc.attempts),
            ][-3 * settings.max_consecutive_failures :]
            report = {
                "ok": False,
                "attempts": [a.to_dict() for a in exc.attempts],
                "failed_steps": turn["failed_steps"],
            }
            return {"turn": turn, "reports": {"call_model": report}}
        reply, failures = outcome.result
        view = sent[-1]
        model_ms = (time.perf_counter() - started) * 1000
        tracker = self.size_tracker(state)
        tracker.record_response(view, reply, tools=self.tool_schemas or None)
        usage = add_usage(state.get("usage") or {}, reply)
        turn.update(steps=steps + 1, failed_steps=0, failures=[])
        report = {
            "ok": True,
            "sent_messages": len(view),
            "retries": [a.to_dict() for a in failures],
            "tool_calls": len(reply.tool_calls) if isinstance(reply, AIMessage) else 0,
            "model_ms": round(model_ms, 1),
        }
        if outcome.steps != ("call",):
            report["overflow_recovery"] = list(outcome.steps)
            progress.report(
                logger,
                "overflow_recovery",
                "context overflow recovered: %s",
                " -> ".join(outcome.steps),
                steps=list(outcome.steps),
            )
        context = dict(state.get("context") or {})
        context.update(
            tracker=tracker.to_dict(),
            window=self.profile.context_window,
            last_prompt_tokens=tracker.last_prompt_tokens,
        )
        update: dict[str, Any] = {
            "messages": [reply],
            "turn": turn,
            "usage": usage,
            "context": context,
            "reports": {"call_model": report},
        }
        if outcome.records:
            update["compactions"] = [r.to_dict() for r in outcome.records]
            update["snapshots"] = [r.snapshot_id for r in outcome.records if r.snapshot_id]
        return update

    def route_after_model(self, state: Mapping[str, Any]) -> str:
        """Route after the model: retry step, tools, or maybe-compact then END."""
        report = (state.get("reports") or {}).get("call_model") or {}
        turn = state.get("turn") or {}
        if report.get("ok") is False and "attempts" in report:
            return "call_model"
        log = state.get("messages") or []
        last = log[-1] if log else None
        if isinstance(last, AIMessage) and last.tool_calls and not turn.get("stop_reason"):
            return "tools"
        return "compact"

    def tools(self, state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        """Run the tool calls of the last assistant message (the ``invoke`` path)."""
        last, log = self._tool_message(state)
        return self._tools_update(state, *self.runner.run(last, log, state=state, config=config))

    async def atools(self, state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        """Run the tool calls on the caller's event loop (the ``ainvoke`` path)."""
        last, log = self._tool_message(state)
        outcome = await self.runner.arun(last, log, state=state, config=config)
        return self._tools_update(state, *outcome)

    @staticmethod
    def _tool_message(state: Mapping[str, Any]) -> tuple[AIMessage, list[AnyMessage]]:
        log = list(state.get("messages") or [])
        last = log[-1] if log else None
        if not isinstance(last, AIMessage):
            raise RuntimeError("the tools node needs an assistant message with tool calls last")
        return last, log

    def _tools_update(
        self, state: Mapping[str, Any], results: Sequence[AnyMessage], report: ToolRunReport
    ) -> dict[str, Any]:
        out: list[AnyMessage] = list(results)
        turn = dict(state.get("turn") or {})
        if report.stopped:
            turn["stop_reason"] = "repeated_tool_call"
            out.append(
                AIMessage(
                    f"[Stopped: the tool call {report.stopped} was repeated "
                    f"{self.settings.repeat_stop_at} times with identical arguments in this "
                    f"turn. Send a new message to continue.]"
                )
            )
        return {"messages": out, "turn": turn, "reports": {"tools": report.to_dict()}}

    def route_after_tools(self, state: Mapping[str, Any]) -> str:
        """Back to ``preflight`` for the next step, or ``compact`` when the turn stopped."""
        turn = state.get("turn") or {}
        return "compact" if turn.get("stop_reason") else "preflight"

    def compact(self, state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        """Compaction before a call (trigger/guard asked) or at the end of a turn."""
        log = list(state.get("messages") or [])
        turn = dict(state.get("turn") or {})
        reason = turn.pop("compact_reason", None)
        phase = "before_call" if reason else "end_of_turn"
        if reason:
            self._compaction_started(reason, phase)
        service = self.compaction_service
        records = state.get("compactions") or []
        options: dict[str, Any] = {
            "snapshot_id": _checkpoint_id(config),
            "prepare": lambda view: self.prepare(view, state),
        }
        if reason:
            run = service.compact(log, records, trigger=reason, **options)
        else:
            tracker = self.size_tracker(state)
            run = service.maybe_compact(log, records, tracker=tracker, head=self.head(), **options)
        record = run.record.to_dict() if run.record is not None else None
        report = run.to_dict()
        report["phase"] = phase
        if report.get("ran"):
            if not reason:  # the end-of-turn check decides inside: it started just now
                self._compaction_started(str(report.get("trigger")), phase)
            self._compaction_ended(report, record, config)
        turn["compacted_at"] = len(log)
        update: dict[str, Any] = {"turn": turn, "reports": {"compact": report}}
        if record is not None:
            update["compactions"] = [record]
            if record.get("snapshot_id"):
                update["snapshots"] = [record["snapshot_id"]]
        return update

    @staticmethod
    def _compaction_started(reason: str, phase: str) -> None:
        progress.report(
            logger,
            "compaction_start",
            "compaction started (%s, %s)",
            reason,
            phase,
            reason=reason,
            phase=phase,
        )

    @staticmethod
    def _compaction_ended(
        report: Mapping[str, Any], record: Mapping[str, Any] | None, config: RunnableConfig
    ) -> None:
        before, after = report.get("tokens_before"), report.get("tokens_after")
        rejected = report.get("rejected")
        progress.report(
            logger,
            "compaction_end",
            "compaction %s: %s -> %s tokens (%s, %s model call(s))%s",
            "applied" if record is not None else "not applied",
            before,
            after,
            report.get("strategy"),
            report.get("model_calls"),
            f"; rejected: {rejected}" if rejected else "",
            level=logging.WARNING if rejected else logging.INFO,
            applied=record is not None,
            strategy=report.get("strategy"),
            tokens_before=before,
            tokens_after=after,
            model_calls=report.get("model_calls"),
            rejected=rejected,
        )
        if record is not None and record.get("snapshot_id"):
            thread = (config.get("configurable") or {}).get("thread_id")
            progress.report(
                logger,
                "snapshot",
                "snapshot %s of thread %s holds the state before the compaction",
                record["snapshot_id"],
                thread,
                thread_id=thread,
                checkpoint_id=record["snapshot_id"],
                reason="compaction",
            )

    def route_after_compact(self, state: Mapping[str, Any]) -> str:
        """END when the turn is over, else back to ``preflight``."""
        turn = state.get("turn") or {}
        log = state.get("messages") or []
        last = log[-1] if log else None
        if turn.get("stop_reason") or (isinstance(last, AIMessage) and not last.tool_calls):
            return "__end__"
        return "preflight"


def _checkpoint_id(config: RunnableConfig) -> str | None:
    """Id of the checkpoint the running node started from (the pre-node state)."""
    conf = config.get("configurable") or {}
    value = conf.get("checkpoint_id") or (conf.get("checkpoint_map") or {}).get("")
    return str(value) if value else None


def _session_key(state: Mapping[str, Any]) -> str | None:
    key = (state.get("context") or {}).get("session_key")
    return str(key) if key else None


def _failure_text(failures: Sequence[Mapping[str, Any]]) -> str:
    if not failures:
        return "no details"
    kinds: dict[str, int] = {}
    for f in failures:
        kinds[str(f.get("error_type"))] = kinds.get(str(f.get("error_type")), 0) + 1
    last = failures[-1].get("message", "")
    return ", ".join(f"{k} x{v}" for k, v in kinds.items()) + f"; last error: {last}"
