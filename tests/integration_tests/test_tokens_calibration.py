"""Token accounting against the Kimi emulator over real HTTP.

The emulator bills ``prompt_tokens`` with its own tokenizer, which deliberately differs
from the client's (8 letters per token, one token per punctuation character, canonical
JSON for tool calls), so these tests show the calibration closing a real gap.
"""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_openai_messages,
)
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_openai import ChatOpenAI
from openai import OpenAI
from pydantic import BaseModel, Field

from langchain_kimi_context.errors import (
    KimiAuthenticationError,
    KimiConfigurationError,
    KimiNotFoundError,
)
from langchain_kimi_context.testing import KimiEmulator
from langchain_kimi_context.tokens import (
    ApproximateBackend,
    ContextSizeTracker,
    TokenCounter,
    acount_tokens_exact,
    count_tokens_exact,
)

WORDS = [
    "cache",
    "prefix",
    "window",
    "session",
    "summary",
    "tool",
    "result",
    "config",
    "loader",
    "parser",
    "retry",
    "deployment",
    "database",
    "migration",
    "benchmark",
    "pipeline",
    "compaction",
    "checkpoint",
]
HAN = "上下文窗口缓存命中率下降系统提示时间戳数据库迁移脚本生产环境回滚外键约束索引"
CODE = """def load(path: str) -> dict[str, Any]:
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    if "model" not in data:
        raise ValueError(f"missing model in {path}")
    return {k: v for k, v in data.items() if v is not None}
"""


class ReadFile(BaseModel):
    """Read a file of the repository."""

    path: str = Field(description="Path relative to the repository root")


def turn_text(kind: str, rng: random.Random) -> str:
    if kind == "english":
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(120, 300))) + "."
    if kind == "chinese":
        return "".join(rng.choice(HAN) for _ in range(rng.randint(150, 400))) + "。"
    return "Please review:\n" + CODE * rng.randint(2, 6)


def wire(history: list[BaseMessage]) -> list[dict[str, Any]]:
    """OpenAI dicts, replaying ``reasoning_content`` as Kimi thinking models require."""
    out = []
    for msg, item in zip(history, convert_to_openai_messages(history), strict=True):
        reasoning = msg.additional_kwargs.get("reasoning_content")
        out.append({**item, "reasoning_content": reasoning} if reasoning else item)
    return out


@pytest.fixture
def client(emulator: KimiEmulator) -> OpenAI:
    return OpenAI(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0)


@pytest.mark.parametrize("kind", ["english", "chinese", "code"])
def test_calibration_converges_on_emulator_billing(kind: str, client: OpenAI) -> None:
    counter = TokenCounter(backend=ApproximateBackend())
    tracker = ContextSizeTracker(counter)
    rng = random.Random(kind)
    history: list[BaseMessage] = [SystemMessage("You are a helpful assistant.")]
    errors: list[tuple[int, float, float]] = []  # (observations, calibrated, tracker)
    for _ in range(6):
        history = [*history, HumanMessage(turn_text(kind, rng) + "\n@reply 120")]
        calibrated = tracker.estimate(history)
        tracked = tracker.current_size(history)
        reply = client.chat.completions.create(model="kimi-k2.6", messages=wire(history))
        assert reply.usage is not None
        billed = reply.usage.prompt_tokens
        errors.append(
            (
                tracker.calibrator.observations,
                abs(calibrated - billed) / billed,
                abs(tracked - billed) / billed,
            )
        )
        tracker.record_usage(history, billed)
        assert tracker.current_size(history) == billed  # exact at the anchor
        history = [*history, AIMessage(reply.choices[0].message.content or "")]
    after_three = [e for e in errors if e[0] >= 3]
    assert after_three
    for _, calibrated_err, tracker_err in after_three:
        assert calibrated_err <= 0.02
        assert tracker_err <= 0.02
    # The calibrator learned the emulator's ratio (bounded), whatever the start error.
    assert 0.5 <= tracker.factor <= 2.0
    assert tracker.calibrator.observations == 6


def test_uncalibrated_estimate_differs_from_emulator_which_calibration_fixes(
    client: OpenAI,
) -> None:
    counter = TokenCounter(backend=ApproximateBackend())
    history: list[BaseMessage] = [HumanMessage(turn_text("english", random.Random(1)))]
    reply = client.chat.completions.create(model="kimi-k2.6", messages=wire(history))
    assert reply.usage is not None
    billed = reply.usage.prompt_tokens
    raw = counter.count_messages(history)
    assert abs(raw - billed) / billed > 0.05  # the tokenizers really differ
    tracker = ContextSizeTracker(counter)
    tracker.record_usage(history, billed)
    more = [*history, AIMessage("ok"), HumanMessage(turn_text("english", random.Random(2)))]
    reply2 = client.chat.completions.create(model="kimi-k2.6", messages=wire(more))
    assert reply2.usage is not None
    billed2 = reply2.usage.prompt_tokens
    assert (
        abs(tracker.current_size(more) - billed2) / billed2
        < abs(counter.count_messages(more) - billed2) / billed2
    )


