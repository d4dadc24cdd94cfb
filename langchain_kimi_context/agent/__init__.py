"""The LangGraph agent for long Kimi sessions: :func:`create_kimi_agent`."""

from langchain_kimi_context.agent.graph import agent_runtime, create_kimi_agent
from langchain_kimi_context.agent.retry import RetryExhaustedError, RetrySettings, call_with_retry
from langchain_kimi_context.agent.state import (
    AgentSettings,
    KimiAgentInput,
    KimiAgentState,
    KimiMaxStepsExceededError,
)
from langchain_kimi_context.agent.storage import (
    DB_ENV_VAR,
    KimiSqliteSaver,
    default_checkpoint_path,
    fold_messages,
    open_sqlite_checkpointer,
)
from langchain_kimi_context.agent.tools import ToolRunner

__all__ = [
    "DB_ENV_VAR",
    "AgentSettings",
    "KimiAgentInput",
    "KimiAgentState",
    "KimiMaxStepsExceededError",
    "KimiSqliteSaver",
    "RetryExhaustedError",
    "RetrySettings",
    "ToolRunner",
    "agent_runtime",
    "call_with_retry",
    "create_kimi_agent",
    "default_checkpoint_path",
    "fold_messages",
    "open_sqlite_checkpointer",
]
