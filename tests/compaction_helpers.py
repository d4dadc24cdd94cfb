"""Shared helpers of the compaction tests (a recording chat model, scripted sessions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from langchain_kimi_context.errors import KimiServerError
from langchain_kimi_context.testing.responders import ResponderRequest, is_compaction_request


def is_summary_request(body: Mapping[str, Any]) -> bool:
    """Whether an emulator request body is a summary call (transcript or cached-prefix form)."""
    request = ResponderRequest.from_messages(body.get("messages") or [], body.get("tools") or [])
    return is_compaction_request(request)


class RecordingModel(BaseChatModel):
    """Chat model that records every request and answers from a script."""

    replies: list[Any] = Field(default_factory=list)
    calls: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "recording"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append(list(messages))
        reply = self.replies[min(len(self.calls), len(self.replies)) - 1]
        if callable(reply):
            reply = reply(messages)
        if isinstance(reply, BaseException):
            raise reply
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])


SUMMARY = (
    "## Current Task\n- task\n## Errors & Solutions\n- none\n## Code\n- none\n"
    "## System Context\n- none\n## Design Decisions\n- none\n## TODO\n- none"
)


def server_error() -> KimiServerError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(500, request=request)
    return KimiServerError("boom", response=response, body=None)  # type: ignore[arg-type]


def conversation(turns: int, *, words: int = 60, sys: bool = True) -> list[BaseMessage]:
    log: list[BaseMessage] = [SystemMessage("You are a coding agent.", id="sys")] if sys else []
    for i in range(turns):
        log.append(HumanMessage(f"user {i}: " + "please do things " * words, id=f"h{i}"))
        log.append(AIMessage(f"assistant {i}: " + "did things " * words, id=f"a{i}"))
    return log
