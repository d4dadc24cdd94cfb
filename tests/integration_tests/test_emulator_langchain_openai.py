"""The emulator serves plain ``langchain_openai.ChatOpenAI`` (sync, async, stream, tools)."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from langchain_kimi_context.testing import KimiEmulator

K2 = "kimi-k2.6"
# These tests are about the emulator's mechanics, not thinking: thinking off.
OFF = {"thinking": {"type": "disabled"}}


def _model(emu: KimiEmulator, **kw: object) -> ChatOpenAI:
    return ChatOpenAI(
        model=K2,
        base_url=emu.base_url,
        api_key=emu.api_key,  # type: ignore[arg-type]
        stream_usage=True,
        max_retries=0,
        extra_body=OFF,
        **kw,  # type: ignore[arg-type]
    )


@tool
def get_weather(location: str) -> str:
    """Get the weather at a location."""
    return f"Sunny in {location}."


def test_invoke_stream_and_usage(emulator: KimiEmulator) -> None:
    model = _model(emulator)
    msg = model.invoke("@reply 12")
    assert isinstance(msg, AIMessage)
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["output_tokens"] == 12
    chunks = list(model.stream("@reply 30"))
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert full.usage_metadata is not None
    assert full.usage_metadata["output_tokens"] == 30


async def test_async_invoke_and_stream(emulator: KimiEmulator) -> None:
    model = _model(emulator)
    msg = await model.ainvoke("@say async hello")
    assert msg.content == "async hello"
    text = ""
    async for chunk in model.astream("@say streamed async"):
        text += str(chunk.content)
    assert text == "streamed async"


def test_tool_loop_round_trip(emulator: KimiEmulator) -> None:
    model = _model(emulator).bind_tools([get_weather])
    question = HumanMessage("What is the weather in 'Paris'?")
    first = model.invoke([question])
    assert isinstance(first, AIMessage)
    assert first.tool_calls[0]["id"] == "functions.get_weather:0"
    assert first.tool_calls[0]["args"] == {"location": "Paris"}
    result = get_weather.invoke(first.tool_calls[0])
    assert isinstance(result, ToolMessage)
    final = model.invoke([question, first, result])
    assert "Sunny in Paris." in str(final.content)


def test_structured_output(emulator: KimiEmulator) -> None:
    class Joke(BaseModel):
        setup: str
        punchline: str

    for method in ("function_calling", "json_schema", "json_mode"):
        chain = _model(emulator).with_structured_output(Joke, method=method)  # type: ignore[arg-type]
        joke = chain.invoke("Tell a joke as JSON with 'setup' and 'punchline' keys.")
        assert isinstance(joke, Joke)
