"""Drop-in faces of the context pipeline for LangChain agents and hand-built graphs.

* :class:`KimiContextMiddleware` for ``langchain.agents.create_agent(model, tools,
  middleware=[...])``: in ``wrap_model_call`` it runs the maybe-compact trigger, the
  pipeline (:func:`~langchain_kimi_context.prepare_context`: window guard, then the
  stages of :data:`~langchain_kimi_context.PIPELINE_STAGES`: sanitize, repair pairing,
  limit turns, repair pairing after a cut, tool-result truncation) on the compacted
  view, and calls
  the model through :class:`~langchain_kimi_context.OverflowRecovery` (a context
  overflow is caught, the history compacted and the call retried). Compaction records
  are kept in the agent state (``kimi_compactions``); the ``messages`` key is never
  rewritten, so nothing is lost. It composes with LangChain's own
  ``ModelRetryMiddleware`` (which retries 5xx/429; overflows are not retryable and
  reach the recovery).
* :class:`KimiPreModelHook`: the same for hand-built LangGraph graphs, as a
  ``pre_model_hook`` returning ``{"llm_input_messages": ...}``.

Nothing here implements a stage: both faces call the context layer's functions.
"""

from __future__ import annotations

import asyncio
import logging
import operator
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    OmitFromInput,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, SystemMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.constants import TAG_NOSTREAM
from langgraph.types import Command

from langchain_kimi_context import progress
from langchain_kimi_context.agent import stages as _stages
from langchain_kimi_context.agent.recall_tools import with_recall
from langchain_kimi_context.context.compaction import (
    Compaction,
    CompactionService,
    OverflowRecovery,
)
from langchain_kimi_context.context.pipeline import prepare_context
from langchain_kimi_context.context.policy import ContextPolicy, as_context_policy
from langchain_kimi_context.profiles import KimiModelProfile
from langchain_kimi_context.tokens import TokenCounter, default_token_counter

__all__ = ["KimiContextMiddleware", "KimiContextState", "KimiPreModelHook"]

logger = logging.getLogger(__name__)

RECORDS_KEY = "kimi_compactions"
_SYSTEM_ID = "kimi-middleware-system"


class KimiContextState(AgentState[Any]):
    """Agent state plus the compaction records kept by :class:`KimiContextMiddleware`.

    Example:
        >>> "kimi_compactions" in KimiContextState.__annotations__
        True
    """

    # in the run's output (what was compacted, with the numbers); not an input key
    kimi_compactions: NotRequired[Annotated[list[dict[str, Any]], OmitFromInput, operator.add]]


@dataclass
class _Plan:
    log: list[BaseMessage]
    records: list[Any]
    new_records: list[dict[str, Any]]
    profile: KimiModelProfile
    tools: list[dict[str, Any]]
    system: SystemMessage | None
    service: CompactionService


