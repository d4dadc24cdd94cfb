"""``create_kimi_agent``: the checkpointed LangGraph agent for long Kimi sessions.

Graph (every arrow is a checkpointed superstep)::

    START -> preflight -> <one node per pipeline stage> -> call_model -> tools -> preflight
                                                           (tool loop)
                                                        -> compact (maybe-compact) -> END
    preflight -> compact -> preflight              (guard / trigger asked)
    call_model -> call_model                       (failed step, retried)
    call_model -> compact -> preflight             (overflow recovery)

The nodes between ``preflight`` and ``call_model`` are built from
:data:`~langchain_kimi_context.context.pipeline.PIPELINE_STAGES` (one node per stage, same
name, same order): the tuple ``prepare_context`` runs too, so the agent sends what
``prepare_context`` returns for the same view. Each node stores its small report under
``state["reports"][node]``, so the checkpoint history shows what each stage did; the
prepared view itself travels in a transient channel and is never stored.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph._internal._config import ensure_config
from langgraph._internal._constants import CONFIG_KEY_DURABILITY
from langgraph._internal._runnable import RunnableCallable
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore

from langchain_kimi_context.agent.checkpointer import resolve_checkpointer
from langchain_kimi_context.agent.concurrency import ThreadGuard, strategy_problems, thread_guard
from langchain_kimi_context.agent.inputs import check_agent_input
from langchain_kimi_context.agent.nodes import AgentRuntime, pipeline_nodes
from langchain_kimi_context.agent.recall_tools import compact_on_request, with_recall
from langchain_kimi_context.agent.state import (
    AgentSettings,
    KimiAgentInput,
    KimiAgentState,
    _GraphState,
)
from langchain_kimi_context.agent.storage import apruned_stream, pruned_stream
from langchain_kimi_context.agent.tools import ToolRunner
from langchain_kimi_context.chat_models import KimiChatModel
from langchain_kimi_context.context.compaction import Compaction
from langchain_kimi_context.context.pipeline import PIPELINE_STAGES, PipelineStage
from langchain_kimi_context.context.policy import ContextPolicy, as_context_policy
from langchain_kimi_context.errors import KimiConfigurationError, ThreadInterruptedError
from langchain_kimi_context.tokens import TokenCounter, default_token_counter

__all__ = ["create_kimi_agent"]


def _resolve_model(model: KimiChatModel | BaseChatModel | str) -> BaseChatModel:
    if isinstance(model, str):
        return KimiChatModel(model=model, max_retries=0)
    if isinstance(model, KimiChatModel):
        # The agent retries (and counts failed steps); the model must not retry too.
        return model.model_copy(update={"max_retries": 0}) if model.max_retries else model
    if isinstance(model, BaseChatModel):
        return model
    raise KimiConfigurationError(
        f"model must be a KimiChatModel, another LangChain chat model or a model name, "
        f"got {type(model).__name__}"
    )


def resolve_settings(settings: object, *, owner: str) -> AgentSettings:
    if settings is None:
        return AgentSettings()
    if isinstance(settings, AgentSettings):
        return settings
    msg = (
        f"{owner}(settings=...) must be an AgentSettings, got {type(settings).__name__}; "
        "pass AgentSettings(max_steps_per_turn=..., ...) "
        "(from langchain_kimi_context import AgentSettings)."
    )
    raise KimiConfigurationError(msg)


_THREAD_KEYS = ("thread_id", "checkpoint_id")


def _require_thread(config: RunnableConfig | None) -> None:
    """Raise a clear error when a checkpointed run is started without a thread id.

    LangGraph makes this check itself only while ``configurable`` is empty; the agent's
    default ``durability`` lives there, so without this a missing ``thread_id`` surfaced
    as the saver's bare ``KeyError: 'thread_id'``.
    """
    configurable = (config or {}).get("configurable") or {}
    if any(configurable.get(key) is not None for key in _THREAD_KEYS):
        return
    msg = (
        "create_kimi_agent(...) checkpoints every step, so each run needs a thread id: "
        'agent.invoke(input, {"configurable": {"thread_id": "session-1"}}) (the same id '
        "resumes the session). Build it with checkpointer=False to run without persistence."
    )
    raise KimiConfigurationError(msg)


# The runtime behind each graph create_kimi_agent returned (read with agent_runtime()).
_RUNTIMES: weakref.WeakKeyDictionary[Any, AgentRuntime] = weakref.WeakKeyDictionary()


class _KimiAgentGraph(CompiledStateGraph[Any, Any, Any, Any]):
    """The compiled agent graph: runs check their input and thread id, then hold the thread.

    A run holds its thread id for its whole duration (see
    :mod:`~langchain_kimi_context.agent.concurrency`): another run on the same thread
    waits, is refused with ``ThreadBusyError``, or asks this run to stop at its next
    step boundary (``ThreadInterruptedError``), per ``multitask_strategy``.
    """

    def __init__(
        self,
        *,
        kimi_guard: ThreadGuard | None = None,
        kimi_busy: tuple[str, float] = ("enqueue", 600.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kimi_guard = kimi_guard
        self.kimi_busy = kimi_busy

    def _busy_args(self, config: RunnableConfig) -> tuple[str, str, float] | None:
        configurable = config.get("configurable") or {}
        thread = configurable.get("thread_id")
        if thread is None or self.kimi_guard is None:
            return None
        strategy = configurable.get("multitask_strategy", self.kimi_busy[0])
        timeout = configurable.get("busy_timeout_s", self.kimi_busy[1])
        problems = strategy_problems(strategy, timeout)
        if problems:
            raise KimiConfigurationError("Invalid run config: " + "; ".join(problems))
        return str(thread), str(strategy), float(timeout)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        merged = ensure_config(self.config, config)
        _require_thread(merged)
        input = check_agent_input(input)
        busy = self._busy_args(merged)
        chunks = pruned_stream(super().stream(input, config, **kwargs), self.checkpointer, merged)
        return chunks if busy is None else self._held_stream(busy, chunks)

    def _held_stream(self, busy: tuple[str, str, float], chunks: Iterator[Any]) -> Iterator[Any]:
        assert self.kimi_guard is not None
        with self.kimi_guard.hold(*busy) as held:
            for chunk in chunks:
                yield chunk
                if held.interrupt_requested():  # a step just finished and was saved
                    raise ThreadInterruptedError(busy[0])

    def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        merged = ensure_config(self.config, config)
        _require_thread(merged)
        input = check_agent_input(input)
        busy = self._busy_args(merged)
        chunks = apruned_stream(super().astream(input, config, **kwargs), self.checkpointer, merged)
        return chunks if busy is None else self._held_astream(busy, chunks)

    async def _held_astream(
        self, busy: tuple[str, str, float], chunks: AsyncIterator[Any]
    ) -> AsyncIterator[Any]:
        assert self.kimi_guard is not None
        async with self.kimi_guard.ahold(*busy) as held:
            async for chunk in chunks:
                yield chunk
                if held.interrupt_requested():
                    raise ThreadInterruptedError(busy[0])


def create_kimi_agent(
    model: KimiChatModel | BaseChatModel | str,
    tools: Sequence[BaseTool | Callable[..., Any]] | None = (),
    *,
    system_prompt: str | None = None,
    policy: ContextPolicy | None = None,
    settings: AgentSettings | None = None,
    checkpointer: BaseCheckpointSaver[Any] | bool | str | None = None,
    store: BaseStore | None = None,
    db_path: str | os.PathLike[str] | None = None,
    token_counter: TokenCounter | None = None,
    name: str = "kimi_agent",
    sleep: Callable[[float], None] = time.sleep,
    recall: bool = False,
    compact_context_tool: bool = False,
    mcp_servers: Mapping[str, Any] | None = None,
    compaction: Compaction | None = None,
    stages: Sequence[PipelineStage] = PIPELINE_STAGES,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Build the checkpointed agent graph for long Kimi sessions.

    Invoke it the LangGraph way:
    ``agent.invoke({"messages": [...]}, {"configurable": {"thread_id": "..."}})``.
    After a crash, ``agent.invoke(None, config)`` finishes the interrupted turn from the
    last checkpoint (a new message also works: the turn is then abandoned and the
    pipeline repairs any dangling tool call in what the model sees).

    Args:
        model: A :class:`~langchain_kimi_context.KimiChatModel` (its own retries are
            switched off: the agent retries), another LangChain chat model, or a Kimi
            model name.
        tools: LangChain tools or plain functions (``None`` = no tools).
        system_prompt: Prepended to every request as a system message (not stored in
            the log).
        policy: Context thresholds (default ``ContextPolicy()``).
        settings: Retry/tool/step limits (default ``AgentSettings()``).
        checkpointer: Any ``BaseCheckpointSaver`` (Postgres, memory...), a
            ``"postgresql://..."`` URL (LangGraph's Postgres savers on sync and async
            pools: :mod:`~langchain_kimi_context.agent.checkpointer`) or a SQLite path. ``None`` =
            SQLite at ``db_path`` or the default path (``$KIMI_CONTEXT_DB`` or
            ``~/.local/share/langchain-kimi-context/checkpoints.sqlite``), created on
            first use. ``False`` = no persistence (not recommended).
        store: Optional LangGraph store for cross-thread memory.
        db_path: SQLite file for the default checkpointer.
        token_counter: Token counter (default: the process-wide one).
        name: Graph name.
        sleep: Sleep function used for retry backoff (tests pass a fast one).
        recall: Add the ``search_history`` / ``read_history`` tools over the thread's
            full log and set ``ContextPolicy(recall=True)`` (truncation markers and
            summaries then tell the model how to read back what left its view); see
            :mod:`~langchain_kimi_context.agent.recall_tools`.
        compact_context_tool: Add the ``compact_context`` tool: the model may ask for
            a compaction before its next step (refused while the context is small).
        mcp_servers: ``{name: langchain-mcp-adapters connection dict}`` or an
            ``MCPToolset``: their tools join ``tools``; a server that fails is skipped
            (``langchain_kimi_context.mcp.mcp_status(agent)`` says why). Needs the
            ``mcp`` extra; see ``docs/mcp.md``.
        compaction: The compaction strategy: any object satisfying the
            :class:`~langchain_kimi_context.context.compaction.Compaction` protocol
            (e.g. ``TruncateHead()``, ``CompositeCompaction([ClearToolResults(),
            LLMCompaction(model)])`` or your own). It runs for the trigger, at the end of
            a turn and in overflow recovery. ``None``: the default pipeline (structural
            strategies, then a structured summary by ``model``).
        stages: The pipeline stages, one graph node each, in order (default:
            :data:`~langchain_kimi_context.context.pipeline.PIPELINE_STAGES`, which
            ``prepare_context`` runs too).

    Returns:
        The compiled graph.

    Raises:
        KimiConfigurationError: Invalid model, tools, settings or stage names.

    Example:
        >>> import tempfile, os
        >>> from langchain_kimi_context import KimiChatModel
        >>> model = KimiChatModel(model="kimi-k2.6", base_url=base_url, api_key=api_key)
        >>> db = os.path.join(tempfile.mkdtemp(), "kimi.sqlite")
        >>> agent = create_kimi_agent(model, db_path=db)
        >>> [n for n in agent.get_graph().nodes if not n.startswith("__")][:2]
        ['preflight', 'sanitize']
        >>> out = agent.invoke({"messages": [("user", "@say hi")]},
        ...                    {"configurable": {"thread_id": "t1"}})
        >>> out["messages"][-1].content
        'hi'

        Any compaction strategy (here the head is dropped instead of summarised; a
        class with ``name``, ``compact`` and ``acompact`` is enough):

        >>> from langchain_kimi_context.context.compaction import TruncateHead
        >>> agent = create_kimi_agent(model, checkpointer=False, compaction=TruncateHead())
        >>> agent_runtime(agent).compaction_service.strategy.name
        'truncate_head'
    """
    chat_model = _resolve_model(model)
    nodes_before_call = pipeline_nodes(stages)
    settings = resolve_settings(settings, owner="create_kimi_agent")
    policy = as_context_policy(policy, owner="create_kimi_agent")
    if recall or compact_context_tool:
        tools, policy = with_recall(
            tools,
            policy,
            recall=recall,
            compact_tool=compact_context_tool,
            model=chat_model,
            token_counter=token_counter,
        )
    if mcp_servers is not None:  # rebuilt from the configuration on every build
        from langchain_kimi_context.mcp.agent import bind_toolset, with_mcp_tools

        mcp, tools, settings = with_mcp_tools(
            mcp_servers, tools, model=chat_model, policy=policy, settings=settings
        )
    runner = ToolRunner(
        tools,
        timeout_s=settings.tool_timeout_s,
        timeouts=settings.tool_timeouts,
        warn_at=settings.repeat_warn_at,
        stop_at=settings.repeat_stop_at,
    )
    if mcp_servers is not None:
        bind_toolset(runner, mcp)
    tool_list = list(runner.tools.values())
    bound: Any = chat_model.bind_tools(tool_list) if tool_list else chat_model
    runtime = AgentRuntime(
        model=chat_model,
        bound_model=bound,
        runner=runner,
        policy=policy,
        settings=settings,
        token_counter=token_counter or default_token_counter(),
        tool_schemas=[convert_to_openai_tool(t) for t in tool_list],
        sleep=sleep,
        system_prompt=system_prompt,
        compaction=compaction,
        stages=tuple(stages),
    )

    graph = StateGraph(_GraphState, input_schema=KimiAgentInput, output_schema=KimiAgentState)
    # nodes read the state as a plain mapping (typed loosely for LangGraph's generics)
    preflight = compact_on_request(runtime.preflight) if compact_context_tool else None
    nodes: dict[str, Any] = {"preflight": preflight or runtime.preflight}
    for stage in runtime.stages:  # one node per pipeline stage, in the pipeline's order
        nodes[stage.name] = runtime.make_stage_node(stage)
    # the tools node has both paths: ainvoke awaits async tools on the caller's loop
    tools_node = RunnableCallable(runtime.tools, runtime.atools, name="tools")
    nodes.update(call_model=runtime.call_model, tools=tools_node, compact=runtime.compact)
    for node_name, fn in nodes.items():
        graph.add_node(node_name, fn)

    graph.add_edge(START, "preflight")
    graph.add_conditional_edges(
        "preflight", runtime.route_after_preflight, ["compact", nodes_before_call[1]]
    )
    for a, b in zip(nodes_before_call[1:], (*nodes_before_call[2:], "call_model"), strict=True):
        graph.add_edge(a, b)
    graph.add_conditional_edges(
        "call_model", runtime.route_after_model, ["call_model", "tools", "compact"]
    )
    graph.add_conditional_edges("tools", runtime.route_after_tools, ["preflight", "compact"])
    graph.add_conditional_edges("compact", runtime.route_after_compact, ["preflight", END])

    saver = resolve_checkpointer(checkpointer, db_path)
    compiled = graph.compile(checkpointer=saver, store=store, name=name)
    # One step = the pipeline nodes + call_model + tools; leave room for compactions.
    limit = settings.max_steps_per_turn * (len(nodes_before_call) + 3) + 50
    if saver is None:  # durability means nothing without a checkpointer (and breaks "sync")
        built = compiled.with_config(recursion_limit=limit)
    else:
        agent = _KimiAgentGraph(
            kimi_guard=thread_guard(saver),
            kimi_busy=(settings.multitask_strategy, settings.busy_timeout_s),
            **{k: v for k, v in compiled.__dict__.items() if k != "__orig_class__"},
        )
        built = agent.with_config(
            recursion_limit=limit, configurable={CONFIG_KEY_DURABILITY: settings.durability}
        )
    _RUNTIMES[built] = runtime
    return built


def agent_runtime(agent: Any) -> AgentRuntime:
    """Return the runtime (model, policy, pipeline, tools) behind an agent graph.

    Args:
        agent: A graph returned by :func:`create_kimi_agent`.

    Returns:
        Its :class:`~langchain_kimi_context.agent.nodes.AgentRuntime`.

    Raises:
        KimiConfigurationError: ``agent`` was not built by :func:`create_kimi_agent`.
    """
    try:
        runtime = _RUNTIMES.get(agent)
    except TypeError:  # unhashable: certainly not one of ours
        runtime = None
    if runtime is None:
        msg = (
            f"{type(agent).__name__} was not built by create_kimi_agent(...): only its "
            "graphs have an agent runtime."
        )
        raise KimiConfigurationError(msg)
    return runtime
