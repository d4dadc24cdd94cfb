"""Unit tests of ``langchain_kimi_context.tokens`` (no network, no server)."""

from __future__ import annotations

import base64
import gc
import json
import logging
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.utils import count_tokens_approximately, trim_messages
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field

import langchain_kimi_context
from langchain_kimi_context import tokens as tokens_mod
from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.tokens import (
    KIMI_PAT_STR,
    ApproximateBackend,
    ContextSizeTracker,
    TiktokenBackend,
    TokenCalibrator,
    TokenCounter,
    TokenizerFallbackWarning,
    count_tokens_for_model,
    default_token_counter,
    load_kimi_encoding,
    set_default_token_counter,
)
from langchain_kimi_context.tokens import backends as tokens_backends
from langchain_kimi_context.tokens import vocab as tokens_vocab

CHINESE = (
    "我们需要把这个函数重构一下，先把读取配置的逻辑拆出来，然后给每个分支补上单元测试。"  # noqa: RUF001
    "上下文窗口快满了，请先总结之前的讨论，保留所有文件路径和错误信息。"  # noqa: RUF001
)
ENGLISH = (
    "The context pipeline keeps long sessions cheap: it trims old tool results, repairs "
    "orphaned tool calls and compacts the history before the window overflows. "
)
CODE = '''def count_tokens(messages: list[dict[str, str]], *, model: str = "kimi-k2.6") -> int:
    """Return the number of tokens."""
    total = 0
    for message in messages:
        total += len(message["content"]) // 4 + 3  # rough
        if message.get("name"):
            total += 1
    return total
'''


class SpyBackend:
    """Approximate backend that records every text it is asked to count."""

    def __init__(self) -> None:
        self.inner = ApproximateBackend()
        self.calls: list[str] = []

    @property
    def name(self) -> str:
        return "spy"

    @property
    def exact(self) -> bool:
        return False

    def count(self, text: str) -> int:
        self.calls.append(text)
        return self.inner.count(text)


def approx_counter(**kwargs: Any) -> TokenCounter:
    return TokenCounter(backend=ApproximateBackend(), **kwargs)


@pytest.fixture
def reset_fallback_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens_backends, "_fallback_warned", False)
    monkeypatch.setattr(tokens_backends, "_fallback_logged", False)


@pytest.fixture
def no_vocab_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIMI_TOKENIZER_PATH", raising=False)


# ---------------------------------------------------------------------------------------
# Approximate backend: CJK, English, code
# ---------------------------------------------------------------------------------------


def test_approximate_counts_han_kana_hangul_at_moonshots_chars_per_token() -> None:
    # Moonshot's docs: one token is about 1.5 to 2 Chinese characters.
    backend = ApproximateBackend()
    han = "".join(ch for ch in CHINESE if "\u4e00" <= ch <= "\u9fff")
    for text in (han, "これはテストです" * 4, "컨텍스트창이가득찼습니다" * 3):
        assert len(text) / 2 <= backend.count(text) <= len(text) / 1.5


def test_approximate_chinese_is_not_undercounted_like_langchain_default() -> None:
    backend = ApproximateBackend()
    ours = backend.count(CHINESE)
    lc = count_tokens_approximately([HumanMessage(CHINESE)]) - 3  # minus its per-message 3
    # Kimi needs one token per 1.5-2 Han characters; 4 chars/token is about 2x too low.
    assert len(CHINESE) / 2 <= ours <= len(CHINESE) / 1.4
    assert ours >= 2 * lc


def test_approximate_english_is_about_four_chars_per_token() -> None:
    text = ENGLISH * 20
    chars_per_token = len(text) / ApproximateBackend().count(text)
    assert 3.5 <= chars_per_token <= 5.5


def test_approximate_code_counts_punctuation_digits_and_indentation() -> None:
    backend = ApproximateBackend()
    chars_per_token = len(CODE) / backend.count(CODE)
    # Code tokenises denser than prose: operators, brackets, indentation.
    assert 2.0 <= chars_per_token <= 4.0
    assert backend.count("1234567890") == 4  # digits go in groups of three
    assert backend.count("x" * 3) == 1
    assert backend.count("    ") >= 1
    assert backend.count("a\n\n\nb") == 3


