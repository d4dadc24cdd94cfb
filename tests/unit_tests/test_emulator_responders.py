"""Scripted agent grammar and compaction responder (pure, no server)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from langchain_kimi_context.testing import (
    CompactionResponder,
    DefaultResponder,
    EmulatorTokenizer,
    ReplySpec,
    ResponderRequest,
    ScriptedAgentResponder,
    deterministic_text,
    directive_values,
    is_compaction_request,
    parse_directives,
)

TOK = EmulatorTokenizer()
AGENT = ScriptedAgentResponder()
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "magic_function",
            "parameters": {
                "type": "object",
                "properties": {"input": {"type": "integer"}},
                "required": ["input"],
            },
        },
    }
]


def _ask(messages: list[dict[str, Any]], **kw: Any) -> ReplySpec:
    return AGENT(ResponderRequest.from_messages(messages, **kw))


def _call_msg(reply: ReplySpec, start: int) -> dict[str, Any]:
    return {
        "role": "assistant",
        "tool_calls": [
            {
                "id": f"functions.{c.name}:{start + i}",
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments_json()},
            }
            for i, c in enumerate(reply.tool_calls)
        ],
    }


def _results(call_msg: dict[str, Any], text: str) -> list[dict[str, Any]]:
    return [
        {"role": "tool", "tool_call_id": c["id"], "content": f"{text} {i}"}
        for i, c in enumerate(call_msg["tool_calls"])
    ]


def test_parallel_calls_then_final_reply_quoting_results() -> None:
    msgs: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": '@call read_file {"path": "a.py"}\n@call read_file {"path": "b.py"}',
        }
    ]
    reply = _ask(msgs)
    assert [dict(c.arguments) for c in reply.tool_calls] == [{"path": "a.py"}, {"path": "b.py"}]
    assert reply.content == ""
    call = _call_msg(reply, 0)
    msgs += [call, *_results(call, "content of file " + "x" * 200)]
    final = _ask(msgs)
    assert final.tool_calls == ()
    assert final.content.startswith("Tool results: read_file -> content of file")
    assert final.content.count("read_file ->") == 2
    assert len(final.content) < 200  # quoted briefly


def test_sequential_steps_with_then_and_calls() -> None:
    text = (
        '@call search {"q": "x"}\n@then\n@call edit_file {}\n'
        '@calls 3 read_file {"path": "f{i}.py"}\n@reply 25'
    )
    msgs: list[dict[str, Any]] = [{"role": "user", "content": text}]
    seen = []
    for n in range(5):
        reply = _ask(msgs)
        assert len(reply.tool_calls) == 1
        seen.append((reply.tool_calls[0].name, dict(reply.tool_calls[0].arguments)))
        call = _call_msg(reply, n)
        msgs += [call, *_results(call, "r")]
    assert seen == [
        ("search", {"q": "x"}),
        ("edit_file", {}),
        ("read_file", {"path": "f1.py"}),
        ("read_file", {"path": "f2.py"}),
        ("read_file", {"path": "f3.py"}),
    ]
    final = _ask(msgs)
    assert final.tool_calls == ()
    assert TOK.count_text(final.content) == 25


def test_say_reply_empty_finish_and_hints() -> None:
    assert _ask([{"role": "user", "content": "@say line one\n@say line two"}]).content == (
        "line one\nline two"
    )
    both = _ask([{"role": "user", "content": "@say Intro:\n@reply 10"}]).content
    assert both.startswith("Intro:\n")
    assert TOK.count_text(both) == TOK.count_text("Intro:") + 10
    assert _ask([{"role": "user", "content": "@empty"}]).content == ""
    assert _ask([{"role": "user", "content": "@finish length\n@say x"}]).finish_reason == "length"
    hinted = _ask([{"role": "user", "content": "@tool_result_chars 50000\nHello world"}])
    assert hinted.content == "Reply to: Hello world"
    assert directive_values("@tool_result_chars 50000\nHello", "tool_result_chars") == ["50000"]
    assert [d.name for d in parse_directives("a\n @CALL x {}\n@@bad")] == ["call"]


def test_reply_is_deterministic_and_sized() -> None:
    msgs = [{"role": "user", "content": "@reply 500"}]
    assert _ask(msgs).content == _ask(msgs).content
    assert TOK.count_text(_ask(msgs).content) == 500
    for n in (0, 1, 2, 3, 77):
        assert TOK.count_text(deterministic_text(n, "s")) == n
    assert deterministic_text(20, "a") != deterministic_text(20, "b")


def test_think_only_for_thinking_requests() -> None:
    msgs = [{"role": "user", "content": "@think 40\n@say hi"}]
    assert _ask(msgs).reasoning is None
    reasoning = _ask(msgs, thinking=True).reasoning
    assert reasoning is not None
    assert TOK.count_text(reasoning) == 40
    default = _ask([{"role": "user", "content": "hi"}], thinking=True).reasoning
    assert default is not None
    assert 0 < TOK.count_text(default) <= 20


def test_tool_choice_none_suppresses_calls_and_forced_choice_synthesises() -> None:
    msgs = [{"role": "user", "content": "@call read_file {}"}]
    assert _ask(msgs, body={"tool_choice": "none"}).tool_calls == ()
    forced = _ask(
        [{"role": "user", "content": "What is the value of magic_function(3)? Use the tool."}],
        tools=TOOLS,
        body={"tool_choice": {"type": "function", "function": {"name": "magic_function"}}},
    )
    assert [(c.name, dict(c.arguments)) for c in forced.tool_calls] == [
        ("magic_function", {"input": 3})
    ]
    required = _ask(
        [{"role": "user", "content": "call it with 12"}],
        tools=TOOLS,
        body={"tool_choice": "required"},
    )
    assert dict(required.tool_calls[0].arguments) == {"input": 12}
    # "auto" with no directive: plain reply
    assert (
        _ask(
            [{"role": "user", "content": "hi"}], tools=TOOLS, body={"tool_choice": "auto"}
        ).tool_calls
        == ()
    )


def test_json_response_formats() -> None:
    schema = {
        "type": "object",
        "properties": {"setup": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["setup", "score"],
    }
    body = {"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}}
    value = json.loads(_ask([{"role": "user", "content": "Rate 'cats' 9"}], body=body).content)
    assert value == {"setup": "cats", "score": 9}
    body = {"response_format": {"type": "json_object"}}
    text = "Return JSON with 'setup' and 'punchline' keys."
    assert set(json.loads(_ask([{"role": "user", "content": text}], body=body).content)) == {
        "setup",
        "punchline",
    }


def test_bad_directives_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        _ask([{"role": "user", "content": "@call f {oops"}])
    with pytest.raises(ValueError, match="must be a JSON object"):
        _ask([{"role": "user", "content": "@call f [1]"}])
    with pytest.raises(ValueError, match="non-negative integer"):
        _ask([{"role": "user", "content": "@reply many"}])


# ---------------------------------------------------------------- compaction

TRANSCRIPT = [
    {"role": "system", "content": "You are a compaction assistant. Summarize the session."},
    {"role": "system", "content": "Environment: Python 3.11 on Linux, branch main."},
    {"role": "user", "content": "Refactor the tokenizer in pkg/tokens.py to be faster."},
    {"role": "assistant", "content": "Reading pkg/tokens.py and tests/test_tokens.py now."},
    {"role": "user", "content": "Also TODO: add a benchmark in benchmarks/bench_tokens.py"},
    {
        "role": "assistant",
        "content": (
            'Traceback (most recent call last):\n  File "pkg/tokens.py", line 3\n'
            "KeyError: 'cl100k'\nFixed by caching the encoding.\n"
            "Decision: memoise counts by message id.\nTODO: document the cache size"
        ),
    },
    {"role": "user", "content": "Now make the counter thread-safe please."},
    *[{"role": "assistant", "content": "filler discussion " * 40} for _ in range(20)],
    {"role": "user", "content": "Please summarize the conversation above."},
]


def _compact(messages: list[dict[str, Any]]) -> tuple[str, ResponderRequest]:
    request = ResponderRequest.from_messages(messages)
    return CompactionResponder()(request).content, request


def test_compaction_sections_and_extraction() -> None:
    text, request = _compact(TRANSCRIPT)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Current Task",
        "## Errors & Solutions",
        "## Code",
        "## System Context",
        "## Design Decisions",
        "## TODO",
    ]
    section = {h: [] for h in headings}
    current = ""
    for line in text.splitlines():
        if line.startswith("## "):
            current = line
        elif line.strip():
            section[current].append(line)
    assert section["## Current Task"] == ["- Now make the counter thread-safe please."]
    errors = " ".join(section["## Errors & Solutions"])
    assert "KeyError: 'cl100k'" in errors
    assert 'File "pkg/tokens.py", line 3' in errors  # stack-trace frames are kept
    assert "Traceback" in errors
    assert "Fixed by caching the encoding." in errors
    code = " ".join(section["## Code"])
    for path in ("pkg/tokens.py", "tests/test_tokens.py", "benchmarks/bench_tokens.py"):
        assert path in code
    assert "Python 3.11" in " ".join(section["## System Context"])
    assert section["## Design Decisions"] == ["- Decision: memoise counts by message id."]
    # markers on one line are split: "Decision: x. TODO: y" -> one item each
    mixed, _ = _compact(
        [TRANSCRIPT[0], {"role": "user", "content": "Decision: a. TODO: b\n" + "pad " * 200}]
    )
    assert "- Decision: a.\n" in mixed
    assert "- TODO: b\n" in mixed
    todo = " ".join(section["## TODO"])
    assert "TODO: add a benchmark" in todo
    assert "TODO: document the cache size" in todo
    assert TOK.count_text(text) <= request.prompt_tokens // 4


def test_compaction_respects_quarter_budget_on_large_inputs() -> None:
    noisy = [
        TRANSCRIPT[0],
        *[
            {
                "role": "assistant",
                "content": f"Error {i}: failed to open src/mod{i}.py\n"
                f"Decision: choice {i}\nTODO: item {i}",
            }
            for i in range(300)
        ],
    ]
    text, request = _compact(noisy)
    assert TOK.count_text(text) <= request.prompt_tokens // 4
    assert "Decision: choice 0" in text  # earliest decisions kept first
    small, _ = _compact([TRANSCRIPT[0], {"role": "user", "content": "Fix bug"}])
    assert small.count("## ") == 6  # headings always present


def test_compaction_detection_and_default_dispatch() -> None:
    req = ResponderRequest.from_messages(TRANSCRIPT)
    assert is_compaction_request(req)
    assert not is_compaction_request(ResponderRequest.from_messages(TRANSCRIPT, tools=TOOLS))
    assert not is_compaction_request(
        ResponderRequest.from_messages([{"role": "user", "content": "summarize"}])
    )
    assert DefaultResponder()(req).content.startswith("## Current Task")
    with_tools = ResponderRequest.from_messages(TRANSCRIPT, tools=TOOLS)
    assert DefaultResponder()(with_tools).content.startswith("Reply to:")
    # composing: a custom agent is used for non-compaction requests
    custom = DefaultResponder(agent=lambda r: ReplySpec(content="custom"))
    assert custom(with_tools).content == "custom"


def test_auto_tool_choice_calls_tool_named_in_plain_text() -> None:
    weather = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"location": {"type": "string"}},
                    "required": ["location"],
                },
            },
        },
        TOOLS[0],
    ]
    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": "What is the weather in 'San Francisco, CA'?"}
    ]
    reply = _ask(msgs, tools=weather)
    assert [(c.name, dict(c.arguments)) for c in reply.tool_calls] == [
        ("get_weather", {"location": "San Francisco, CA"})
    ]
    call = _call_msg(reply, 0)
    msgs += [call, *_results(call, "It's sunny.")]
    assert _ask(msgs, tools=weather).content.startswith("Tool results: get_weather -> It's")
    # No tool named in the text, a directive present, or the feature off: no call.
    assert _ask([{"role": "user", "content": "hello"}], tools=weather).tool_calls == ()
    assert _ask([{"role": "user", "content": "weather?\n@say no"}], tools=weather).content == "no"
    off = ScriptedAgentResponder(auto_tool_calls=False)
    assert off(ResponderRequest.from_messages(msgs[:1], tools=weather)).tool_calls == ()


def test_compaction_of_a_rendered_transcript_with_previous_summary() -> None:
    previous = (
        "## Current Task\n- Port the CLI to click\n## Errors & Solutions\n- none\n"
        "## Code\n- cli/main.py\n## System Context\n- none\n"
        "## Design Decisions\n- Decision: keep argparse flags as aliases\n## TODO\n- none"
    )
    transcript = "\n\n".join(
        [
            "[user]: Add a --verbose flag to cli/main.py\n@call read_file {}",
            '[assistant]: [calls: read_file({"path": "cli/main.py"})]',
            "[tool result (read_file)]: FileNotFoundError: cli/main.py missing",
            "[assistant]: Created it. Running on Python 3.12 in the project venv.",
            "[system]: Working directory /repo",
            "[user]: Now wire the flag into logging",
            *["[assistant]: filler text here " * 30 for _ in range(10)],
        ]
    )
    messages = [
        {"role": "system", "content": "You compact conversation context."},
        {"role": "user", "content": f"Previous summary:\n{previous}\n\nTranscript:\n{transcript}"},
    ]
    text, request = _compact(messages)
    assert "- Now wire the flag into logging" in text
    assert "FileNotFoundError: cli/main.py missing" in text
    assert "Decision: keep argparse flags as aliases" in text  # folded from the summary
    assert "cli/main.py" in text
    assert "Python 3.12" in text
    assert "Working directory /repo" in text
    assert "## Errors & Solutions\n- ## " not in text
    assert "- none" not in text.replace("- (none)", "")
    assert TOK.count_text(text) <= request.prompt_tokens // 4
    # A transcript chunk without user turns keeps the previous summary's task.
    only_tools = [
        messages[0],
        {
            "role": "user",
            "content": f"Previous summary:\n{previous}\n\nTranscript:\n"
            + "[tool result (run)]: ok\n" * 200,
        },
    ]
    assert "- Port the CLI to click" in _compact(only_tools)[0]
