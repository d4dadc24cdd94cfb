"""Reading Kimi replies: usage, reasoning, provider tag, reply checks, stream bookkeeping.

Contract:

- **Usage** (:func:`usage_of`): a response's or chunk's ``usage``, top level, else inside
  the last choice (Moonshot sends it there on streams); converted with
  :func:`langchain_kimi_context.usage.usage_metadata` (the one usage rule).
- **Reply fields** (:func:`read_reply`, :func:`read_chunk`): ``reasoning_content`` kept on
  every reply, also when empty (it is replayed), ``model_provider="moonshot"``, usage as
  ``usage_metadata`` and ``token_usage``.
- **Standard blocks**: replies tagged ``moonshot`` are translated with a ``reasoning``
  block first, so ``AIMessage.content_blocks`` and ``output_version="v1"`` carry it
  (registered with LangChain on import).
- **Checks** (:func:`check_reply`, :func:`check_not_empty`,
  :func:`check_output_limit`): an empty reply raises
  :class:`~langchain_kimi_context.errors.KimiEmptyResponseError`; a reply cut by
  ``max_tokens`` with no answer raises
  :class:`~langchain_kimi_context.errors.KimiOutputLimitError`, a cut answer is logged.
- **Streams** (:class:`StreamState`, :func:`track_chunk`, :func:`end_of_stream`): usage
  is counted once and recorded with the cache strategy once, the same checks run when the
  stream ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages import content as types
from langchain_core.messages.block_translators import openai as openai_translator
from langchain_core.messages.block_translators import register_translator
from langchain_core.outputs import ChatGenerationChunk, ChatResult

from langchain_kimi_context.errors import KimiEmptyResponseError, KimiOutputLimitError
from langchain_kimi_context.usage import usage_metadata

__all__ = [
    "PROVIDER",
    "StreamState",
    "check_not_empty",
    "check_output_limit",
    "check_reply",
    "end_of_stream",
    "read_chunk",
    "read_reply",
    "track_chunk",
    "usage_of",
]

PROVIDER: Final = "moonshot"
"""``response_metadata["model_provider"]`` of replies (and ``ls_provider``)."""

_LOGGER = logging.getLogger("langchain_kimi_context.chat_models")

Record = Callable[[Mapping[str, Any] | None], dict[str, Any]]
"""The cache strategy's ``record`` for one call: usage (or ``None``) -> metadata."""


def _reasoning_block(message: AIMessage, *, index: str | None = None) -> list[types.ContentBlock]:
    text = message.additional_kwargs.get("reasoning_content")
    if not isinstance(text, str) or not text:
        return []
    block: types.ReasoningContentBlock = {"type": "reasoning", "reasoning": text}
    if index is not None:
        block["index"] = index
    return [block]


def _translate_content(message: AIMessage) -> list[types.ContentBlock]:
    """Standard content blocks of a Kimi reply: reasoning first, then OpenAI's blocks."""
    blocks = openai_translator.translate_content(message)
    return [*_reasoning_block(message), *blocks]


def _translate_content_chunk(chunk: AIMessageChunk) -> list[types.ContentBlock]:
    """Chunk variant; the reasoning block has its own index so streamed parts merge."""
    blocks = openai_translator.translate_content_chunk(chunk)
    return [*_reasoning_block(chunk, index="lc_kimi_reasoning"), *blocks]


# LangChain's OpenAI translator ignores ``reasoning_content``; Kimi replies are tagged
# ``model_provider="moonshot"`` and translated here so ``AIMessage.content_blocks`` (and
# ``output_version="v1"``) carry a standard ``reasoning`` block.
register_translator(PROVIDER, _translate_content, _translate_content_chunk)


# --------------------------------------------------------------------------- reply fields


