"""Retry policy of the agent's model calls."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest

from langchain_kimi_context.agent.retry import (
    RetryExhaustedError,
    RetrySettings,
    call_with_retry,
)
from langchain_kimi_context.errors import (
    KimiConfigurationError,
    KimiContextOverflowError,
    KimiEmptyResponseError,
    from_openai_error,
)


def _http_error(status: int, etype: str, message: str, headers: dict[str, str] | None = None):
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request)
    body = {"error": {"type": etype, "message": message}}
    cls = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        429: openai.RateLimitError,
    }.get(status, openai.InternalServerError)
    return from_openai_error(cls(message, response=response, body=body))


def _failing(errors: list[BaseException], result: str = "ok") -> Callable[[], str]:
    queue = list(errors)

    def fn() -> str:
        if queue:
            raise queue.pop(0)
        return result

    return fn


def test_backoff_is_exponential_with_bounded_jitter() -> None:
    s = RetrySettings(seed=7)
    waits = [s.backoff(n) for n in (1, 2, 3)]
    for wait, base in zip(waits, (1, 2, 4), strict=True):
        assert base * 0.75 <= wait <= base * 1.25
    assert len({round(w / b, 6) for w, b in zip(waits, (1, 2, 4), strict=True)}) > 1  # jittered


def test_retryable_errors_are_retried_with_waits_then_succeed() -> None:
    slept: list[float] = []
    errors = [
        _http_error(429, "engine_overloaded_error", "overloaded"),
        _http_error(500, "server_error", "boom"),
    ]
    result, failures = call_with_retry(
        _failing(errors), RetrySettings(jitter=0), sleep=slept.append
    )
    assert result == "ok"
    assert slept == [1.0, 2.0]
    assert [f.error_type for f in failures] == ["KimiRateLimitError", "KimiServerError"]


def test_retry_after_hint_is_honoured() -> None:
    slept: list[float] = []
    err = _http_error(429, "rate_limit_reached_error", "slow down", {"retry-after": "3"})
    call_with_retry(_failing([err]), RetrySettings(jitter=0), sleep=slept.append)
    assert slept == [3.0]


@pytest.mark.parametrize(
    "error",
    [
        _http_error(
            400,
            "invalid_request_error",
            "Your request exceeded model token limit: 262144 (requested: 300000)",
        ),
        _http_error(400, "invalid_request_error", "bad role"),
        _http_error(401, "invalid_authentication_error", "bad key"),
        _http_error(429, "exceeded_current_quota_error", "Your account is suspended"),
        KimiContextOverflowError("too long"),
    ],
    ids=["overflow", "invalid", "auth", "quota", "local-overflow"],
)
def test_non_retryable_errors_are_raised_at_once(error: BaseException) -> None:
    slept: list[float] = []
    calls = 0

    def fn() -> str:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)):
        call_with_retry(fn, RetrySettings(), sleep=slept.append)
    assert calls == 1
    assert slept == []


def test_attempts_are_capped_and_exhaustion_is_typed() -> None:
    slept: list[float] = []
    errors = [KimiEmptyResponseError("empty")] * 5
    with pytest.raises(RetryExhaustedError) as info:
        call_with_retry(_failing(errors), RetrySettings(jitter=0), sleep=slept.append)
    assert len(info.value.attempts) == 3
    assert slept == [1.0, 2.0]
    assert isinstance(info.value.last_error, KimiEmptyResponseError)


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(KimiConfigurationError, match="max_attempts"):
        RetrySettings(max_attempts=0)
    with pytest.raises(KimiConfigurationError, match="jitter"):
        RetrySettings(jitter=2)
