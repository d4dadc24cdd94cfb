"""The context pipeline: pure, typed, idempotent stages.

Each stage is ``(messages, policy) -> (messages, report)``.

No I/O happens in this package; the orchestration layer (graph nodes, memory API,
middleware) calls these functions.
"""

from langchain_kimi_context.context.policy import ContextPolicy

__all__ = ["ContextPolicy"]