def usage_of(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``usage`` of a response or chunk: top level, else inside the last choice."""
    usage = body.get("usage")
    if not usage:
        choices = body.get("choices") or []
        usage = choices[-1].get("usage") if choices and isinstance(choices[-1], Mapping) else None
    return {k: v for k, v in usage.items() if v is not None} if usage else None


def read_reply(result: ChatResult, body: Mapping[str, Any]) -> ChatResult:
    """Add Kimi's fields of response ``body`` to the base class's ``result`` (in place).

    Args:
        result: What ``BaseChatOpenAI._create_chat_result`` built.
        body: The response as a dict.

    Returns:
        ``result``.
    """
    usage = usage_of(body)
    for generation, choice in zip(result.generations, body.get("choices") or [], strict=False):
        message = generation.message
        message.response_metadata["model_provider"] = PROVIDER
        reasoning = (choice.get("message") or {}).get("reasoning_content")
        if isinstance(reasoning, str):  # empty reasoning is kept: it is replayed
            message.additional_kwargs["reasoning_content"] = reasoning
        if usage and isinstance(message, AIMessage):
            message.usage_metadata = usage_metadata(usage)
    if result.llm_output is not None:
        result.llm_output["model_provider"] = PROVIDER
        if usage:
            result.llm_output["token_usage"] = dict(usage)
    return result


def read_chunk(generation: ChatGenerationChunk, chunk: Mapping[str, Any]) -> ChatGenerationChunk:
    """Add Kimi's fields of stream ``chunk`` to the base class's ``generation`` (in place).

    Args:
        generation: What ``BaseChatOpenAI._convert_chunk_to_generation_chunk`` built,
            holding an ``AIMessageChunk``.
        chunk: The raw chunk dict.

    Returns:
        ``generation``.
    """
    message = cast(AIMessageChunk, generation.message)
    if message.response_metadata.get("model_provider"):
        message.response_metadata["model_provider"] = PROVIDER
    choices = chunk.get("choices") or []
    if choices:
        reasoning = (choices[0].get("delta") or {}).get("reasoning_content")
        if isinstance(reasoning, str):  # empty reasoning is kept: it is replayed
            message.additional_kwargs["reasoning_content"] = reasoning
    usage = usage_of(chunk)
    if usage:
        message.usage_metadata = usage_metadata(usage)
        generation.generation_info = {
            **(generation.generation_info or {}),
            "token_usage": dict(usage),
        }
    return generation


# --------------------------------------------------------------------------- checks


def check_output_limit(
    finish: Any, answered: bool, reasoning: Any, payload: Mapping[str, Any]
) -> None:
    """Report a reply cut by ``max_tokens`` (``finish_reason="length"``).

    A cut with no answer at all (the reasoning used the whole budget) raises
    :class:`~langchain_kimi_context.errors.KimiOutputLimitError`; a cut answer is
    returned as is (``finish_reason`` says so) with a warning in the log.
    """
    if finish != "length":
        return
    budget = payload.get("max_tokens") or payload.get("max_completion_tokens")
    model = str(payload.get("model") or "")
    if not answered:
        msg = (
            f"{model} spent the whole output budget (max_tokens={budget}) "
            f"{'reasoning' if reasoning else 'without answering'} and returned no answer "
            "(finish_reason='length'). Thinking models count reasoning as output: raise "
            "max_tokens (e.g. KimiChatModel(max_tokens=32768)) or lower reasoning_effort."
        )
        raise KimiOutputLimitError(
            msg, model=model, max_tokens=budget, reasoning=str(reasoning or "")
        )
    _LOGGER.warning(
        "%s reply was cut at max_tokens=%s (finish_reason='length'); raise max_tokens "
        "for complete answers.",
        model,
        budget,
    )


def check_not_empty(message: BaseMessage) -> None:
    """Raise :class:`~langchain_kimi_context.errors.KimiEmptyResponseError` for an empty reply.

    A reply is empty without text, tool calls (or their chunks) and reasoning.
    """
    if not isinstance(message, AIMessage):
        return
    has_text = bool(message.text.strip()) if message.content else False
    has_tools = bool(message.tool_calls or message.invalid_tool_calls)
    has_chunks = isinstance(message, AIMessageChunk) and bool(message.tool_call_chunks)
    has_reasoning = bool(message.additional_kwargs.get("reasoning_content"))
    if not (has_text or has_tools or has_chunks or has_reasoning):
        finish = message.response_metadata.get("finish_reason")
        msg = (
            f"Kimi returned an empty reply (no content, no tool calls, no reasoning; "
            f"finish_reason={finish!r}). The call may be retried."
        )
        raise KimiEmptyResponseError(msg)


def check_reply(generation: Any, payload: Mapping[str, Any]) -> None:
    """Run the output-limit and empty-reply checks on one generation of an invoke."""
    message = generation.message
    if isinstance(message, AIMessage):
        finish = (generation.generation_info or {}).get("finish_reason")
        check_output_limit(
            finish or message.response_metadata.get("finish_reason"),
            bool(message.text.strip() or message.tool_calls or message.invalid_tool_calls),
            message.additional_kwargs.get("reasoning_content"),
            payload,
        )
    check_not_empty(message)


# --------------------------------------------------------------------------- streams


@dataclass
class StreamState:
    """What a stream has shown so far (for the checks at its end)."""

    recorded: bool = False
    """Usage was recorded with the cache strategy (a second usage chunk is dropped)."""
    content: bool = False
    """Some answer, tool call or reasoning arrived."""
    answered: bool = False
    """Some answer text or tool call arrived."""
    reasoning: bool = False
    """Some reasoning arrived."""
    finish_reason: Any = None
    """The last ``finish_reason`` seen."""


def track_chunk(
    chunk: ChatGenerationChunk, state: StreamState, record: Record
) -> ChatGenerationChunk:
    """Dedupe usage, remember content, attach ``record`` output to the usage chunk."""
    message = chunk.message
    if isinstance(message, AIMessageChunk):
        if message.usage_metadata is not None:
            info = dict(chunk.generation_info or {})
            usage = info.get("token_usage")
            if state.recorded:
                message.usage_metadata = None  # usage sent twice: count it once
                info.pop("token_usage", None)
            else:
                state.recorded = True
                info.update(record(usage))
            chunk.generation_info = info or None
        if message.text.strip() or message.tool_call_chunks:
            state.answered = True
        if state.answered or message.additional_kwargs.get("reasoning_content"):
            state.content = True
        if message.additional_kwargs.get("reasoning_content"):
            state.reasoning = True
        if chunk.generation_info and chunk.generation_info.get("finish_reason"):
            state.finish_reason = chunk.generation_info["finish_reason"]
    return chunk


def end_of_stream(
    state: StreamState, payload: Mapping[str, Any], record: Record
) -> ChatGenerationChunk | None:
    """Check the finished stream; return a last chunk with ``record``'s metadata if needed.

    Raises:
        KimiOutputLimitError: If the budget ran out before any answer.
        KimiEmptyResponseError: If nothing at all was streamed.
    """
    check_output_limit(
        state.finish_reason,
        state.answered,
        "(streamed)" if state.reasoning else "",
        payload,
    )
    if not state.content:
        msg = (
            f"Kimi streamed an empty reply (no content, no tool calls, no reasoning; "
            f"finish_reason={state.finish_reason!r}). The call may be retried."
        )
        raise KimiEmptyResponseError(msg)
    if state.recorded:
        return None
    extra = record(None)
    return (
        ChatGenerationChunk(message=AIMessageChunk(content=""), generation_info=extra)
        if extra
        else None
    )