def _tool_schemas(tools: Sequence[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tool in tools:
        try:
            out.append(convert_to_openai_tool(tool))
        except Exception:
            if isinstance(tool, Mapping):
                out.append(dict(tool))
    return out


class _ContextCore:
    """What the middleware and the hook share (policy, counter, profile resolution)."""

    def __init__(
        self,
        policy: ContextPolicy | None,
        summary_model: BaseChatModel | None,
        model_name: str | None,
        token_counter: TokenCounter | None,
        compaction: Compaction | bool,
        owner: str,
    ) -> None:
        self.policy = as_context_policy(policy, owner=owner)
        self.summary_model = summary_model
        self.model_name = model_name
        self.token_counter = token_counter or default_token_counter()
        self.compaction = compaction is not False
        self.strategy = None if isinstance(compaction, bool) else compaction

    def profile_for(self, model: Any) -> KimiModelProfile:
        return _stages.model_profile(model, self.model_name)

    def plan(
        self,
        messages: Sequence[BaseMessage],
        state: Mapping[str, Any],
        model: Any,
        tools: Sequence[Any],
        system: SystemMessage | None,
    ) -> _Plan:
        profile = self.profile_for(model)
        schemas = _tool_schemas(tools)
        log = list(messages)
        records = list(state.get(RECORDS_KEY) or [])
        summariser: Any = self.summary_model or (
            model if isinstance(model, BaseChatModel) else None
        )
        if summariser is not None:  # a summary is not the answer: never streamed
            summariser = summariser.with_config(
                tags=[TAG_NOSTREAM], run_name="kimi_compaction_summary"
            )
        service = CompactionService(
            self.policy,
            profile,
            self.strategy,
            summariser if self.compaction else None,
            self.token_counter,
            schemas or None,
        )
        plan = _Plan(log, records, [], profile, schemas, system, service)
        if not (self.compaction and log):
            return plan
        run = service.maybe_compact(log, records, prepare=lambda view: self.sent(view, plan))
        if run.record is None:
            return plan
        record = run.record.to_dict()
        progress.report(
            logger,
            "compaction_end",
            "compaction applied: %s -> %s tokens (%s)",
            record.get("tokens_before"),
            record.get("tokens_after"),
            record.get("strategy"),
            applied=True,
            strategy=record.get("strategy"),
            tokens_before=record.get("tokens_before"),
            tokens_after=record.get("tokens_after"),
        )
        return _Plan(log, [*records, record], [record], profile, schemas, system, service)

    def prepare(self, raw_view: Sequence[BaseMessage], plan: _Plan) -> list[BaseMessage]:
        head: list[BaseMessage] = []
        if plan.system is not None:
            head = [plan.system.model_copy(update={"id": plan.system.id or _SYSTEM_ID})]
        out, _ = prepare_context(
            [*head, *raw_view],
            self.policy,
            profile=plan.profile,
            token_counter=self.token_counter,
            tools=plan.tools,
        )
        return [m for m in out if not (head and m.id == head[0].id)]

    def sent(self, raw_view: Sequence[BaseMessage], plan: _Plan) -> list[BaseMessage]:
        """What the model receives for ``raw_view``: the system message, then the rest."""
        body = self.prepare(raw_view, plan)
        return [plan.system, *body] if plan.system is not None else body

    def recovery(self, plan: _Plan) -> OverflowRecovery:
        return plan.service.recovery()


def _as_response(result: Any) -> tuple[ModelResponse[Any], Command[Any] | None]:
    if isinstance(result, ExtendedModelResponse):
        return result.model_response, result.command
    if isinstance(result, AIMessage):
        return ModelResponse(result=[result]), None
    response: ModelResponse[Any] = result
    return response, None


def _finish(result: Any, new_records: list[dict[str, Any]]) -> Any:
    # always written (an empty list adds nothing): the run's output carries the key
    response, command = _as_response(result)
    update: dict[str, Any] = {}
    if command is not None and isinstance(command.update, Mapping):
        update.update(command.update)
    update[RECORDS_KEY] = [*update.get(RECORDS_KEY, []), *new_records]
    return ExtendedModelResponse(model_response=response, command=Command(update=update))


class KimiContextMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Context management for ``langchain.agents.create_agent``: the package's pipeline.

    Per model call: maybe-compact (structural first, then a structured summary; the
    record goes to ``state["kimi_compactions"]``, ``messages`` is untouched) -> window
    guard, sanitize, repair pairing, limit turns, repair pairing after a cut, tool-result
    truncation (``prepare_context``) -> the call,
    with overflow recovery (compact, truncate, retry; a readable
    ``KimiContextOverflowError`` if nothing fits).

    Put it BEFORE ``ModelRetryMiddleware`` in the list (outermost), so retries of
    transient errors happen inside, per prepared request.

    Args:
        policy: Thresholds (default ``ContextPolicy()``).
        summary_model: Model used for summaries (default: the agent's model).
        model_name: Kimi model name for the window when the agent's model is not a
            ``KimiChatModel``.
        token_counter: Counter (default: the process-wide one).
        compaction: The compaction strategy for the trigger and overflow recovery: any
            object satisfying the
            :class:`~langchain_kimi_context.context.compaction.Compaction` protocol;
            ``True`` (default) is the default pipeline (structural strategies, then a
            structured summary by ``summary_model``); ``False`` runs no compaction on the
            trigger (overflow recovery then compacts structurally).
        recall: Give the agent the ``search_history`` / ``read_history`` tools over its
            full ``messages`` and set ``ContextPolicy(recall=True)`` (see
            :mod:`~langchain_kimi_context.agent.recall_tools`).

    Example:
        >>> from langchain.agents import create_agent
        >>> from langchain.agents.middleware import ModelRetryMiddleware
        >>> from langchain_kimi_context import KimiChatModel
        >>> model = KimiChatModel(model="kimi-k2.6", base_url=base_url, api_key=api_key)
        >>> agent = create_agent(model, tools=[], middleware=[
        ...     KimiContextMiddleware(), ModelRetryMiddleware(max_retries=2)])
        >>> out = agent.invoke({"messages": [("user", "@say hi there")]})
        >>> out["messages"][-1].content
        'hi there'

        Any compaction strategy (here the head is dropped instead of summarised):

        >>> from langchain_kimi_context.context.compaction import TruncateHead
        >>> KimiContextMiddleware(compaction=TruncateHead(preserve_tokens=8_000)).strategy.name
        'truncate_head'
    """

    state_schema: type[AgentState[Any]] = KimiContextState

    def __init__(
        self,
        policy: ContextPolicy | None = None,
        *,
        summary_model: BaseChatModel | None = None,
        model_name: str | None = None,
        token_counter: TokenCounter | None = None,
        compaction: Compaction | bool = True,
        recall: bool = False,
    ) -> None:
        super().__init__()
        self.tools = []
        self._core = _ContextCore(
            policy, summary_model, model_name, token_counter, compaction, "KimiContextMiddleware"
        )
        if recall:
            self.tools, self._core.policy = with_recall(
                (),
                self._core.policy,
                recall=True,
                compact_tool=False,
                model=None,
                token_counter=self._core.token_counter,
            )

    @property
    def policy(self) -> ContextPolicy:
        """The thresholds in use."""
        return self._core.policy

    @property
    def strategy(self) -> Compaction | None:
        """The compaction strategy given as ``compaction=`` (``None``: default or off)."""
        return self._core.strategy

    def _plan(self, request: ModelRequest[Any]) -> _Plan:
        return self._core.plan(
            request.messages,
            request.state,
            request.model,
            request.tools,
            request.system_message,
        )

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> Any:
        """Compact if due, run the pipeline, call the model with overflow recovery.

        Args:
            request: The model request (``messages`` = the full history).
            handler: The next handler (inner middleware, then the model).

        Returns:
            The model response, with the new compaction records as a state update.
        """
        plan = self._plan(request)

        def send(raw_view: list[BaseMessage]) -> Any:
            messages: list[AnyMessage] = self._core.prepare(raw_view, plan)  # type: ignore[assignment]
            return handler(request.override(messages=messages))

        outcome = self._core.recovery(plan).invoke(
            send,
            plan.log,
            records=_stages.load_records(plan.records),
        )
        new = [*plan.new_records, *(r.to_dict() for r in outcome.records)]
        return _finish(outcome.result, new)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> Any:
        """Async variant of :meth:`wrap_model_call`.

        Args:
            request: The model request.
            handler: The next async handler.

        Returns:
            The model response, with the new compaction records as a state update.
        """
        plan = await asyncio.to_thread(self._plan, request)

        async def send(raw_view: list[BaseMessage]) -> Any:
            messages: list[AnyMessage] = self._core.prepare(raw_view, plan)  # type: ignore[assignment]
            return await handler(request.override(messages=messages))

        outcome = await self._core.recovery(plan).ainvoke(
            send,
            plan.log,
            records=_stages.load_records(plan.records),
        )
        new = [*plan.new_records, *(r.to_dict() for r in outcome.records)]
        return _finish(outcome.result, new)


class KimiPreModelHook:
    """A ``pre_model_hook`` for hand-built LangGraph graphs (and ``create_react_agent``).

    Returns ``{"llm_input_messages": prepared}`` (what LangGraph's prebuilt agent sends
    instead of ``state["messages"]``, leaving the stored history untouched). With
    ``model`` given, it also compacts when the trigger fires and returns the new record
    under ``kimi_compactions`` (add that key to your state, e.g. with
    :class:`KimiContextState`; set ``store_records=False`` if your state lacks it).

    Args:
        policy: Thresholds.
        model: Summariser for compaction (``None``: the pipeline stages only).
        model_name: Kimi model name (window, thinking mode).
        tools: Tools bound to your model (counted in the estimate).
        token_counter: Counter.
        store_records: Return new records in the update (needs the state key).
        compaction: A compaction strategy (any object satisfying the
            :class:`~langchain_kimi_context.context.compaction.Compaction` protocol)
            for the trigger; it runs even without ``model`` when it needs no summariser
            (e.g. :class:`~langchain_kimi_context.context.compaction.TruncateHead`).
            ``None``: the default summary strategy when ``model`` is given, else none.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
        >>> hook = KimiPreModelHook()
        >>> state = {"messages": [HumanMessage("hi", id="1"),
        ...     ToolMessage("orphan", tool_call_id="x", id="2")]}
        >>> [m.id for m in hook(state)["llm_input_messages"]]
        ['1']
    """

    def __init__(
        self,
        policy: ContextPolicy | None = None,
        *,
        model: BaseChatModel | None = None,
        model_name: str | None = None,
        tools: Sequence[Any] = (),
        token_counter: TokenCounter | None = None,
        store_records: bool = True,
        compaction: Compaction | None = None,
    ) -> None:
        self._core = _ContextCore(
            policy,
            model,
            model_name,
            token_counter,
            compaction if compaction is not None else model is not None,
            "KimiPreModelHook",
        )
        self.model = model
        self.tools = list(tools)
        self.store_records = store_records

    def __call__(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """Prepare the model input from ``state["messages"]``.

        Args:
            state: The graph state (``messages`` and optionally ``kimi_compactions``).

        Returns:
            ``{"llm_input_messages": [...]}`` plus ``kimi_compactions`` when a new
            compaction record was made.
        """
        messages = list(state.get("messages") or [])
        system = None
        plan = self._core.plan(messages, state, self.model, self.tools, system)
        raw = _stages.apply_records(messages, plan.records)
        update: dict[str, Any] = {"llm_input_messages": self._core.prepare(raw, plan)}
        if plan.new_records and self.store_records:
            update[RECORDS_KEY] = plan.new_records
        return update
