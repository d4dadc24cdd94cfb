"""Fault injection over real HTTP: each 429 type, 500, slow, stream cut, overflow, empty."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from langchain_kimi_context.errors import classify_moonshot_error
from langchain_kimi_context.testing import Fault, FaultInjector, KimiEmulator

K2 = "kimi-k2.6"
# These tests are about the emulator's mechanics, not thinking: thinking off.
OFF = {"thinking": {"type": "disabled"}}
# One shared client: creating an httpx.Client per call costs ~20 ms (SSL context).
HTTP = httpx.Client(timeout=30)
BODY = {**OFF, "model": K2, "messages": [{"role": "user", "content": "@reply 60"}]}
SDK_BODY: dict[str, Any] = {  # the OpenAI SDK sends non-OpenAI fields through extra_body
    "model": K2,
    "messages": BODY["messages"],
    "extra_body": OFF,
}


def _post(emu: KimiEmulator, body: dict[str, Any] = BODY, **kw: Any) -> httpx.Response:
    return HTTP.post(f"{emu.base_url}/chat/completions", json=body, headers=emu.headers, **kw)


def _client(emu: KimiEmulator, **kw: Any) -> OpenAI:
    return OpenAI(base_url=emu.base_url, api_key=emu.api_key, max_retries=0, **kw)


def test_rate_limit_at_request_number_with_retry_after(emulator: KimiEmulator) -> None:
    rule = emulator.faults.rate_limit(at=2, retry_after=7)
    assert _post(emulator).status_code == 200
    resp = _post(emulator)
    assert resp.status_code == 429
    assert "Retry-After" not in resp.headers  # today's API: the delay is in the message
    err = resp.json()["error"]
    assert err["type"] == "rate_limit_reached_error"
    assert "please try again after 7 seconds" in err["message"]
    info = classify_moonshot_error(resp.status_code, resp.json(), headers=resp.headers)
    assert (info.kind, info.retryable, info.retry_after) == ("rate_limit", True, 7.0)
    assert _post(emulator).status_code == 200
    assert rule.fired == 1
    assert emulator.chat_requests[1].fault == "rate_limit"
    # Rejected requests are not billed.
    assert emulator.ledger().requests == 2


@pytest.mark.parametrize(
    ("add", "status", "etype", "kind", "retryable"),
    [
        (lambda f: f.overloaded(), 429, "engine_overloaded_error", "engine_overloaded", True),
        (
            lambda f: f.quota_exceeded(),
            429,
            "exceeded_current_quota_error",
            "quota_exceeded",
            False,
        ),
        (lambda f: f.server_error(), 500, "server_error", "server_error", True),
        (lambda f: f.overflow(), 400, "invalid_request_error", "context_overflow", False),
        (lambda f: f.content_filter(), 400, "content_filter", "content_filter", False),
        (
            lambda f: f.permission_denied(),
            403,
            "permission_denied_error",
            "permission_denied",
            False,
        ),
        (
            lambda f: f.error(500, "unexpected_output", "garbled"),
            500,
            "unexpected_output",
            "server_error",
            True,
        ),
        (
            lambda f: f.error(404, "resource_not_found_error", "gone"),
            404,
            "resource_not_found_error",
            "not_found",
            False,
        ),
    ],
)
def test_error_faults_classify_like_moonshot(
    emulator: KimiEmulator, add: Any, status: int, etype: str, kind: str, retryable: bool
) -> None:
    add(emulator.faults)
    resp = _post(emulator)
    assert resp.status_code == status
    assert resp.json()["error"]["type"] == etype
    info = classify_moonshot_error(resp.status_code, resp.json(), headers=resp.headers)
    assert (info.kind, info.retryable) == (kind, retryable)
    if kind == "context_overflow":
        assert info.window == 262_144
        assert info.requested is not None
        assert info.requested > info.window
    assert _post(emulator).status_code == 200  # fires once by default


def test_openai_sdk_sees_typed_errors(emulator: KimiEmulator) -> None:
    client = _client(emulator)
    emulator.faults.rate_limit(at=1)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**SDK_BODY)
    emulator.faults.server_error(at=1)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**SDK_BODY)
    # The SDK's own retries get through a single scripted 500.
    emulator.faults.server_error(at=1)
    retrying = OpenAI(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=1)
    assert retrying.chat.completions.create(**SDK_BODY).choices[0].message.content


def test_empty_reply(emulator: KimiEmulator) -> None:
    emulator.faults.empty_reply(at=1)
    data = _post(emulator).json()
    assert data["choices"][0]["message"]["content"] == ""
    assert "tool_calls" not in data["choices"][0]["message"]
    assert data["usage"]["completion_tokens"] == 0


def test_slow_reply_and_client_timeout(emulator: KimiEmulator) -> None:
    emulator.faults.slow(0.4, at=1)
    start = time.monotonic()
    assert _post(emulator).status_code == 200
    assert time.monotonic() - start >= 0.4
    emulator.faults.slow(1.0, at=1)
    with pytest.raises(httpx.ReadTimeout):
        _post(emulator, timeout=0.2)


def test_stream_cut_mid_way(emulator: KimiEmulator) -> None:
    emulator.faults.cut_stream(after_chunks=3, at=1)
    client = _client(emulator)
    received: list[str] = []

    def consume() -> None:
        stream = client.chat.completions.create(**SDK_BODY, stream=True)
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "" if chunk.choices else "")

    with pytest.raises((httpx.HTTPError, openai.APIError)):
        consume()
    assert len(received) == 3
    # the next stream is complete
    stream = client.chat.completions.create(**SDK_BODY, stream=True)
    assert sum(1 for _ in stream) > 3
    assert emulator.chat_requests[0].fault == "cut"


def test_non_streaming_cut(emulator: KimiEmulator) -> None:
    emulator.faults.cut_stream(at=1)
    with pytest.raises(httpx.HTTPError):
        _post(emulator)


def test_rate_with_seed_is_deterministic(emulator: KimiEmulator) -> None:
    def run() -> list[int]:
        emulator.reset()
        emulator.faults.overloaded(rate=0.4, seed=42)
        return [_post(emulator).status_code for _ in range(12)]

    first, second = run(), run()
    assert first == second
    assert 429 in first
    assert 200 in first


def test_multiple_request_numbers_and_times() -> None:
    inj = FaultInjector()
    rule = inj.add(Fault("server_error"), at=[1, 3])
    capped = inj.add(Fault("overloaded"), rate=1.0, times=2)
    kinds = [f.kind if f else None for f in (inj.next_fault("chat") for _ in range(5))]
    assert kinds == ["server_error", "overloaded", "server_error", "overloaded", None]
    assert (rule.fired, capped.fired) == (2, 2)
    assert inj.next_fault("caching") is None
    with pytest.raises(ValueError, match="either at= or rate="):
        inj.add(Fault("empty"), at=1, rate=0.5)
    with pytest.raises(ValueError, match="Unknown fault kind"):
        Fault("boom")  # type: ignore[arg-type]


def test_caching_endpoint_faults(legacy_emulator: KimiEmulator) -> None:
    emulator = legacy_emulator  # the explicit cache API: legacy catalog
    emulator.faults.server_error(at=1, endpoint="caching")
    body = {"model": "moonshot-v1", "messages": [{"role": "user", "content": "doc"}]}
    assert _post(emulator).status_code == 200  # chat is unaffected
    first = HTTP.post(f"{emulator.base_url}/caching", json=body, headers=emulator.headers)
    assert first.status_code == 500
    second = HTTP.post(f"{emulator.base_url}/caching", json=body, headers=emulator.headers)
    assert second.status_code == 200


def test_fail_directive_fails_once_then_identical_retry_succeeds(emulator: KimiEmulator) -> None:
    body = {
        **OFF,
        "model": K2,
        "messages": [{"role": "user", "content": "@fail rate_limit 3\n@say ok"}],
    }
    first = _post(emulator, body)
    assert first.status_code == 429
    assert "please try again after 3 seconds" in first.json()["error"]["message"]
    assert _post(emulator, body).json()["choices"][0]["message"]["content"] == "ok"
    twice = {**OFF, "model": K2, "messages": [{"role": "user", "content": "@fail server_error x2"}]}
    assert [_post(emulator, twice).status_code for _ in range(3)] == [500, 500, 200]
    cut = {
        **body,
        "messages": [{"role": "user", "content": "@fail cut 1\n@reply 40"}],
        "stream": True,
    }
    with pytest.raises(httpx.HTTPError):
        _post(emulator, cut).read()
    assert _post(emulator, cut).status_code == 200
    bad = {**OFF, "model": K2, "messages": [{"role": "user", "content": "@fail explode"}]}
    resp = _post(emulator, bad)
    assert resp.status_code == 500
    assert "Unknown fault kind" in resp.json()["error"]["message"]


def test_admin_fault_endpoint(emulator: KimiEmulator) -> None:
    admin = f"{emulator.root_url}/_emulator/faults"
    resp = HTTP.post(admin, json={"kind": "429", "at": 1, "retry_after": 2})
    assert resp.status_code == 200
    assert resp.json()["data"][0]["kind"] == "rate_limit"
    assert _post(emulator).status_code == 429
    HTTP.post(admin, json=[{"kind": "overloaded", "at": [1]}, {"kind": "quota", "at": 2}])
    assert [_post(emulator).status_code for _ in range(3)] == [429, 429, 200]
    assert HTTP.delete(admin).json()["data"] == []
    assert HTTP.post(admin, json={"kind": "nope"}).status_code == 400
