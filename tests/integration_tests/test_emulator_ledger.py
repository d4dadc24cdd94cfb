"""Ledger math, request log, admin endpoints, concurrency and the CLI."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest

from langchain_kimi_context.profiles import get_profile
from langchain_kimi_context.testing import KimiEmulator, ReplySpec, ResponderRequest

K2 = "kimi-k2.6"
# These tests are about the emulator's mechanics, not thinking: thinking off.
OFF = {"thinking": {"type": "disabled"}}
# One shared client: creating an httpx.Client per call costs ~20 ms (SSL context).
HTTP = httpx.Client(timeout=30)
SYSTEM = {"role": "system", "content": " ".join(f"policy{i} applies" for i in range(500))}


def _post(emu: KimiEmulator, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else emu.headers
    resp = HTTP.post(f"{emu.base_url}/chat/completions", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def test_ledger_prices_hits_misses_and_output(emulator: KimiEmulator) -> None:
    price = get_profile(K2).pricing
    body = {**OFF, "model": K2, "messages": [SYSTEM, {"role": "user", "content": "@reply 100"}]}
    u1 = _post(emulator, body)["usage"]
    u2 = _post(emulator, body)["usage"]
    assert u2["cached_tokens"] > 0
    ledger = emulator.ledger()
    expected = sum(
        (
            u["cached_tokens"] * price.input_cache_hit
            + (u["prompt_tokens"] - u["cached_tokens"]) * price.input_cache_miss
            + u["completion_tokens"] * price.output
        )
        / 1e6
        for u in (u1, u2)
    )
    assert ledger.cost("USD") == pytest.approx(expected)
    assert ledger.requests == 2
    assert ledger.prompt_tokens == u1["prompt_tokens"] + u2["prompt_tokens"]
    assert ledger.cached_tokens == u2["cached_tokens"]
    assert ledger.cache_miss_tokens == ledger.prompt_tokens - ledger.cached_tokens
    assert ledger.completion_tokens == 200
    # The hit made the second call cheaper than the first.
    assert ledger.entries[1].cost < ledger.entries[0].cost
    assert [e.request_seq for e in ledger.entries] == [r.seq for r in emulator.chat_requests]


def test_reasoning_tokens_are_billed_as_output(emulator: KimiEmulator) -> None:
    price = get_profile("kimi-k3").pricing
    data = _post(
        emulator,
        {
            "model": "kimi-k3",
            "messages": [{"role": "user", "content": "@think 50\n@reply 10"}],
        },
    )
    entry = emulator.ledger().entries[0]
    assert entry.reasoning_tokens == 50
    assert entry.completion_tokens == 60 == data["usage"]["completion_tokens"]
    assert entry.cost == pytest.approx(
        (data["usage"]["prompt_tokens"] * price.input_cache_miss + 60 * price.output) / 1e6
    )


def test_ledgers_are_per_api_key_and_admin_readable(emulator: KimiEmulator) -> None:
    other = "sk-second-tenant-key-9999"
    emulator.add_api_key(other)
    body = {**OFF, "model": K2, "messages": [{"role": "user", "content": "@reply 5"}]}
    _post(emulator, body)
    _post(emulator, body, key=other)
    _post(emulator, body, key=other)
    assert emulator.ledger().requests == 1
    assert emulator.ledger(other).requests == 2
    one = HTTP.get(f"{emulator.root_url}/_emulator/ledger", params={"api_key": other}).json()
    assert one["requests"] == 2
    assert one["completion_tokens"] == 10
    everyone = HTTP.get(f"{emulator.root_url}/_emulator/ledger").json()["data"]
    assert sorted(a["requests"] for a in everyone.values()) == [1, 2]
    assert other not in str(everyone)  # keys only as hints


def test_request_log_and_admin_endpoints(emulator: KimiEmulator) -> None:
    _post(emulator, {**OFF, "model": K2, "messages": [{"role": "user", "content": "@say logged"}]})
    HTTP.get(f"{emulator.base_url}/models", headers=emulator.headers)
    bad = HTTP.post(
        f"{emulator.base_url}/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
        headers=emulator.headers,
    )
    assert bad.status_code == 404
    log = emulator.requests
    assert [(r.method, r.path, r.status) for r in log] == [
        ("POST", "/v1/chat/completions", 200),
        ("GET", "/v1/models", 200),
        ("POST", "/v1/chat/completions", 404),
    ]
    assert log[0].response["choices"][0]["message"]["content"] == "logged"
    assert log[0].json == log[0].body
    assert log[2].error_type == "resource_not_found_error"
    assert emulator.api_key not in str(log[0].headers)
    remote = HTTP.get(f"{emulator.root_url}/_emulator/requests").json()["data"]
    assert [r["status"] for r in remote] == [200, 200, 404]
    assert emulator.api_key not in str(remote)
    clock = HTTP.post(f"{emulator.root_url}/_emulator/clock", json={"advance": 30}).json()
    assert clock["offset"] == 30
    assert HTTP.post(f"{emulator.root_url}/_emulator/reset").json() == {"reset": True}
    assert emulator.requests == []
    assert emulator.ledger().requests == 0
    assert emulator.clock.offset == 0
    assert HTTP.get(f"{emulator.root_url}/_emulator/health").json()["status"] == "ok"


def test_streamed_request_is_logged_with_assembled_response(emulator: KimiEmulator) -> None:
    body = {
        **OFF,
        "model": K2,
        "messages": [{"role": "user", "content": "@say streamed text"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    HTTP.post(f"{emulator.base_url}/chat/completions", json=body, headers=emulator.headers)
    record = emulator.chat_requests[-1]
    assert record.stream
    assert record.response["choices"][0]["message"]["content"] == "streamed text"
    assert record.usage is not None
    assert record.usage["completion_tokens"] == 2


def test_concurrent_requests_are_all_served(emulator: KimiEmulator) -> None:
    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            with httpx.Client(timeout=10) as client:
                for j in range(3):
                    resp = client.post(
                        f"{emulator.base_url}/chat/completions",
                        headers=emulator.headers,
                        json={
                            **OFF,
                            "model": K2,
                            "messages": [{"role": "user", "content": f"@say w{i}-{j}"}],
                            "stream": j == 1,
                        },
                    )
                    with lock:
                        results.append(f"{resp.status_code} {resp.text}")
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 24
    assert all(r.startswith("200 ") for r in results)
    for i in range(8):
        for j in range(3):
            assert any(f"w{i}-{j}" in r for r in results)
    assert emulator.ledger().requests == 24
    assert len({r.seq for r in emulator.requests}) == 24


def test_custom_responder_and_profiles(make_emulator: Any) -> None:
    seen: list[ResponderRequest] = []

    def responder(request: ResponderRequest) -> ReplySpec:
        seen.append(request)
        return ReplySpec(content=f"{len(request.messages)} messages")

    custom = get_profile(K2).replace(name="my-kimi", context_window=4096)
    emu = make_emulator(responder=responder, profiles=[custom])
    data = _post(emu, {"model": "my-kimi", "messages": [{"role": "user", "content": "x"}]})
    assert data["choices"][0]["message"]["content"] == "1 messages"
    assert seen[0].model == "my-kimi"
    missing = HTTP.post(
        f"{emu.base_url}/chat/completions",
        headers=emu.headers,
        json={**OFF, "model": K2, "messages": [{"role": "user", "content": "x"}]},
    )
    assert missing.status_code == 404
    models = HTTP.get(f"{emu.base_url}/models", headers=emu.headers).json()["data"]
    assert [(m["id"], m["context_length"]) for m in models] == [("my-kimi", 4096)]


def test_responder_exception_is_a_500_with_the_reason(make_emulator: Any) -> None:
    def broken(request: ResponderRequest) -> ReplySpec:
        raise RuntimeError("script bug")

    emu = make_emulator(responder=broken)
    resp = HTTP.post(
        f"{emu.base_url}/chat/completions",
        headers=emu.headers,
        json={**OFF, "model": K2, "messages": [{"role": "user", "content": "x"}]},
    )
    assert resp.status_code == 500
    assert "script bug" in resp.json()["error"]["message"]


def test_lifecycle_start_stop_and_repr() -> None:
    emu = KimiEmulator()
    with pytest.raises(RuntimeError, match="not running"):
        _ = emu.base_url
    emu.start()
    url = emu.base_url
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/v1")
    assert emu.api_key not in repr(emu)
    emu.stop()
    with pytest.raises(httpx.HTTPError):
        HTTP.get(url + "/models", timeout=1)


@pytest.mark.subprocess
def test_cli_serves_until_terminated() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "langchain_kimi_context.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        models = HTTP.get(
            f"{base_url}/models",
            headers={"Authorization": "Bearer sk-kimi-emulator-0000000000000000"},
            timeout=5,
        )
        assert models.status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_requests_in_flight_across_reset_are_not_recorded(emulator: KimiEmulator) -> None:
    emulator.faults.slow(0.5, at=1)
    done = threading.Event()

    def slow_call() -> None:
        HTTP.post(
            f"{emulator.base_url}/chat/completions",
            headers=emulator.headers,
            json={**OFF, "model": K2, "messages": [{"role": "user", "content": "@say late"}]},
        )
        done.set()

    thread = threading.Thread(target=slow_call)
    thread.start()
    time.sleep(0.1)
    emulator.reset()
    thread.join()
    assert done.is_set()
    assert emulator.requests == []
    assert emulator.ledger().requests == 0


def test_request_is_logged_before_the_client_sees_the_end(emulator: KimiEmulator) -> None:
    body = {
        **OFF,
        "model": K2,
        "messages": [{"role": "user", "content": "@reply 5"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for i in range(15):
        HTTP.post(f"{emulator.base_url}/chat/completions", json=body, headers=emulator.headers)
        assert len(emulator.chat_requests) == i + 1
        assert emulator.chat_requests[-1].usage is not None
        assert emulator.ledger().requests == i + 1


def test_log_bounds_and_bodies_off(make_emulator: Any) -> None:
    emu = make_emulator(max_logged_requests=3, log_bodies=False)
    for i in range(5):
        _post(emu, {**OFF, "model": K2, "messages": [{"role": "user", "content": f"@say {i}"}]})
    log = emu.requests
    assert [r.seq for r in log] == [3, 4, 5]
    assert all(r.body is None and r.response is None for r in log)
    assert all(r.usage is not None for r in log)
    assert emu.ledger().requests == 5  # billing is not bounded by the log
