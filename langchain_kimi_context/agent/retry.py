"""Retry policy for model calls: exponential backoff with jitter, typed decisions.

The delay formula, the ``Retry-After`` reading and the sync driver are
:mod:`langchain_kimi_context.backoff`'s. The retry decision is
:func:`langchain_kimi_context.errors.is_retryable_error` and nothing else: overload/rate
limits, 5xx, timeouts, connection errors and empty replies are retried; context overflow,
invalid requests, authentication, permission, quota and content-filter errors never are.
(LangGraph's default ``RetryPolicy.retry_on`` retries overflow errors, which only burns
money: the same request overflows again.) A ``Retry-After`` hint from the server (header
or message) is honoured when it asks for a longer wait than the backoff.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_kimi_context.backoff import backoff_delay, retry_after_of, run_with_retries
from langchain_kimi_context.errors import KimiConfigurationError, is_retryable_error

__all__ = [
    "AttemptRecord",
    "RetryExhaustedError",
    "RetrySettings",
    "call_with_retry",
    "retry_after_of",
]

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class RetrySettings:
    """How a failed model call is retried within one step.

    Attributes:
        max_attempts: Attempts per step, the first included (default 3).
        initial_interval: Wait before the first retry, seconds (default 1 s, then
            2 s, then 4 s).
        backoff_factor: Multiplier between consecutive waits.
        max_interval: Upper bound of one backoff wait.
        jitter: Random spread as a fraction of the wait (``0.25`` = +-25%).
        respect_retry_after: Wait at least what the server's ``Retry-After`` asks.
        max_retry_after: Never wait longer than this for a ``Retry-After`` hint.
        seed: Seed of the jitter generator (``None`` = nondeterministic).

    Example:
        >>> s = RetrySettings(jitter=0)
        >>> [s.backoff(n) for n in (1, 2, 3)]
        [1.0, 2.0, 4.0]
        >>> RetrySettings(initial_interval=0.01).max_attempts
        3
    """

    max_attempts: int = 3
    initial_interval: float = 1.0
    backoff_factor: float = 2.0
    max_interval: float = 30.0
    jitter: float = 0.25
    respect_retry_after: bool = True
    max_retry_after: float = 60.0
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = []
        if self.max_attempts < 1:
            problems.append(f"max_attempts must be >= 1 (got {self.max_attempts})")
        if self.initial_interval < 0 or self.max_interval < 0 or self.max_retry_after < 0:
            problems.append("intervals must be >= 0")
        if self.backoff_factor < 1:
            problems.append(f"backoff_factor must be >= 1 (got {self.backoff_factor})")
        if not 0 <= self.jitter <= 1:
            problems.append(f"jitter must be in [0, 1] (got {self.jitter})")
        if problems:
            raise KimiConfigurationError("Invalid RetrySettings: " + "; ".join(problems))
        object.__setattr__(self, "_rng", random.Random(self.seed))  # noqa: S311

    def backoff(self, retry_number: int) -> float:
        """Backoff before retry ``retry_number`` (1-based), jitter included.

        Args:
            retry_number: 1 for the wait after the first failure, 2 after the second...

        Returns:
            Seconds to wait.
        """
        return backoff_delay(
            retry_number,
            initial=self.initial_interval,
            factor=self.backoff_factor,
            max_delay=self.max_interval,
            jitter=self.jitter,
            rng=self._rng,
        )

    def delay_for(self, retry_number: int, error: BaseException) -> float:
        """Wait before retrying after ``error``: the backoff, or the server's hint if longer.

        Args:
            retry_number: 1-based retry number.
            error: The error just raised.

        Returns:
            Seconds to wait.
        """
        delay = self.backoff(retry_number)
        hint = retry_after_of(error)
        if self.respect_retry_after and hint is not None:
            delay = max(delay, min(hint, self.max_retry_after))
        return delay


@dataclass(frozen=True)
class AttemptRecord:
    """One failed attempt: what went wrong and how long the agent waited after it.

    Attributes:
        error_type: Class name of the error.
        message: The error text (truncated to 300 characters).
        retryable: The :func:`is_retryable_error` decision.
        waited_s: Seconds slept before the next attempt (0 if none followed).
    """

    error_type: str
    message: str
    retryable: bool
    waited_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (for state reports).

        Returns:
            The fields as a dict.
        """
        return {
            "error_type": self.error_type,
            "message": self.message,
            "retryable": self.retryable,
            "waited_s": round(self.waited_s, 3),
        }


class RetryExhaustedError(Exception):
    """Every attempt of a step failed with retryable errors.

    Attributes:
        attempts: The failed attempts, oldest first.
        last_error: The final error.
    """

    def __init__(self, attempts: list[AttemptRecord], last_error: BaseException) -> None:
        self.attempts = attempts
        self.last_error = last_error
        kinds = ", ".join(a.error_type for a in attempts)
        super().__init__(
            f"Model call failed after {len(attempts)} attempt(s) with retryable errors "
            f"({kinds}); last: {last_error}"
        )


def _describe(error: BaseException) -> AttemptRecord:
    return AttemptRecord(
        error_type=type(error).__name__,
        message=str(error)[:300],
        retryable=is_retryable_error(error),
    )


def call_with_retry(
    fn: Callable[[], T],
    settings: RetrySettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    is_retryable: Callable[[BaseException], bool] = is_retryable_error,
    on_retry: Callable[[int, AttemptRecord], None] | None = None,
) -> tuple[T, list[AttemptRecord]]:
    """Call ``fn`` with up to ``settings.max_attempts`` attempts.

    Args:
        fn: The call (no arguments).
        settings: Backoff and attempt limits.
        sleep: The sleep function (tests may pass a recorder).
        is_retryable: The retry decision (default: the package's classification).
        on_retry: Called with the failed attempt's number and record (its ``waited_s``
            is the coming wait) before each retry; the agent reports it as progress.

    Returns:
        ``(result, failed_attempts)``: the failures that preceded the success.

    Raises:
        RetryExhaustedError: All attempts failed with retryable errors.
        Exception: The first non-retryable error, unchanged (overflow, auth, ...).
    """
    failures: list[AttemptRecord] = []

    def decide(exc: Exception, attempt: int) -> float | None:
        record = _describe(exc)
        if not is_retryable(exc):
            return None
        if attempt >= settings.max_attempts:
            failures.append(record)
            raise RetryExhaustedError(failures, exc) from exc
        delay = settings.delay_for(attempt, exc)
        failures.append(AttemptRecord(record.error_type, record.message, record.retryable, delay))
        if on_retry is not None:
            on_retry(attempt, failures[-1])
        return delay

    return run_with_retries(fn, decide, sleep=sleep), failures