def test_tracker_with_tool_calls_and_tools(client: OpenAI, emulator: KimiEmulator) -> None:
    counter = TokenCounter(backend=ApproximateBackend())
    tracker = ContextSizeTracker(counter)
    tools = [ReadFile]
    wire_tools = [convert_to_openai_tool(ReadFile)]
    history: list[BaseMessage] = [
        SystemMessage("You are a coding agent."),
        HumanMessage('@call ReadFile {"path": "src/app.py"}'),
    ]
    for step in range(4):
        reply = client.chat.completions.create(
            model="kimi-k2.6", messages=wire(history), tools=wire_tools
        )
        assert reply.usage is not None
        if step >= 3:
            predicted = tracker.current_size(history, tools)
            assert abs(predicted - reply.usage.prompt_tokens) / reply.usage.prompt_tokens <= 0.02
        tracker.record_usage(history, reply.usage.prompt_tokens, tools=tools)
        message = reply.choices[0].message
        reasoning = getattr(message, "reasoning_content", None) or "Reading the file."
        if message.tool_calls:
            calls = [
                {"name": c.function.name, "args": {"path": "src/app.py"}, "id": c.id}
                for c in message.tool_calls
            ]
            ai = AIMessage(
                message.content or "",
                tool_calls=calls,
                additional_kwargs={"reasoning_content": reasoning},
            )
            history = [*history, ai]
            history += [ToolMessage(CODE * 3, tool_call_id=c["id"]) for c in calls]
        else:
            history = [
                *history,
                AIMessage(message.content or ""),
                HumanMessage('@call ReadFile {"path": "src/other.py"}'),
            ]
    assert emulator.requests  # everything went over HTTP


# ---------------------------------------------------------------------------------------
# Exact count through POST /v1/tokenizers/estimate-token-count
# ---------------------------------------------------------------------------------------


def sample_history() -> list[BaseMessage]:
    return [
        SystemMessage("You are Kimi."),
        HumanMessage("读取配置文件 and explain it"),
        AIMessage(
            "",
            tool_calls=[{"name": "ReadFile", "args": {"path": "cfg.toml"}, "id": "ReadFile:0"}],
            additional_kwargs={"reasoning_content": "I should read the file first."},
        ),
        ToolMessage('model = "kimi-k2.6"', tool_call_id="ReadFile:0"),
    ]


def test_exact_count_matches_what_the_chat_endpoint_bills(
    emulator: KimiEmulator, client: OpenAI
) -> None:
    history = sample_history()
    exact = count_tokens_exact(
        history, model="kimi-k2.6", base_url=emulator.base_url, api_key=emulator.api_key
    )
    payload = wire(history)
    payload[2]["reasoning_content"] = "I should read the file first."
    reply = client.chat.completions.create(model="kimi-k2.6", messages=payload)
    assert reply.usage is not None
    assert exact == reply.usage.prompt_tokens
    sent = next(r for r in emulator.requests if "estimate-token-count" in r.path)
    assert sent.json["messages"][2]["reasoning_content"] == "I should read the file first."


def test_exact_count_with_tools_and_chat_model_settings(emulator: KimiEmulator) -> None:
    model = ChatOpenAI(model="kimi-k2.6", base_url=emulator.base_url, api_key=emulator.api_key)
    history = sample_history()
    without = count_tokens_exact(history, chat_model=model)
    with_tools = count_tokens_exact(history, [ReadFile], chat_model=model)
    assert with_tools > without
    with httpx.Client() as http:
        reused = count_tokens_exact(
            history,
            model="kimi-k2.6",
            base_url=emulator.base_url,
            api_key=emulator.api_key,
            client=http,
        )
    assert reused == without


async def test_async_exact_count(emulator: KimiEmulator) -> None:
    history = sample_history()
    sync = count_tokens_exact(
        history, model="kimi-k2.6", base_url=emulator.base_url, api_key=emulator.api_key
    )
    got = await acount_tokens_exact(
        history, model="kimi-k2.6", base_url=emulator.base_url, api_key=emulator.api_key
    )
    assert got == sync
    async with httpx.AsyncClient() as http:
        again = await acount_tokens_exact(
            history,
            model="kimi-k2.6",
            base_url=emulator.base_url,
            api_key=emulator.api_key,
            client=http,
        )
    assert again == sync


def test_exact_count_errors_are_typed_and_never_leak_the_key(
    emulator: KimiEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = sample_history()
    with pytest.raises(KimiAuthenticationError) as auth:
        count_tokens_exact(
            history, model="kimi-k2.6", base_url=emulator.base_url, api_key="sk-wrong-secret-1"
        )
    assert "sk-wrong-secret-1" not in str(auth.value)
    with pytest.raises(KimiNotFoundError):
        count_tokens_exact(
            history, model="no-such-model", base_url=emulator.base_url, api_key=emulator.api_key
        )
    monkeypatch.delenv("MOONSHOT_API_KEY", raising=False)
    with pytest.raises(KimiConfigurationError, match="API key"):
        count_tokens_exact(history, base_url=emulator.base_url)
