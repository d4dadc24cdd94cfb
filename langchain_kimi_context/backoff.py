"""Retry rules shared by every retry loop in the package: delay, hint, drivers.

- **Which errors are retried**: :func:`langchain_kimi_context.errors.is_retryable_error`
  and nothing else (overload/rate limits, 5xx, timeouts, connection errors, empty replies;
  never overflow, invalid request, auth, quota or content filter). Re-exported here as
  :func:`is_retryable`.
- **How long to wait**: :func:`backoff_delay`, exponential with a cap and a symmetric
  jitter (the formula of LangChain's ``agents.middleware._retry.calculate_delay``, with
  1-based retry numbers and a configurable jitter fraction).
- **Server hints**: :func:`retry_after_of` reads the ``Retry-After`` seconds a typed
  Kimi error carries.
- **Drivers**: the decision (``decide(exc, retry_number) -> delay | None``) is pure; the
  sync driver :func:`run_with_retries` sleeps with a blocking sleep, the async driver
  :func:`arun_with_retries` awaits an async sleep. Callers add their own bookkeeping in
  ``decide`` (record the failure, translate the error, raise instead of giving up).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from langchain_kimi_context.errors import is_retryable_error

__all__ = [
    "arun_with_retries",
    "backoff_delay",
    "is_retryable",
    "retry_after_of",
    "run_with_retries",
]

is_retryable = is_retryable_error

T = TypeVar("T")

_RNG = random.Random()  # noqa: S311 (jitter, not security)


def backoff_delay(
    retry_number: int,
    *,
    initial: float,
    factor: float = 2.0,
    max_delay: float = float("inf"),
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """Return the wait before retry ``retry_number`` (1 = after the first failure).

    ``min(initial * factor ** (retry_number - 1), max_delay)``, then spread by
    ``+-jitter`` (a fraction of the wait), never negative.

    Args:
        retry_number: 1-based retry number.
        initial: Wait before the first retry, seconds.
        factor: Multiplier between consecutive waits.
        max_delay: Upper bound of the wait before jitter.
        jitter: Random spread as a fraction of the wait (``0.25`` = +-25%).
        rng: Random generator for the jitter (default: a process-wide one).

    Returns:
        Seconds to wait.
    """
    delay = min(initial * factor ** max(retry_number - 1, 0), max_delay)
    if jitter and delay > 0:
        delay *= 1 + (rng or _RNG).uniform(-jitter, jitter)
    return max(delay, 0.0)


def retry_after_of(error: BaseException) -> float | None:
    """Return the ``Retry-After`` seconds ``error`` carries, if any.

    Args:
        error: Any exception (typed Kimi errors expose ``retry_after``).

    Returns:
        Seconds, or ``None``.
    """
    value = getattr(error, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def run_with_retries(
    fn: Callable[[], T],
    decide: Callable[[Exception, int], float | None],
    *,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds or ``decide`` gives up (sync driver).

    Args:
        fn: The call.
        decide: ``decide(exc, retry_number)`` returns the wait before the next attempt,
            or ``None`` to give up (the error is then re-raised); it may raise instead.
        sleep: The blocking sleep (e.g. ``threading.Event.wait`` to stay cancellable).

    Returns:
        What ``fn`` returned.
    """
    retry_number = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            delay = decide(exc, retry_number)
            if delay is None:
                raise
        sleep(delay)
        retry_number += 1


async def arun_with_retries(
    fn: Callable[[], Awaitable[T]],
    decide: Callable[[Exception, int], float | None],
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """Await ``fn()`` until it succeeds or ``decide`` gives up (async driver).

    Args:
        fn: Returns the awaitable to try.
        decide: As for :func:`run_with_retries`.
        sleep: The async sleep.

    Returns:
        What ``fn()`` resolved to.
    """
    retry_number = 1
    while True:
        try:
            return await fn()
        except Exception as exc:
            delay = decide(exc, retry_number)
            if delay is None:
                raise
        await sleep(delay)
        retry_number += 1
