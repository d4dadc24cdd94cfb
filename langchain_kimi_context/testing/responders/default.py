"""The emulator's default responder: compaction or scripted agent.

Contract: :class:`DefaultResponder` sends a compaction request to its compaction
responder and anything else to its agent responder.
"""

from __future__ import annotations

from collections.abc import Callable

from langchain_kimi_context.testing.responders.compaction import (
    CompactionResponder,
    is_compaction_request,
)
from langchain_kimi_context.testing.responders.protocol import ReplySpec, ResponderRequest
from langchain_kimi_context.testing.responders.scripted import ScriptedAgentResponder


class DefaultResponder:
    """Compaction responder for compaction requests, scripted agent otherwise.

    Args:
        agent: The responder for ordinary requests.
        compaction: The responder for compaction requests.

    Example:
        >>> r = DefaultResponder()
        >>> r(ResponderRequest.from_messages([{"role": "user", "content": "@say ok"}])).content
        'ok'
    """

    def __init__(
        self,
        *,
        agent: Callable[[ResponderRequest], ReplySpec] | None = None,
        compaction: Callable[[ResponderRequest], ReplySpec] | None = None,
    ) -> None:
        self.agent = agent or ScriptedAgentResponder()
        self.compaction = compaction or CompactionResponder()

    def __call__(self, request: ResponderRequest) -> ReplySpec:
        """Dispatch ``request`` to the compaction or the agent responder.

        Args:
            request: The validated request.

        Returns:
            The reply.
        """
        if is_compaction_request(request):
            return self.compaction(request)
        return self.agent(request)
