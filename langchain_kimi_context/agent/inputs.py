"""What an agent run accepts, checked before anything is stored or sent.

Contract: :func:`check_agent_input` takes what ``invoke``/``stream`` got and returns the
input to run with, or raises :class:`~langchain_kimi_context.errors.KimiInputError`
saying what was wrong and what to pass instead; nothing is written for a refused input.

Accepted: ``None`` (resume the thread from its last checkpoint), a LangGraph
``Command``, or ``{"messages": [...]}`` with at least one message-like entry (LangChain
messages, ``("role", "text")`` tuples, OpenAI-style dicts, strings). Message text that
UTF-8 cannot encode (lone surrogates) is repaired with U+FFFD before it is stored (the
checkpoint serialisers would otherwise turn it into a silent ``?``), and reported as a
WARNING log line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from langchain_kimi_context.context.sanitize import replace_unencodable_message
from langchain_kimi_context.errors import KimiInputError

__all__ = ["check_agent_input", "clean_messages", "thread_config"]

logger = logging.getLogger(__name__)


def thread_config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    """Return the run config that addresses a thread (at one checkpoint, if given).

    The root checkpoint namespace (``""``) is named explicitly, as a saver's
    ``get_tuple``/``put`` needs it.

    Args:
        thread_id: The thread (session) id.
        checkpoint_id: A checkpoint of that thread; ``None`` means its latest one.

    Returns:
        ``{"configurable": {"thread_id": ..., "checkpoint_ns": "", ...}}``.
    """
    conf: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


_HOW = (
    "Pass {'messages': [...]}, e.g. agent.invoke({'messages': [('user', 'hello')]}, "
    "{'configurable': {'thread_id': 'session-1'}}), or None to resume the thread."
)


def clean_messages(messages: Sequence[BaseMessage], *, where: str) -> list[BaseMessage]:
    r"""Repair unencodable text (U+FFFD) in messages about to be stored, and report it.

    Args:
        messages: Messages about to be stored.
        where: What is storing them (for the log line).

    Returns:
        The messages, repaired copies where needed.
    """
    out = []
    for index, message in enumerate(messages):
        fixed, replaced = replace_unencodable_message(message)
        if replaced:
            logger.warning(
                "%s: replaced %d unencodable character(s) (lone UTF-16 surrogates) with "
                "U+FFFD in message %s",
                where,
                replaced,
                message.id or f"#{index}",
            )
        out.append(fixed)
    return out


def check_agent_input(value: Any) -> Any:
    """Validate an agent run's input; return the input to run with.

    Args:
        value: What ``invoke``/``stream`` received.

    Returns:
        ``value`` itself, or ``{"messages": [...]}`` with converted, repaired messages.

    Raises:
        KimiInputError: The shape is wrong (the message says what to pass).
    """
    if value is None or isinstance(value, Command):
        return value
    if not isinstance(value, Mapping):
        raise KimiInputError(
            f"The agent's input must be a dict, got a {type(value).__name__}. {_HOW}"
        )
    extra = sorted(str(k) for k in value if k != "messages")
    if extra or "messages" not in value:
        raise KimiInputError(
            f"The agent's input must be {{'messages': [...]}}, got the key(s) {extra}. {_HOW}"
        )
    raw = value["messages"]
    if isinstance(raw, str | BaseMessage) or not isinstance(raw, Sequence):
        raise KimiInputError(
            f"The agent's input 'messages' must be a list of messages, got a "
            f"{type(raw).__name__}. {_HOW}"
        )
    if not raw:
        raise KimiInputError(f"The agent's input has no messages. {_HOW}")
    messages: list[BaseMessage] = []
    for index, item in enumerate(raw):
        try:
            messages.extend(convert_to_messages([item]))
        except (NotImplementedError, ValueError, TypeError, KeyError) as exc:
            raise KimiInputError(
                f"The agent's input messages[{index}] is not a message ({type(item).__name__} "
                f"{item!r:.60}): {str(exc).splitlines()[0]}. {_HOW}"
            ) from exc
    return {**value, "messages": clean_messages(messages, where="agent input")}