def test_approximate_edge_cases() -> None:
    with pytest.raises(KimiConfigurationError, match="digits_per_token"):
        ApproximateBackend(digits_per_token=0)
    with pytest.raises(KimiConfigurationError, match="cjk_tokens_per_char"):
        ApproximateBackend(cjk_tokens_per_char=-1)
    assert ApproximateBackend(cjk_tokens_per_char=1.5).count("你好世界") == 6
    backend = ApproximateBackend()
    assert backend.count("") == 0
    assert backend.count(" ") == 1
    assert backend.count("😀") >= 1
    mixed = ENGLISH + CHINESE + CODE
    parts = backend.count(ENGLISH) + backend.count(CHINESE) + backend.count(CODE)
    assert abs(backend.count(mixed) - parts) <= 3


# ---------------------------------------------------------------------------------------
# Kimi tiktoken.model loader on a tiny vocabulary built here
# ---------------------------------------------------------------------------------------

NI = "你".encode()
HAO = "好".encode()


def write_vocab(path: Path, merges: list[bytes], *, config: dict[str, Any] | None = None) -> Path:
    """Write a Kimi-style tiktoken.model (base64 token, space, rank per line)."""
    ranks = [bytes([b]) for b in range(256)] + merges
    lines = [base64.b64encode(tok).decode() + f" {rank}" for rank, tok in enumerate(ranks)]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    if config is not None:
        path.with_name("tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return path


TINY_MERGES = [
    b"he",
    b"ll",
    b"hell",
    b"hello",
    b" w",
    b"or",
    b" wor",
    b" world",
    NI[:2],
    NI,
    HAO[:2],
    HAO,
    NI + HAO,
    b"a" + NI[:1],
    b"a" + NI[:2],
    b"a" + NI,
]


@pytest.fixture
def tiny_vocab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))
    config = {
        "added_tokens_decoder": {
            str(256 + len(TINY_MERGES) + 2): {"content": "<|im_end|>", "special": True}
        }
    }
    return write_vocab(tmp_path / "tiktoken.model", TINY_MERGES, config=config)


def test_kimi_vocab_loads_through_tiktoken_and_applies_merges(tiny_vocab: Path) -> None:
    counter = TokenCounter(vocab_path=tiny_vocab)
    assert counter.backend.exact
    assert counter.backend.name == "kimi:tiktoken.model"
    assert counter.count_text("hello world") == 2
    assert counter.count_text("你好") == 1
    assert counter.count_text("hello") == 1
    assert counter.count_text("xyz") == 3  # unknown bytes stay single-byte tokens


def test_kimi_split_pattern_separates_han_from_latin(tiny_vocab: Path) -> None:
    encoding = load_kimi_encoding(tiny_vocab)
    assert encoding._pat_str == KIMI_PAT_STR
    # The vocabulary has a merged token for "a你", but Kimi's pattern pre-splits Han
    # characters from Latin letters, so it can never be used.
    assert len(encoding.encode_ordinary("a你")) == 2
    letters_together = tiktoken.Encoding(
        name="letters",
        pat_str=r"\p{L}+|\s+|[^\s\p{L}]+",
        mergeable_ranks=encoding._mergeable_ranks,
        special_tokens={},
    )
    assert len(letters_together.encode_ordinary("a你")) == 1


def test_kimi_special_tokens_named_from_tokenizer_config(tiny_vocab: Path) -> None:
    encoding = load_kimi_encoding(tiny_vocab)
    base = 256 + len(TINY_MERGES)
    assert encoding.special_tokens_set >= {"<|im_end|>", f"<|reserved_token_{base}|>"}
    assert len(encoding.special_tokens_set) == 258
    # Special-token text in user content is counted as text, not rejected.
    assert TokenCounter(vocab_path=tiny_vocab).count_text("<|im_end|>") > 1


