"""The emulator's own tokenizer: deterministic rules, request serialisation, blocks."""

from __future__ import annotations

from langchain_kimi_context.testing import EmulatorTokenizer

TOK = EmulatorTokenizer()


def test_token_rules() -> None:
    assert TOK.tokenize("abcdefgh") == ["abcdefgh"]
    assert TOK.tokenize("abcdefghi") == ["abcdefgh", "i"]
    assert TOK.tokenize("1234567") == ["123", "456", "7"]
    assert TOK.tokenize("你好世界吗") == ["你好", "世界", "吗"]  # 1.5-2 characters per token
    assert TOK.tokenize("こんにちは") == ["こん", "にち", "は"]
    assert TOK.tokenize("a.b,c!") == ["a", ".", "b", ",", "c", "!"]
    assert TOK.count_text("  \n\t ") == 0
    assert TOK.count_text("word " * 100) == 100


def test_counts_are_its_own() -> None:
    # Deliberately NOT tiktoken's rules: 9 words + "." per sentence, the 20-letter word
    # is 3 pieces of at most 8 letters, 1234567 is 3 digit groups.
    text = "The quick brown fox jumps over the lazy dog. " * 3 + "internationalization 1234567"
    assert TOK.count_text(text) == 3 * 10 + 3 + 3


def test_message_serialisation_counts_every_field() -> None:
    base = {"role": "assistant", "content": "done"}
    n = TOK.count_messages([base])
    assert n == 3  # role marker + "done" + end marker
    call = {"id": "functions.f:0", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    with_calls = TOK.count_messages([{**base, "tool_calls": [call]}])
    with_reasoning = TOK.count_messages([{**base, "reasoning_content": "think hard"}])
    assert with_calls > n
    assert with_reasoning == n + 3  # think marker + 2 words
    overhead = EmulatorTokenizer(message_overhead=4)
    assert overhead.count_messages([base]) == n + 4


def test_serialisation_is_canonical_and_tools_come_first() -> None:
    tool_a = {"type": "function", "function": {"name": "abc", "parameters": {"b": 1, "a": 2}}}
    tool_b = {"function": {"parameters": {"a": 2, "b": 1}, "name": "abc"}, "type": "function"}
    msgs = [{"role": "user", "content": "hi"}]
    assert TOK.serialize_request(msgs, [tool_a]) == TOK.serialize_request(msgs, [tool_b])
    seq = TOK.serialize_request(msgs, [tool_a])
    assert seq[0] == "<|tools|>"
    assert seq[-3:] == ["<|user|>", "hi", "<|end|>"]


def test_block_hashes_share_exactly_the_common_prefix() -> None:
    a = [f"t{i}" for i in range(1000)]
    b = [*a[:600], "changed", *a[601:]]
    ha, hb = TOK.block_hashes(a, 256), TOK.block_hashes(b, 256)
    assert len(ha) == len(hb) == 3
    assert ha[:2] == hb[:2]
    assert ha[2] != hb[2]


def test_truncate() -> None:
    text = "alpha beta, gamma"
    assert TOK.truncate(text, 2) == "alpha beta"
    assert TOK.truncate(text, 3) == "alpha beta,"
    assert TOK.truncate(text, 99) == text
    assert TOK.truncate(text, 0) == ""
