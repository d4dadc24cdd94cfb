"""The pipeline's output over real HTTP: the emulator rejects raw broken histories with
Kimi's 400s and accepts what ``prepare_context`` makes of them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_openai.chat_models.base import _convert_message_to_dict

from langchain_kimi_context import ContextPolicy, get_profile, prepare_context
from langchain_kimi_context.testing import KimiEmulator


def _wire(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    wire = []
    for message in messages:
        converted = _convert_message_to_dict(message)
        if isinstance(message, AIMessage) and converted.get("tool_calls"):
            if not converted.get("content"):
                converted.pop("content", None)
            reasoning = message.additional_kwargs.get("reasoning_content")
            if reasoning is not None:
                converted["reasoning_content"] = reasoning
        wire.append(converted)
    return wire


def _post(emu: KimiEmulator, model: str, messages: list[BaseMessage]) -> httpx.Response:
    body = {"model": model, "messages": _wire(messages), "max_tokens": 64}
    return httpx.post(f"{emu.base_url}/chat/completions", json=body, headers=emu.headers)


def _broken_history() -> list[BaseMessage]:
    call = {"id": "functions.read_file:0", "name": "read_file", "args": {"path": "a.py"}}
    reused = {"id": "functions.read_file:0", "name": "read_file", "args": {"path": "b.py"}}
    return [
        SystemMessage("You are a coding agent."),
        ToolMessage("stray result", tool_call_id="gone:1"),
        HumanMessage("read a.py"),
        AIMessage("", tool_calls=[call], additional_kwargs={"reasoning_content": "need a.py"}),
        HumanMessage("also b.py please"),
        ToolMessage("print('a')", tool_call_id="functions.read_file:0"),
        ToolMessage("print('a')", tool_call_id="functions.read_file:0"),
        AIMessage("", tool_calls=[reused], additional_kwargs={"reasoning_content": "need b.py"}),
        HumanMessage("@reply 20"),
    ]


@pytest.mark.parametrize("model", ["kimi-k2.6", "kimi-k3"])
def test_emulator_rejects_the_raw_history_and_accepts_the_prepared_one(
    emulator: KimiEmulator, model: str
) -> None:
    history = _broken_history()
    raw = _post(emulator, model, history)
    assert raw.status_code == 400
    assert raw.json()["error"]["type"] == "invalid_request_error"

    prepared, report = prepare_context(history, ContextPolicy(), profile=get_profile(model))
    assert report.pairing.dropped_orphans
    assert report.pairing.dropped_duplicates
    assert report.pairing.added_synthetic_results
    ok = _post(emulator, model, prepared)
    assert ok.status_code == 200, ok.text
    reply = ok.json()["choices"][0]["message"]
    assert reply["content"]
    assert emulator.chat_requests[-1].status == 200
