"""Progress you can see: one call reports a fact as a log line AND a LangGraph custom event.

Contract: :func:`report` logs ``message`` on the caller's module logger (INFO for
compactions, retries, window learning and snapshots, with the numbers; DEBUG for stage
reports) and, inside a LangGraph run, also writes ``{"event": name, **fields}`` to the
run's custom stream (``stream_mode="custom"``). Outside a run it only logs.

Events (the ``event`` key), in the order they can happen within one step:

* ``compaction_start`` (``reason``, ``phase``) and ``compaction_end`` (``applied``,
  ``strategy``, ``tokens_before``, ``tokens_after``, ``model_calls``, ``rejected``).
* ``retry`` (``attempt``, ``error_type``, ``message``, ``wait_s``): a model call failed
  and is retried after ``wait_s`` seconds.
* ``window_learned`` (``model``, ``window``): the server's overflow error named the
  real context window; every face uses it from now on.
* ``overflow_recovery`` (``steps``): what the recovery chain did after an overflow.
* ``snapshot`` (``thread_id``, ``checkpoint_id``, ``reason``): a recoverable state was
  recorded (before a compaction).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["report"]


def report(
    logger: logging.Logger,
    event: str,
    message: str,
    /,
    *args: Any,
    level: int = logging.INFO,
    **fields: Any,
) -> None:
    """Log a progress fact and, inside a LangGraph run, emit it as a custom stream event.

    Args:
        logger: The reporting module's logger.
        event: The event name (``compaction_end``, ``retry``...).
        message: The ``%``-style log message.
        *args: Its arguments.
        level: The log level.
        **fields: The event's JSON-serialisable fields.
    """
    logger.log(level, message, *args)
    try:
        from langgraph.config import get_stream_writer

        writer = get_stream_writer()
    except (RuntimeError, KeyError):  # not inside a graph run
        return
    writer({"event": event, **fields})
