"""Errors and retries of ``KimiChatModel``: typed errors, the retry decision, sleeps.

Contract:

- :func:`translate_error`: every API failure becomes a typed package error
  (:func:`langchain_kimi_context.errors.from_openai_error`); a connection that never
  reached the server names the endpoint (:class:`~langchain_kimi_context.errors.
  KimiConnectionError`); the API key never appears in an error's text.
- :func:`retry_delay`: the model's retry decision. Only errors for which
  :func:`~langchain_kimi_context.errors.is_retryable_error` is true are retried, at most
  ``max_retries`` times; the server's retry-after hint is waited out up to ``max_wait``
  seconds (a longer hint gives up at once), otherwise
  :func:`langchain_kimi_context.backoff.backoff_delay` (0.5 s doubling to 8 s, +-25%).
- :func:`raise_typed`: raise the typed error in place of the original one.
- The retry loops are :func:`langchain_kimi_context.backoff.run_with_retries` and
  :func:`~langchain_kimi_context.backoff.arun_with_retries`; they sleep through
  :data:`_sleep` / :data:`_async_sleep`, so tests can observe the waits without
  patching the process-wide ``time.sleep`` / ``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn

import openai

from langchain_kimi_context.backoff import backoff_delay, retry_after_of
from langchain_kimi_context.errors import (
    KimiConnectionError,
    from_openai_error,
    is_retryable_error,
    is_unreachable_error,
)

__all__ = ["raise_typed", "retry_delay", "translate_error"]

_sleep: Callable[[float], None] = time.sleep
_async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

_REDACTED = "**********"


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, _REDACTED) if secret and secret in text else text


def translate_error(
    exc: BaseException, *, base_url: str | None, secret: str | None
) -> BaseException:
    """Return the typed package error for ``exc`` (``exc`` itself when there is none).

    Args:
        exc: The error the OpenAI client (or the model's checks) raised.
        base_url: The model's endpoint, named in connection errors.
        secret: The API key, removed from the error's text.

    Returns:
        The error to raise or retry.
    """
    err = from_openai_error(exc) if isinstance(exc, openai.APIStatusError) else exc
    if (
        isinstance(exc, openai.APIConnectionError)
        and not isinstance(exc, openai.APITimeoutError | KimiConnectionError)
        and is_unreachable_error(exc)
    ):  # refused, DNS: never reached; name the endpoint
        root: BaseException = exc
        while (inner := root.__cause__ or root.__context__) is not None:
            root = inner  # the socket-level error (refused, name not resolved...)
        url = str(base_url or exc.request.url)
        err = KimiConnectionError(url, str(root) or exc.message, request=exc.request)
    if secret and secret in str(err):
        err.args = tuple(_redact(str(a), secret) for a in err.args)
        if hasattr(err, "message"):
            err.message = _redact(str(err.message), secret)
    return err


def retry_delay(
    err: BaseException, attempt: int, *, max_retries: int, max_wait: float
) -> float | None:
    """Seconds to wait before retrying ``err``, or ``None`` to give up.

    Args:
        err: The typed error.
        attempt: Retries done so far (0 after the first failure).
        max_retries: The model's ``max_retries``.
        max_wait: The longest retry-after hint waited out.

    Returns:
        The wait, or ``None``.
    """
    if attempt >= max_retries or not is_retryable_error(err):
        return None
    hint = retry_after_of(err)
    if hint is not None:
        return hint if hint <= max_wait else None
    return backoff_delay(attempt + 1, initial=0.5, max_delay=8.0, jitter=0.25)


def raise_typed(exc: BaseException, err: BaseException, secret: str | None) -> NoReturn:
    """Raise ``err`` (the typed form of ``exc``); chained unless ``exc`` shows the key."""
    if err is exc:
        raise exc
    if secret and secret in str(exc):
        raise err from None
    raise err from exc
