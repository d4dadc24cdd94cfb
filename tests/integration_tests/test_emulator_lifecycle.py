"""KimiEmulator lifecycle, keys, request log and ledger accessors over real HTTP.

These checks were doctests on the emulator's methods; each started its own server.
"""

from __future__ import annotations

import httpx
import pytest
from openai import OpenAI

from langchain_kimi_context.testing import KimiEmulator


def test_start_stop_are_idempotent() -> None:
    emu = KimiEmulator().start()
    assert emu.start() is emu
    assert 0 < emu.port < 65536
    assert emu.base_url == f"http://127.0.0.1:{emu.port}/v1"
    assert repr(emu) == f"KimiEmulator({emu.base_url})"
    emu.stop()
    emu.stop()
    assert repr(emu) == "KimiEmulator(stopped)"
    with pytest.raises(RuntimeError, match="not running"):
        _ = emu.port


def test_context_manager_serves_chat_and_bills_it() -> None:
    with KimiEmulator() as emu:
        r = httpx.post(
            emu.base_url + "/chat/completions",
            headers=emu.headers,
            json={"model": "kimi-k2.6", "messages": [{"role": "user", "content": "@say hi"}]},
        )
        assert r.json()["choices"][0]["message"]["content"] == "hi"
        assert emu.ledger().requests == 1


def test_admin_health_under_root_url(emulator: KimiEmulator) -> None:
    assert httpx.get(emulator.root_url + "/_emulator/health").json()["status"] == "ok"


def test_request_log_is_complete_once_the_reply_is_read(emulator: KimiEmulator) -> None:
    assert emulator.chat_requests == []
    assert emulator.last_request is None
    httpx.get(emulator.base_url + "/models", headers=emulator.headers)
    assert [(r.method, r.path, r.status) for r in emulator.requests] == [("GET", "/v1/models", 200)]
    last = emulator.last_request
    assert last is not None
    assert last.path == "/v1/models"


def test_tool_call_ids_follow_kimi_format(emulator: KimiEmulator) -> None:
    client = OpenAI(base_url=emulator.base_url, api_key=emulator.api_key)
    reply = client.chat.completions.create(
        model="kimi-k2.6",
        messages=[{"role": "user", "content": '@call get_weather {"city": "Paris"}'}],
    )
    tool_calls = reply.choices[0].message.tool_calls
    assert tool_calls is not None
    assert tool_calls[0].id == "functions.get_weather:0"


def test_keys_ledgers_clock_and_reset() -> None:
    emu = KimiEmulator(api_key="sk-test-key-123456")
    assert emu.headers == {"Authorization": "Bearer sk-test-key-123456"}
    assert not emu.is_valid_key("wrong")
    emu.add_api_key("sk-second-key-0000")
    assert emu.is_valid_key("sk-second-key-0000")
    assert emu.ledger().requests == 0
    assert emu.ledgers() == {}
    emu.advance_time(60)
    assert emu.clock.offset == 60.0
    emu.reset()
    assert emu.clock.offset == 0.0