def test_kimi_vocab_from_env_var(tiny_vocab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIMI_TOKENIZER_PATH", str(tiny_vocab))
    counter = TokenCounter()
    assert counter.backend.exact
    assert counter.count_text("hello world") == 2


def test_kimi_vocab_replaced_at_same_path_is_reloaded(tiny_vocab: Path) -> None:
    assert TokenCounter(vocab_path=tiny_vocab).count_text("hello") == 1
    write_vocab(tiny_vocab, [b"he"])  # same path, fewer merges; tiktoken caches by path
    assert TokenCounter(vocab_path=tiny_vocab).count_text("hello") == 4


def test_kimi_vocab_long_runs_are_split_and_counted(tiny_vocab: Path) -> None:
    counter = TokenCounter(vocab_path=tiny_vocab)
    text = "hello" * 12_000  # one 60,000-character run without whitespace
    assert counter.count_text(text) == 12_000


def test_kimi_vocab_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(KimiConfigurationError, match="not found"):
        TokenCounter(vocab_path=tmp_path / "missing.model")
    bad = tmp_path / "bad.model"
    bad.write_text("this is not base64 and no rank\n")
    with pytest.raises(KimiConfigurationError, match="not a tiktoken vocabulary"):
        load_kimi_encoding(bad)
    partial = tmp_path / "partial.model"
    partial.write_text(base64.b64encode(b"a").decode() + " 0\n")
    with pytest.raises(KimiConfigurationError, match="single-byte"):
        load_kimi_encoding(partial)
    with pytest.raises(KimiConfigurationError, match="either backend"):
        TokenCounter(backend=ApproximateBackend(), vocab_path=partial)


def test_bad_env_vocab_falls_back_with_one_warning(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reset_fallback_warning: None,
) -> None:
    monkeypatch.setenv("KIMI_TOKENIZER_PATH", str(tmp_path / "nope.model"))
    with pytest.warns(TokenizerFallbackWarning, match="KIMI_TOKENIZER_PATH"):
        counter = TokenCounter()
    assert isinstance(counter.backend, ApproximateBackend)


# ---------------------------------------------------------------------------------------
# Named tiktoken encodings and the offline fallback
# ---------------------------------------------------------------------------------------


def test_named_encoding_download_that_hangs_times_out_and_falls_back_once(
    monkeypatch: pytest.MonkeyPatch,
    reset_fallback_warning: None,
    no_vocab_env: None,
) -> None:
    # tiktoken downloads an uncached vocabulary with no timeout; simulate one that hangs.
    release = threading.Event()
    started = threading.Event()

    def hanging_read(blobpath: str) -> bytes:
        started.set()
        release.wait(30)
        raise OSError(f"simulated network failure for {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", hanging_read)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # no cache: go straight to the "download"
    monkeypatch.setattr(tokens_vocab, "_named_failures", {})
    monkeypatch.delitem(tiktoken.registry.ENCODINGS, "r50k_base", raising=False)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = TokenCounter(encoding="r50k_base", download_timeout=0.3)
            second = TokenCounter(encoding="r50k_base", download_timeout=0.3)  # remembered
            third = TokenCounter()  # no vocabulary configured: no second warning
    finally:
        release.set()
    assert started.is_set()
    fallback = [w for w in caught if issubclass(w.category, TokenizerFallbackWarning)]
    assert len(fallback) == 1
    assert "r50k_base" in str(fallback[0].message)
    assert "0.3s" in str(fallback[0].message)
    assert "KIMI_TOKENIZER_PATH" in str(fallback[0].message)
    for counter in (first, second, third):
        assert isinstance(counter.backend, ApproximateBackend)
        assert counter.count_text("你好世界") == 2


def test_named_encoding_with_empty_cache_offline_falls_back(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reset_fallback_warning: None,
) -> None:
    # The real thing: an empty tiktoken cache makes tiktoken try to download.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(tokens_vocab, "_named_failures", {})
    monkeypatch.delitem(tiktoken.registry.ENCODINGS, "p50k_base", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        counter = TokenCounter(encoding="p50k_base", download_timeout=5)
    if counter.backend.exact:
        pytest.skip("this machine can download tiktoken vocabularies")
    assert isinstance(counter.backend, ApproximateBackend)
    assert any(issubclass(w.category, TokenizerFallbackWarning) for w in caught)


def test_named_encoding_loads_through_tiktoken_registry(
    tiny_vocab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tiktoken plugin constructor, as tiktoken_ext registers for o200k_base etc.
    ranks = load_kimi_encoding(tiny_vocab)._mergeable_ranks

    def constructor() -> dict[str, Any]:
        return {
            "name": "tiny_named",
            "pat_str": KIMI_PAT_STR,
            "mergeable_ranks": ranks,
            "special_tokens": {},
        }

    tiktoken.registry.list_encoding_names()  # make tiktoken load its constructor table
    assert tiktoken.registry.ENCODING_CONSTRUCTORS is not None
    monkeypatch.setitem(tiktoken.registry.ENCODING_CONSTRUCTORS, "tiny_named", constructor)
    monkeypatch.delitem(tiktoken.registry.ENCODINGS, "tiny_named", raising=False)
    monkeypatch.setattr(tokens_vocab, "_named_failures", {})
    counter = TokenCounter(encoding="tiny_named", download_timeout=5)
    assert counter.backend.exact
    assert counter.backend.name == "tiktoken:tiny_named"
    assert counter.count_text("hello world") == 2
    monkeypatch.delitem(tiktoken.registry.ENCODINGS, "tiny_named", raising=False)


def test_unknown_encoding_name_raises_lookup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens_vocab, "_named_failures", {})
    with pytest.raises(LookupError, match="no-such-encoding"):
        TiktokenBackend.from_encoding_name("no-such-encoding", timeout=5)


def _cached_named_encoding() -> tiktoken.Encoding | None:
    try:
        return TiktokenBackend.from_encoding_name("o200k_base", timeout=5).encoding
    except LookupError:
        return None


def test_named_encoding_backend_when_available_offline() -> None:
    encoding = _cached_named_encoding()
    if encoding is None:
        pytest.skip("o200k_base is not in the local tiktoken cache and there is no network")
    counter = TokenCounter(encoding="o200k_base")
    assert counter.backend.exact
    assert counter.count_text("hello world") == len(encoding.encode_ordinary("hello world"))


# ---------------------------------------------------------------------------------------
# What a message costs
# ---------------------------------------------------------------------------------------


def test_message_overhead_and_name() -> None:
    counter = approx_counter()
    text = counter.count_text(ENGLISH)
    assert counter.count_message(HumanMessage(ENGLISH)) == text + counter.message_overhead
    named = counter.count_message(HumanMessage(ENGLISH, name="alice_the_reviewer"))
    assert named > counter.count_message(HumanMessage(ENGLISH))


def test_tool_calls_count_id_name_and_json_args() -> None:
    counter = approx_counter()
    plain = counter.count_message(AIMessage(""))
    call = {"name": "read_file", "args": {"path": "src/app/main.py"}, "id": "functions.read_file:0"}
    one = counter.count_message(AIMessage("", tool_calls=[call]))
    args_tokens = counter.count_text(json.dumps(call["args"]))
    id_tokens = counter.count_text(call["id"])
    name_tokens = counter.count_text(call["name"])
    assert one - plain == (
        counter.tool_calls_overhead
        + counter.tool_call_overhead
        + args_tokens
        + id_tokens
        + name_tokens
    )
    two = counter.count_message(
        AIMessage("", tool_calls=[call, {**call, "id": "functions.read_file:1"}])
    )
    assert two > one
    big_args = {**call, "args": {"path": "x", "content": CODE * 5}}
    assert counter.count_message(AIMessage("", tool_calls=[big_args])) > one + 100
    # Non-ASCII arguments are sent unescaped (ensure_ascii=False) and counted that way.
    zh = {**call, "args": {"query": CHINESE}}
    assert counter.count_message(AIMessage("", tool_calls=[zh])) >= plain + len(CHINESE) * 0.8


def test_invalid_tool_calls_are_counted() -> None:
    counter = approx_counter()
    bad = AIMessage(
        "",
        invalid_tool_calls=[
            {"name": "run", "args": '{"cmd": "ls -la', "id": "call_1", "error": "bad json"}
        ],
    )
    assert counter.count_message(bad) > counter.count_message(AIMessage(""))


def test_tool_message_counts_tool_call_id() -> None:
    counter = approx_counter()
    short = counter.count_message(ToolMessage("ok", tool_call_id="a"))
    long = counter.count_message(ToolMessage("ok", tool_call_id="functions.read_file_lines:12"))
    assert long > short


def test_reasoning_counted_where_it_is_replayed() -> None:
    reasoning = "First I will check the config loader, then the tests. " * 10
    call = {"name": "ls", "args": {}, "id": "ls:0"}
    with_call = AIMessage("", tool_calls=[call], additional_kwargs={"reasoning_content": reasoning})
    bare_call = AIMessage("", tool_calls=[call])
    text_reply = AIMessage("done", additional_kwargs={"reasoning_content": reasoning})
    bare_reply = AIMessage("done")
    counter = approx_counter()  # default: reasoning is replayed on tool-call turns only
    assert counter.count_message(with_call) - counter.count_message(bare_call) == (
        counter.count_text(reasoning)
    )
    assert counter.count_message(text_reply) == counter.count_message(bare_reply)
    everything = approx_counter(reasoning="all")
    assert everything.count_message(text_reply) - everything.count_message(bare_reply) == (
        everything.count_text(reasoning)
    )
    nothing = approx_counter(reasoning="none")
    assert nothing.count_message(with_call) == nothing.count_message(bare_call)
    # Reasoning content blocks are used when there is no reasoning_content.
    blocks = AIMessage(
        [{"type": "reasoning", "reasoning": reasoning}, {"type": "text", "text": "x"}],
        tool_calls=[call],
    )
    plain = AIMessage([{"type": "text", "text": "x"}], tool_calls=[call])
    assert counter.count_message(blocks) - counter.count_message(plain) == (
        counter.count_text(reasoning)
    )
    assert nothing.count_message(blocks) == nothing.count_message(plain)
    with pytest.raises(KimiConfigurationError, match="reasoning"):
        approx_counter(reasoning="some")


def test_content_blocks_text_and_images() -> None:
    counter = approx_counter(image_tokens=777)
    as_str = counter.count_message(HumanMessage(CHINESE))
    as_blocks = counter.count_message(HumanMessage([{"type": "text", "text": CHINESE}]))
    assert as_blocks == as_str
    with_image = HumanMessage(
        [
            {"type": "text", "text": CHINESE},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ]
    )
    assert counter.count_message(with_image) == as_str + 777


def test_remove_message_counts_zero_and_message_likes_are_converted() -> None:
    counter = approx_counter()
    assert counter.count_message(RemoveMessage(id="x")) == 0
    as_dicts = counter.count_messages([{"role": "user", "content": ENGLISH}])
    assert as_dicts == counter.count_messages([HumanMessage(ENGLISH)])
    with pytest.raises(TypeError, match="sequence of messages"):
        counter.count_messages("hello")  # type: ignore[arg-type]


def test_count_messages_adds_priming_and_tools_once() -> None:
    counter = approx_counter()
    msgs: list[BaseMessage] = [SystemMessage("You are helpful."), HumanMessage(ENGLISH)]
    per_message = sum(counter.count_message(m) for m in msgs)
    assert counter.count_messages(msgs) == per_message + counter.reply_priming
    assert counter(msgs) == per_message
    assert counter.count_messages([]) == 0


# ---------------------------------------------------------------------------------------
# Tool schemas
# ---------------------------------------------------------------------------------------


@tool
def search_code(query: str, max_results: int = 10) -> str:
    """Search the repository for code matching a query.

    Args:
        query: Text or regex to search for.
        max_results: Maximum number of hits.
    """
    return query


class WriteFile(BaseModel):
    """Write a file in the workspace."""

    path: str = Field(description="Path relative to the workspace root")
    content: str = Field(description="Full new content of the file")


def run_tests(pattern: str) -> str:
    """Run the test-suite for files matching a glob pattern."""
    return pattern


def test_tools_in_every_form_are_counted_like_their_openai_schema() -> None:
    counter = approx_counter()
    for item in (search_code, WriteFile, run_tests):
        schema = convert_to_openai_tool(item)
        expected = counter.count_text(json.dumps(schema, ensure_ascii=False))
        assert counter.count_tools([item]) == counter.tools_overhead + counter.tool_overhead + (
            expected
        )
        assert counter.count_tools([item]) == counter.count_tools([schema])
    builtin = {"type": "builtin_function", "function": {"name": "$web_search"}}
    assert counter.count_tools([builtin]) > counter.tools_overhead
    assert counter.count_tools([]) == 0


def test_tool_schemas_are_part_of_the_request_count() -> None:
    counter = approx_counter()
    msgs = [HumanMessage("Find the config loader")]
    tools = [search_code, WriteFile, run_tests]
    total = counter.count_messages(msgs, tools=tools)
    assert total == counter.count_messages(msgs) + counter.count_tools(tools)
    assert counter.count_tools(tools) > 100  # three documented schemas are not free


def test_uncountable_tool_raises_clear_error() -> None:
    with pytest.raises(KimiConfigurationError, match="Cannot count tool"):
        approx_counter().count_tools([42])


# ---------------------------------------------------------------------------------------
# Incremental counting: the memo and the running totals
# ---------------------------------------------------------------------------------------


def make_history(n: int) -> list[BaseMessage]:
    history: list[BaseMessage] = [SystemMessage("You are a coding agent.")]
    for i in range(n):
        if i % 3 == 0:
            history.append(HumanMessage(f"{CHINESE} step {i}", id=f"h{i}"))
        elif i % 3 == 1:
            call = {"name": "read_file", "args": {"path": f"f{i}.py"}, "id": f"read:{i}"}
            history.append(AIMessage(f"Reading file {i}", tool_calls=[call], id=f"a{i}"))
        else:
            history.append(ToolMessage(CODE + f"# {i}", tool_call_id=f"read:{i - 1}", id=f"t{i}"))
    return history


def test_append_one_message_tokenises_only_that_message() -> None:
    spy = SpyBackend()
    counter = TokenCounter(backend=spy)
    history = make_history(300)
    first = counter.count_messages(history)
    assert spy.calls  # the cold count tokenised everything
    spy.calls.clear()
    assert counter.count_messages(history) == first
    assert spy.calls == []  # recount: nothing tokenised
    new = HumanMessage("Now run the tests please, 然后告诉我结果。")
    grown = [*history, new]
    assert counter.count_messages(grown) == first + counter.count_message(new)
    assert spy.calls == [new.content]  # only the new message's text
    assert counter.count_messages(grown) == TokenCounter(
        backend=ApproximateBackend()
    ).count_messages(grown)


def test_rebuilt_list_of_equal_messages_hits_the_memo() -> None:
    spy = SpyBackend()
    counter = TokenCounter(backend=spy)
    history = make_history(60)
    total = counter.count_messages(history)
    spy.calls.clear()
    copies = [m.model_copy() for m in history]  # new objects, same ids and content
    assert counter.count_messages(copies) == total
    assert spy.calls == []


def test_changed_message_with_same_id_is_recounted() -> None:
    spy = SpyBackend()
    counter = TokenCounter(backend=spy)
    history = make_history(30)
    counter.count_messages(history)
    spy.calls.clear()
    target = history[10]
    edited = target.model_copy(update={"content": "short now"})
    assert edited.id == target.id
    changed = [*history[:10], edited, *history[11:]]
    expected = approx_counter().count_messages(changed)
    assert counter.count_messages(changed) == expected
    assert spy.calls == ["short now"]


def test_fields_reassigned_in_place_are_detected() -> None:
    counter = approx_counter()
    history = make_history(30)
    counter.count_messages(history)
    before = counter.count_messages(history)
    history[4].content = CHINESE * 3  # same object, new content
    assert counter.count_messages(history) == approx_counter().count_messages(history)
    assert counter.count_messages(history) != before
    ai = next(m for m in history if isinstance(m, AIMessage))
    ai.tool_calls = [{"name": "run", "args": {"cmd": CODE}, "id": "run:9", "type": "tool_call"}]
    assert counter.count_messages(history) == approx_counter().count_messages(history)
    before = counter.count_messages(history)
    ai.additional_kwargs = {"reasoning_content": ENGLISH * 4}  # replayed on tool-call turns
    assert counter.count_messages(history) == approx_counter().count_messages(history)
    assert counter.count_messages(history) > before


def test_rebuilt_system_prompt_reuses_the_running_totals() -> None:
    spy = SpyBackend()
    counter = TokenCounter(backend=spy)
    history = make_history(200)
    counter.count_messages(history)
    spy.calls.clear()
    same_prompt = [SystemMessage(history[0].content), *history[1:]]
    assert counter.count_messages(same_prompt) == approx_counter().count_messages(same_prompt)
    assert spy.calls == []
    other_prompt = [SystemMessage("You are a careful reviewer."), *history[1:]]
    assert counter.count_messages(other_prompt) == approx_counter().count_messages(other_prompt)
    assert spy.calls == ["You are a careful reviewer."]


def test_concurrent_sessions_share_one_counter_correctly() -> None:
    counter = approx_counter(snapshot_count=8)
    reference = approx_counter()
    histories = [make_history(60 + 10 * i) for i in range(4)]
    expected = [[reference.count_messages(h[:n]) for n in range(1, len(h) + 1)] for h in histories]
    results: list[list[int]] = [[] for _ in histories]

    def session(i: int) -> None:
        history = histories[i]
        for n in range(1, len(history) + 1):
            results[i].append(counter.count_messages(history[:n]))

    threads = [threading.Thread(target=session, args=(i,)) for i in range(len(histories))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == expected


def test_repeated_count_message_answers_from_identity_cache() -> None:
    spy = SpyBackend()
    counter = TokenCounter(backend=spy)
    msg = HumanMessage(CHINESE, name="alice")
    first = counter.count_message(msg)
    spy.calls.clear()
    assert counter.count_message(msg) == first
    assert spy.calls == []
    msg.name = "a_much_longer_reviewer_name"  # reassigned field: recounted
    assert counter.count_message(msg) == approx_counter().count_message(msg)
    assert counter.count_message(msg) != first


def test_identity_cache_never_keeps_messages_alive() -> None:
    counter = approx_counter()
    msg = HumanMessage(ENGLISH * 100)
    counter.count_message(msg)
    ref = weakref.ref(msg)
    assert len(counter._ident) == 1
    del msg
    gc.collect()
    assert ref() is None
    assert len(counter._ident) == 0


def test_memo_is_bounded() -> None:
    counter = approx_counter(cache_size=10, snapshot_count=2)
    kept = [HumanMessage(f"message {i}") for i in range(50)]
    for msg in kept:
        counter.count_messages([msg])
    assert len(counter._memo) <= 10
    assert len(counter._ident) <= 10
    assert len(counter._snapshots) <= 2


ops = st.lists(
    st.tuples(
        st.sampled_from(["append", "pop", "replace", "truncate", "same", "copy", "new_head"]),
        st.integers(0, 10_000),
    ),
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(ops)
def test_incremental_total_always_equals_a_fresh_count(operations: list[tuple[str, int]]) -> None:
    counter = approx_counter(snapshot_count=4)
    history: list[BaseMessage] = make_history(8)
    for op, seed in operations:
        if op == "append":
            history = [*history, HumanMessage(f"{ENGLISH[: seed % 80]} {seed}")]
        elif op == "pop" and len(history) > 1:
            history = history[:-1]
        elif op == "replace" and history:
            i = seed % len(history)
            replacement = AIMessage(f"replaced {seed} {CHINESE[: seed % 40]}")
            history = [*history[:i], replacement, *history[i + 1 :]]
        elif op == "truncate" and len(history) > 2:
            history = history[: 1 + seed % (len(history) - 1)]
        elif op == "copy":
            history = list(history)
        elif op == "new_head":  # a system prompt rebuilt on every call
            history = [SystemMessage(f"You are agent {seed % 3}."), *history[1:]]
        assert counter.count_messages(history) == approx_counter().count_messages(history)
        assert counter(history[1:]) == approx_counter()(history[1:])


def test_usable_as_trim_messages_token_counter() -> None:
    counter = approx_counter()
    history = make_history(40)
    trimmed = trim_messages(history, max_tokens=800, token_counter=counter, strategy="last")
    assert 0 < len(trimmed) < len(history)
    assert counter(trimmed) <= 800


# ---------------------------------------------------------------------------------------
# Default counter and the chat-model helper
# ---------------------------------------------------------------------------------------


def test_default_counter_is_shared_and_replaceable() -> None:
    previous = default_token_counter()
    try:
        mine = approx_counter()
        set_default_token_counter(mine)
        assert default_token_counter() is mine
        msgs = [HumanMessage(CHINESE)]
        assert count_tokens_for_model(msgs, model="kimi-k2.6") == mine.count_messages(msgs)
        assert count_tokens_for_model(msgs, [WriteFile]) == mine.count_messages(msgs, [WriteFile])
    finally:
        set_default_token_counter(previous)
    with pytest.raises(TypeError):
        set_default_token_counter("counter")  # type: ignore[arg-type]


def test_public_names_exported() -> None:
    for name in (
        "TokenCounter",
        "TokenCalibrator",
        "ContextSizeTracker",
        "default_token_counter",
        "count_tokens_for_model",
    ):
        assert name in langchain_kimi_context.__all__
        assert getattr(langchain_kimi_context, name) is getattr(tokens_mod, name)


# ---------------------------------------------------------------------------------------
# Calibration (pure; the emulator tests are in tests/integration_tests)
# ---------------------------------------------------------------------------------------


def test_calibrator_converges_bounded_and_smoothed() -> None:
    cal = TokenCalibrator()
    assert cal.apply(1000) == 1000
    cal.observe(1000, 1300)
    assert cal.factor == pytest.approx(1.3)
    for _ in range(3):
        cal.observe(1000, 1250)
    assert cal.factor == pytest.approx(1.25, abs=0.01)
    before = cal.factor
    cal.observe(1000, 10_000)  # one absurd reply moves it only part of the way, bounded
    assert before < cal.factor <= 2.0
    assert cal.factor < 1.8
    fresh = TokenCalibrator()
    fresh.observe(1000, 100)
    assert fresh.factor == 0.5
    assert fresh.observe(0, 100) == 0.5  # ignored
    assert fresh.observations == 1


def test_calibrator_rejects_bad_settings() -> None:
    with pytest.raises(KimiConfigurationError, match="smoothing"):
        TokenCalibrator(smoothing=0)
    with pytest.raises(KimiConfigurationError, match="min_factor"):
        TokenCalibrator(min_factor=1.5)


def test_tracker_uses_server_usage_plus_calibrated_delta() -> None:
    counter = approx_counter()
    tracker = ContextSizeTracker(counter)
    history = make_history(40)
    raw = counter.count_messages(history, [WriteFile])
    tracker.record_usage(history, prompt_tokens=round(raw * 1.2), tools=[WriteFile])
    assert tracker.factor == pytest.approx(1.2, abs=0.01)
    assert tracker.current_size(history, [WriteFile]) == round(raw * 1.2)
    reply = AIMessage("The loader reads TOML; 我会补上测试。")
    grown = [*history, reply]
    delta = counter.count_message(reply)
    assert tracker.current_size(grown, [WriteFile]) == round(raw * 1.2) + round(delta * 1.2)
    # Dropping the tools shrinks the size by their calibrated cost.
    no_tools = tracker.current_size(grown)
    assert no_tools == round(raw * 1.2) + round((delta - counter.count_tools([WriteFile])) * 1.2)


def test_tracker_falls_back_to_estimate_after_history_rewrite() -> None:
    counter = approx_counter()
    tracker = ContextSizeTracker(counter)
    history = make_history(40)
    tracker.record_usage(history, prompt_tokens=counter.count_messages(history) * 2)
    compacted = [history[0], AIMessage("summary of the work so far", id="sum"), *history[-3:]]
    assert tracker.current_size(compacted) == tracker.estimate(compacted)
    assert tracker.estimate(compacted) == round(counter.count_messages(compacted) * 2)
    # A shorter list than the anchor is also a rewrite.
    assert tracker.current_size(history[:5]) == tracker.estimate(history[:5])


def test_tracker_round_trips_through_a_small_json_dict() -> None:
    counter = approx_counter()
    tracker = ContextSizeTracker(counter)
    history = make_history(20)
    tracker.record_usage(history, prompt_tokens=5000)
    state = tracker.to_dict()
    text = json.dumps(state)
    assert len(text) < 400
    assert "reading" not in text.lower()  # no message content in the checkpoint
    restored = ContextSizeTracker.from_dict(json.loads(text), counter)
    grown = [*history, HumanMessage("next")]
    assert restored.current_size(grown) == tracker.current_size(grown)
    assert restored.last_prompt_tokens == 5000
    with pytest.raises(ValueError, match="ContextSizeTracker state"):
        ContextSizeTracker.from_dict({"version": 99})


def test_tracker_records_from_usage_metadata() -> None:
    tracker = ContextSizeTracker(approx_counter())
    history = make_history(5)
    no_usage = AIMessage("hi")
    assert not tracker.record_response(history, no_usage)
    reply = AIMessage(
        "hi", usage_metadata={"input_tokens": 321, "output_tokens": 5, "total_tokens": 326}
    )
    assert tracker.record_response(history, reply)
    assert tracker.last_prompt_tokens == 321
    with pytest.raises(ValueError, match="prompt_tokens"):
        tracker.record_usage(history, -1)


def test_fallback_without_a_requested_vocabulary_is_one_info_line(
    caplog: pytest.LogCaptureFixture,
    reset_fallback_warning: None,
    no_vocab_env: None,
) -> None:
    # Having no vocabulary configured is the normal case: one INFO log line per process,
    # no warning (it used to print a warning paragraph on every run).
    with (
        caplog.at_level(logging.DEBUG, logger="langchain_kimi_context"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        TokenCounter()
        TokenCounter()  # already reported: only a DEBUG line
    assert not [w for w in caught if issubclass(w.category, TokenizerFallbackWarning)]
    info = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(info) == 1
    assert "no tokenizer vocabulary" in info[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_fallback_warns_when_the_requested_vocabulary_is_unusable_after_an_info_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    reset_fallback_warning: None,
    no_vocab_env: None,
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="langchain_kimi_context"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        TokenCounter()  # nothing asked for: the INFO line
        monkeypatch.setenv("KIMI_TOKENIZER_PATH", str(tmp_path / "nope.model"))
        TokenCounter()  # asked for and unusable: the warning, once
        TokenCounter()
    assert [w.category for w in caught] == [TokenizerFallbackWarning]
    assert "KIMI_TOKENIZER_PATH" in str(caught[0].message)
    assert len([r for r in caplog.records if r.levelno == logging.INFO]) == 1
