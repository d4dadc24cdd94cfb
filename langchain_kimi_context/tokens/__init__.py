"""Token accounting: fast, incremental, and calibrated to what the Kimi server bills.

Every context decision (guard, history limit, truncation, compaction trigger) needs the
size of a request before it is sent. This module provides:

* :class:`TokenCounter`: counts a LangChain message list the way Kimi's chat template
  renders it: text, content blocks, names, tool calls (id + name + JSON arguments),
  tool-call ids of tool results, ``reasoning_content`` that is replayed, tool schemas and
  a per-message overhead. Per-message counts are memoised, and the running totals of
  the lists it saw are kept, so re-counting a history that grew by one message only
  tokenises that message.
* Backends: :class:`TiktokenBackend` (a named tiktoken encoding, or a Kimi
  ``tiktoken.model`` vocabulary loaded with Kimi's own split pattern) and
  :class:`ApproximateBackend` (no vocabulary needed; about one token per Han / Kana /
  Hangul character and about four characters per token for Latin text). When no
  vocabulary is available the counter falls back to the approximate backend with one
  :class:`TokenizerFallbackWarning` per process.
* :class:`TokenCalibrator` and :class:`ContextSizeTracker`: a per-session correction
  factor learned from the server-reported ``prompt_tokens``, and the current context
  size as "last server usage + calibrated estimate of what was appended since".
* :func:`count_tokens_exact` / :func:`acount_tokens_exact`: the exact count from
  ``POST /v1/tokenizers/estimate-token-count`` (a network call, only when asked).

Example:
    >>> from langchain_core.messages import AIMessage, HumanMessage
    >>> counter = TokenCounter(backend=ApproximateBackend())
    >>> history = [HumanMessage("请帮我看看这个函数"), AIMessage("好的")]
    >>> counter.count_messages(history) > counter.count_text("请帮我看看这个函数")
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import operator
import os
import re
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    RemoveMessage,
    ToolMessage,
    convert_to_messages,
    convert_to_openai_messages,
)
from pydantic import SecretStr

from langchain_kimi_context.errors import KimiConfigurationError

if TYPE_CHECKING:
    import httpx
    import tiktoken

__all__ = [
    "KIMI_PAT_STR",
    "KIMI_TOKENIZER_PATH_ENV",
    "ApproximateBackend",
    "ContextSizeTracker",
    "TiktokenBackend",
    "TokenCalibrator",
    "TokenCounter",
    "TokenizerBackend",
    "TokenizerFallbackWarning",
    "acount_tokens_exact",
    "count_tokens_exact",
    "count_tokens_for_model",
    "default_token_counter",
    "load_kimi_encoding",
    "set_default_token_counter",
]

logger = logging.getLogger(__name__)

#: Environment variable naming a Kimi ``tiktoken.model`` vocabulary file.
KIMI_TOKENIZER_PATH_ENV = "KIMI_TOKENIZER_PATH"

#: The pre-tokenisation split pattern of Kimi's tiktoken tokenizer (``tokenization_kimi.py``
#: in the MoonshotAI Kimi-K2 model repositories). Han runs are split from other letters.
KIMI_PAT_STR = "|".join(
    [
        r"""[\p{Han}]+""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*"""
        r"""[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+"""
        r"""[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

#: Kimi reserves this many special-token ids after the mergeable ranks (plus two).
_KIMI_NUM_RESERVED_SPECIAL = 256

#: tiktoken is slow on very long runs of (non-)whitespace; Kimi's tokenizer splits them.
_MAX_RUN_CHARS = 25_000
_LONG_RUN = re.compile(r"\S{%d,}|\s{%d,}" % (_MAX_RUN_CHARS, _MAX_RUN_CHARS))  # noqa: UP031


class TokenizerFallbackWarning(UserWarning):
    """Issued once per process when no tokenizer vocabulary is available.

    The counter then uses :class:`ApproximateBackend`; a :class:`TokenCalibrator`
    corrects its bias against what the server bills.

    Example:
        >>> issubclass(TokenizerFallbackWarning, UserWarning)
        True
    """


_fallback_lock = threading.Lock()
_fallback_warned = False


def _warn_fallback(reason: str) -> None:
    """Warn (once per process) that the approximate backend is used."""
    global _fallback_warned
    with _fallback_lock:
        if _fallback_warned:
            logger.debug("approximate token counting: %s", reason)
            return
        _fallback_warned = True
    message = (
        f"langchain-kimi-context: {reason}; token counts use the approximate CJK-aware "
        f"counter (calibrated against server usage when a ContextSizeTracker is used). "
        f"For exact local counts set {KIMI_TOKENIZER_PATH_ENV} to a Kimi tiktoken.model "
        f"file, or pass TokenCounter(vocab_path=...) / TokenCounter(encoding=...)."
    )
    # One user-visible report: the warning (filterable by category). A WARNING log
    # record too would reach stderr a second time through logging's last-resort handler
    # and could not be silenced with warnings filters.
    logger.info(message)
    warnings.warn(message, TokenizerFallbackWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------


@runtime_checkable
class TokenizerBackend(Protocol):
    """What :class:`TokenCounter` needs from a tokenizer: a name and a text count.

    Example:
        >>> isinstance(ApproximateBackend(), TokenizerBackend)
        True
    """

    @property
    def name(self) -> str:
        """A short description of the backend (e.g. ``"tiktoken:o200k_base"``)."""
        ...

    @property
    def exact(self) -> bool:
        """Whether counts come from a real vocabulary (``False`` for estimates)."""
        ...

    def count(self, text: str) -> int:
        """Return the number of tokens of ``text`` (no special tokens).

        Example:
            >>> backend: TokenizerBackend = ApproximateBackend()
            >>> backend.count("上下文")
            2
        """
        ...


def _split_long_runs(text: str) -> list[str]:
    """Split ``text`` so no piece has a run of more than ``_MAX_RUN_CHARS`` (non-)spaces."""
    if len(text) <= _MAX_RUN_CHARS or _LONG_RUN.search(text) is None:
        return [text]
    pieces: list[str] = []
    start = 0
    for match in _LONG_RUN.finditer(text):
        if match.start() > start:
            pieces.append(text[start : match.start()])
        run = match.group()
        pieces.extend(run[i : i + _MAX_RUN_CHARS] for i in range(0, len(run), _MAX_RUN_CHARS))
        start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


class TiktokenBackend:
    """Exact counts from a ``tiktoken.Encoding`` (a named encoding or a Kimi vocabulary).

    Special-token strings in the text are counted as ordinary text, which is what the
    server does with user content.

    Args:
        encoding: The loaded encoding.
        name: Description used in :attr:`name` (defaults to ``"tiktoken:<encoding name>"``).

    Example:
        >>> import tiktoken
        >>> ranks = {bytes([b]): b for b in range(256)}
        >>> ranks[b"ab"] = 256
        >>> enc = tiktoken.Encoding(
        ...     name="tiny", pat_str=KIMI_PAT_STR, mergeable_ranks=ranks, special_tokens={}
        ... )
        >>> TiktokenBackend(enc).count("abab")
        2
    """

    def __init__(self, encoding: tiktoken.Encoding, *, name: str | None = None) -> None:
        self._encoding = encoding
        self._name = name or f"tiktoken:{encoding.name}"

    @property
    def name(self) -> str:
        """Backend description."""
        return self._name

    @property
    def exact(self) -> bool:
        """Always ``True``: counts come from a vocabulary."""
        return True

    @property
    def encoding(self) -> tiktoken.Encoding:
        """The underlying ``tiktoken.Encoding``."""
        return self._encoding

    def count(self, text: str) -> int:
        """Return the number of tokens of ``text``.

        Args:
            text: Any string.

        Returns:
            The token count.

        Example:
            >>> import tiktoken
            >>> ranks = {bytes([b]): b for b in range(256)}
            >>> enc = tiktoken.Encoding(
            ...     name="bytes", pat_str=KIMI_PAT_STR, mergeable_ranks=ranks, special_tokens={}
            ... )
            >>> TiktokenBackend(enc).count("héllo")  # one token per UTF-8 byte here
            6
        """
        if not text:
            return 0
        encode = self._encoding.encode_ordinary
        pieces = _split_long_runs(text)
        if len(pieces) == 1:
            return len(encode(text))
        return sum(len(encode(piece)) for piece in pieces)

    @classmethod
    def from_kimi_vocab(cls, path: str | os.PathLike[str]) -> TiktokenBackend:
        """Load a Kimi ``tiktoken.model`` file (see :func:`load_kimi_encoding`).

        Args:
            path: Path of the vocabulary file.

        Returns:
            The backend.

        Example:
            >>> TiktokenBackend.from_kimi_vocab("/models/kimi/tiktoken.model")  # doctest: +SKIP
        """
        encoding = load_kimi_encoding(path)
        return cls(encoding, name=f"kimi:{Path(path).name}")

    @classmethod
    def from_encoding_name(cls, name: str, *, timeout: float = 10.0) -> TiktokenBackend:
        """Load a named tiktoken encoding (e.g. ``"o200k_base"``), failing fast offline.

        tiktoken downloads a vocabulary it has not cached, with no timeout. The load runs
        in a daemon thread and is abandoned after ``timeout`` seconds; a failed or
        timed-out load is remembered for the rest of the process, so it costs once.

        Args:
            name: The tiktoken encoding name.
            timeout: Seconds to wait for a load that has to download.

        Returns:
            The backend.

        Raises:
            LookupError: The encoding could not be loaded (unknown name, no network,
                timeout); the message says why.

        Example:
            >>> TiktokenBackend.from_encoding_name("o200k_base")  # doctest: +SKIP
        """
        return cls(_load_named_encoding(name, timeout), name=f"tiktoken:{name}")


_named_lock = threading.Lock()
_named_failures: dict[str, str] = {}


def _load_named_encoding(name: str, timeout: float) -> tiktoken.Encoding:
    import tiktoken
    import tiktoken.registry

    loaded = tiktoken.registry.ENCODINGS.get(name)
    if loaded is not None:
        return loaded
    with _named_lock:
        if name in _named_failures:
            raise LookupError(_named_failures[name])
    result: dict[str, Any] = {}

    def load() -> None:
        try:
            result["encoding"] = tiktoken.get_encoding(name)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=load, name=f"tiktoken-load-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if "encoding" in result:
        encoding: tiktoken.Encoding = result["encoding"]
        return encoding
    if thread.is_alive():
        reason = (
            f"tiktoken encoding {name!r} is not cached and could not be downloaded within "
            f"{timeout:g}s (offline?)"
        )
    else:
        error = result.get("error")
        reason = f"tiktoken encoding {name!r} could not be loaded ({type(error).__name__})"
    with _named_lock:
        _named_failures[name] = reason
    raise LookupError(reason)


_kimi_lock = threading.Lock()
_kimi_encodings: dict[tuple[str, str], tiktoken.Encoding] = {}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _kimi_special_token_names(vocab: Path) -> dict[int, str]:
    """Read ``added_tokens_decoder`` from a ``tokenizer_config.json`` next to ``vocab``."""
    config = vocab.with_name("tokenizer_config.json")
    if not config.is_file():
        return {}
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        decoder = data.get("added_tokens_decoder") or {}
        return {int(i): str(tok["content"]) for i, tok in decoder.items() if "content" in tok}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        logger.warning("ignoring unreadable %s: %s", config, exc)
        return {}


def load_kimi_encoding(path: str | os.PathLike[str]) -> tiktoken.Encoding:
    """Load a Kimi ``tiktoken.model`` vocabulary as a ``tiktoken.Encoding``.

    The file has one ``<base64 token> <rank>`` per line (as shipped in the MoonshotAI
    Kimi-K2 model repositories). It is parsed with ``tiktoken.load.load_tiktoken_bpe``;
    the split pattern is Kimi's (:data:`KIMI_PAT_STR`) and the 258 special-token ids
    after the ranks are named from a ``tokenizer_config.json`` in the same folder when
    present (reserved names otherwise), like Kimi's own tokenizer does. Loaded
    encodings are kept per (path, file hash), so a replaced file is reloaded.

    Args:
        path: Path of the ``tiktoken.model`` file.

    Returns:
        The encoding.

    Raises:
        KimiConfigurationError: The file does not exist or is not a tiktoken vocabulary.

    Example:
        >>> load_kimi_encoding("/models/kimi/tiktoken.model")  # doctest: +SKIP
    """
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    vocab = Path(path).expanduser()
    if not vocab.is_file():
        raise KimiConfigurationError(
            f"Kimi tokenizer vocabulary not found at {str(vocab)!r}: point vocab_path (or "
            f"{KIMI_TOKENIZER_PATH_ENV}) at the tiktoken.model file of a Kimi model "
            f"repository (e.g. moonshotai/Kimi-K2-Instruct)."
        )
    digest = _sha256_file(vocab)
    cache_key = (str(vocab.resolve()), digest)
    with _kimi_lock:
        cached = _kimi_encodings.get(cache_key)
    if cached is not None:
        return cached
    try:
        # The expected hash makes tiktoken's path-keyed cache notice a replaced file.
        ranks = load_tiktoken_bpe(str(vocab), expected_hash=digest)
    except ValueError as exc:
        raise KimiConfigurationError(
            f"{str(vocab)!r} is not a tiktoken vocabulary (expected lines of "
            f"'<base64 token> <rank>'): {exc}"
        ) from exc
    if not ranks:
        raise KimiConfigurationError(f"Kimi tokenizer vocabulary {str(vocab)!r} is empty.")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise KimiConfigurationError(
            f"{str(vocab)!r} lacks {len(missing)} single-byte tokens (e.g. byte {missing[0]}); "
            f"a byte-level BPE vocabulary needs all 256."
        )
    base = max(ranks.values()) + 1
    names = _kimi_special_token_names(vocab)
    specials = {
        names.get(i, f"<|reserved_token_{i}|>"): i
        for i in range(base, base + _KIMI_NUM_RESERVED_SPECIAL + 2)
    }
    encoding = tiktoken.Encoding(
        name=vocab.name, pat_str=KIMI_PAT_STR, mergeable_ranks=ranks, special_tokens=specials
    )
    with _kimi_lock:
        _kimi_encodings[cache_key] = encoding
    return encoding


def _class_tables() -> tuple[bytes, bytes, dict[bytes, bytes]]:
    """Byte tables of the approximate backend.

    The text is UTF-8 encoded and every character mapped to one class byte (UTF-8
    continuation bytes are deleted): ``a`` ASCII letter or ``_``, ``0`` digit, ``p``
    ASCII punctuation, ``s`` space/tab, ``n`` line break, ``o`` a 2-byte character
    (accented Latin, Greek, Cyrillic, Hebrew, Arabic), ``C`` a 3-byte character (Han,
    Kana, Hangul, CJK and full-width punctuation, other BMP symbols), ``E`` a 4-byte
    character (emoji, rare Han). Per class, a mask table gives 0/1 bytes whose
    big-endian integer lets runs be counted with shifts and ``int.bit_count`` at C speed
    (``bits & ~(bits >> 8)`` keeps the first character of each run).
    """
    table = bytearray(256)
    for b in range(256):
        ch = chr(b)
        if b < 128:
            if ch.isalpha() or ch == "_":
                table[b] = ord("a")
            elif ch.isdigit():
                table[b] = ord("0")
            elif ch in "\r\n":
                table[b] = ord("n")
            elif ch.isspace():
                table[b] = ord("s")
            else:
                table[b] = ord("p")
        elif b < 0xC0:
            table[b] = ord("x")  # continuation byte: deleted
        elif b < 0xE0:
            table[b] = ord("o")
        elif b < 0xF0:
            table[b] = ord("C")
        else:
            table[b] = ord("E")
    masks = {}
    for cls in (b"a", b"0", b"p", b"s", b"n", b"o"):
        mask = bytearray(256)
        mask[cls[0]] = 1
        masks[cls] = bytes(mask)
    return bytes(table), bytes(range(0x80, 0xC0)), masks


_CLASS_TABLE, _CONTINUATION, _CLASS_MASKS = _class_tables()


@dataclass(frozen=True)
class ApproximateBackend:
    r"""Vocabulary-free token estimate that handles CJK text and code sensibly.

    Counts, per text: one token per Han / Kana / Hangul / full-width character (any
    3-byte UTF-8 character); one per run of ASCII letters (and ``_``), plus one per
    ``ascii_chars_per_token`` letters beyond the fifth (long words split); digit runs
    in groups of three (as BPE tokenizers split them); punctuation runs, runs of
    2-byte characters (Cyrillic, Greek, accented Latin), line breaks and indentation
    similarly. Single spaces between words are free (BPE merges them into the next
    word). All of it runs at C speed (one UTF-8 encode, byte translations and big-int
    bit counts), so a 1 MB history costs a few milliseconds. Every rate is a field, and
    a :class:`TokenCalibrator` corrects the remaining per-session bias.

    Attributes:
        cjk_tokens_per_char: Tokens per 3-byte character (Han, Kana, Hangul, ...);
            0.6 follows Moonshot's "one token is about 1.5 to 2 Chinese characters".
        ascii_chars_per_token: Letters per extra token beyond the 5th letter of a word.
        digits_per_token: Digits per token inside a digit run.
        punct_chars_per_token: Extra characters per token inside a punctuation run.
        other_chars_per_token: Extra characters per token in runs of 2-byte characters.
        spaces_per_token: Characters per token in runs of two or more spaces/tabs.
        astral_tokens_per_char: Tokens per 4-byte character (emoji, rare Han).

    Example:
        >>> backend = ApproximateBackend()
        >>> backend.count("你好世界"), backend.count("hello world")
        (2, 2)
        >>> backend.count("def f(x):\n    return x + 1\n")
        12
    """

    cjk_tokens_per_char: float = 0.6
    ascii_chars_per_token: float = 4.0
    digits_per_token: float = 3.0
    punct_chars_per_token: float = 3.0
    other_chars_per_token: float = 3.0
    spaces_per_token: float = 8.0
    astral_tokens_per_char: float = 2.0

    def __post_init__(self) -> None:
        for label in (
            "ascii_chars_per_token",
            "digits_per_token",
            "punct_chars_per_token",
            "other_chars_per_token",
            "spaces_per_token",
        ):
            if not getattr(self, label) > 0:
                raise KimiConfigurationError(
                    f"ApproximateBackend: {label} must be > 0, got {getattr(self, label)}."
                )
        for label in ("cjk_tokens_per_char", "astral_tokens_per_char"):
            if not getattr(self, label) >= 0:
                raise KimiConfigurationError(
                    f"ApproximateBackend: {label} must be >= 0, got {getattr(self, label)}."
                )

    @property
    def name(self) -> str:
        """Backend description."""
        return "approximate"

    @property
    def exact(self) -> bool:
        """Always ``False``: counts are estimates."""
        return False

    def count(self, text: str) -> int:
        """Return the estimated number of tokens of ``text``.

        Args:
            text: Any string.

        Returns:
            The estimate (at least 1 for non-empty text).

        Example:
            >>> ApproximateBackend().count("北京 Beijing 2026")
            5
        """
        if not text:
            return 0
        classes = text.encode("utf-8", "surrogatepass").translate(_CLASS_TABLE, _CONTINUATION)
        count = classes.count
        masks = _CLASS_MASKS
        from_bytes = int.from_bytes
        total = 0.0
        letters = count(b"a")
        if letters:
            bits = from_bytes(classes.translate(masks[b"a"]), "big")
            total += (bits & ~(bits >> 8)).bit_count()  # runs
            if letters >= 6:
                # Sum of max(0, L - 5) over runs = positions that end 6 letters in a row.
                two = bits & (bits >> 8)
                six = two & (two >> 16) & (two >> 32)
                total += six.bit_count() / self.ascii_chars_per_token
        chars = count(b"0")
        if chars:
            bits = from_bytes(classes.translate(masks[b"0"]), "big")
            runs = (bits & ~(bits >> 8)).bit_count()
            total += runs + (chars - runs) / self.digits_per_token
        chars = count(b"p")
        if chars:
            bits = from_bytes(classes.translate(masks[b"p"]), "big")
            runs = (bits & ~(bits >> 8)).bit_count()
            total += runs + (chars - runs) / self.punct_chars_per_token
        chars = count(b"o")
        if chars:
            bits = from_bytes(classes.translate(masks[b"o"]), "big")
            runs = (bits & ~(bits >> 8)).bit_count()
            total += runs + (chars - runs) / self.other_chars_per_token
        chars = count(b"n")
        if chars:
            bits = from_bytes(classes.translate(masks[b"n"]), "big")
            total += (bits & ~(bits >> 8)).bit_count()
        if count(b"s") > 1:
            bits = from_bytes(classes.translate(masks[b"s"]), "big")
            pairs = bits & (bits >> 8)  # spaces that follow a space
            if pairs:
                runs = (pairs & ~(pairs >> 8)).bit_count()
                total += pairs.bit_count() / self.spaces_per_token + 0.5 * runs
        total += count(b"C") * self.cjk_tokens_per_char
        total += count(b"E") * self.astral_tokens_per_char
        return max(1, round(total))


def _resolve_backend(
    encoding: str | None, vocab_path: str | os.PathLike[str] | None, timeout: float
) -> TokenizerBackend:
    if vocab_path is not None:
        return TiktokenBackend.from_kimi_vocab(vocab_path)
    if encoding is not None:
        try:
            return TiktokenBackend.from_encoding_name(encoding, timeout=timeout)
        except LookupError as exc:
            _warn_fallback(str(exc))
            return ApproximateBackend()
    env_path = os.environ.get(KIMI_TOKENIZER_PATH_ENV, "").strip()
    if env_path:
        try:
            return TiktokenBackend.from_kimi_vocab(env_path)
        except KimiConfigurationError as exc:
            _warn_fallback(f"{KIMI_TOKENIZER_PATH_ENV} is set but unusable ({exc})")
            return ApproximateBackend()
    _warn_fallback("no tokenizer vocabulary is configured")
    return ApproximateBackend()


# ---------------------------------------------------------------------------------------
# TokenCounter
# ---------------------------------------------------------------------------------------

_IMAGE_BLOCK_TYPES = frozenset({"image_url", "image", "input_image"})
_REASONING_BLOCK_TYPES = frozenset({"reasoning", "thinking"})


@dataclass
class _Snapshot:
    """Running totals of one message list the counter saw (for O(new) recounts)."""

    messages: list[BaseMessage]
    fields: list[tuple[Any, Any]]
    tool_calls: list[Any]
    prefix: list[int] = field(default_factory=lambda: [0])


_FIELDS = operator.attrgetter("content", "additional_kwargs")
_DICT = operator.attrgetter("__dict__")
_GET_TOOL_CALLS = operator.methodcaller("get", "tool_calls")


def _tool_calls_of(messages: Sequence[BaseMessage]) -> list[Any]:
    return list(map(_GET_TOOL_CALLS, map(_DICT, messages)))


def _same_fields(m: BaseMessage, snap: _Snapshot, k: int) -> bool:
    return bool(_FIELDS(m) == snap.fields[k] and m.__dict__.get("tool_calls") == snap.tool_calls[k])


class TokenCounter:
    """Counts LangChain messages and tool schemas the way Kimi's chat template sends them.

    Per message: ``message_overhead`` (role markers), the text of the content (string
    or blocks; images count ``image_tokens``), ``name``, for AI messages each tool call's
    id, name and JSON arguments (``tool_call_overhead`` each, plus
    ``tool_calls_overhead`` per message) and the reasoning that is replayed (see
    ``reasoning``), for tool messages the ``tool_call_id``. A request adds
    ``reply_priming`` once and the tool schemas (:meth:`count_tools`).

    Counting is incremental: per-message counts are memoised in a bounded LRU keyed by
    the message id and a hash of everything counted, and the counter keeps the running
    totals of the last lists it counted (recognised by object identity of the messages
    and of their content, tool calls and ``additional_kwargs``). Re-counting a history
    that grew by one message therefore tokenises only that message; the rest is pointer
    comparisons. Messages are treated as immutable values, as LangChain and LangGraph do:
    reassigning a field (``msg.content = ...``) is detected, but an in-place edit of a
    content list or of the ``additional_kwargs`` dict is not (use
    ``msg.model_copy(update=...)``, or :meth:`clear_cache`).

    Thread-safe; one instance can serve every session of a process (see
    :func:`default_token_counter`).

    Args:
        backend: The tokenizer. Default: ``vocab_path`` / ``encoding`` when given, else
            the Kimi vocabulary named by ``KIMI_TOKENIZER_PATH``, else
            :class:`ApproximateBackend` (with one :class:`TokenizerFallbackWarning`).
        encoding: A tiktoken encoding name (e.g. ``"o200k_base"``); falls back to the
            approximate backend (with the warning) when it cannot be loaded offline.
        vocab_path: A Kimi ``tiktoken.model`` file; a wrong path raises
            :class:`~langchain_kimi_context.errors.KimiConfigurationError`.
        message_overhead: Tokens added per message (role and delimiters).
        tool_call_overhead: Tokens added per tool call (delimiters).
        tool_calls_overhead: Tokens added per AI message that has tool calls.
        tools_overhead: Tokens added once when tool schemas are sent.
        tool_overhead: Tokens added per tool schema.
        reply_priming: Tokens added once per request (the assistant turn header).
        image_tokens: Tokens counted per image block.
        reasoning: Which AI messages' reasoning (``additional_kwargs["reasoning_content"]``,
            else ``reasoning`` content blocks) is counted: ``"tool_calls"`` (default)
            only on messages with tool calls, which is where ``KimiChatModel`` replays it
            (Kimi thinking models require it there and ignore it elsewhere); ``"all"``;
            ``"none"``.
        cache_size: Maximum number of memoised per-message counts.
        snapshot_count: Number of message lists whose running totals are kept.
        download_timeout: Seconds to wait when a named encoding needs downloading.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
        >>> counter = TokenCounter(backend=ApproximateBackend())
        >>> call = {"name": "read_file", "args": {"path": "a.py"}, "id": "functions.read_file:0"}
        >>> history = [
        ...     HumanMessage("Read a.py"),
        ...     AIMessage("", tool_calls=[call]),
        ...     ToolMessage("print('hi')", tool_call_id="functions.read_file:0"),
        ... ]
        >>> total = counter.count_messages(history)
        >>> total == sum(counter.count_message(m) for m in history) + counter.reply_priming
        True
        >>> counter.count_messages(history + [AIMessage("It prints hi.")]) > total
        True
    """

    def __init__(
        self,
        backend: TokenizerBackend | None = None,
        *,
        encoding: str | None = None,
        vocab_path: str | os.PathLike[str] | None = None,
        message_overhead: int = 4,
        tool_call_overhead: int = 3,
        tool_calls_overhead: int = 2,
        tools_overhead: int = 5,
        tool_overhead: int = 1,
        reply_priming: int = 3,
        image_tokens: int = 1_000,
        reasoning: Literal["tool_calls", "all", "none"] = "tool_calls",
        cache_size: int = 32_768,
        snapshot_count: int = 32,
        download_timeout: float = 10.0,
    ) -> None:
        if backend is not None and (encoding is not None or vocab_path is not None):
            raise KimiConfigurationError(
                "TokenCounter: pass either backend=... or encoding=/vocab_path=..., not both."
            )
        for label, value in (
            ("message_overhead", message_overhead),
            ("tool_call_overhead", tool_call_overhead),
            ("tool_calls_overhead", tool_calls_overhead),
            ("tools_overhead", tools_overhead),
            ("tool_overhead", tool_overhead),
            ("reply_priming", reply_priming),
            ("image_tokens", image_tokens),
        ):
            if value < 0:
                raise KimiConfigurationError(f"TokenCounter: {label} must be >= 0, got {value}.")
        if cache_size < 1 or snapshot_count < 1:
            raise KimiConfigurationError(
                "TokenCounter: cache_size and snapshot_count must be >= 1 "
                f"(got {cache_size}, {snapshot_count})."
            )
        if backend is not None and not isinstance(backend, TokenizerBackend):
            raise KimiConfigurationError(
                f"TokenCounter: backend must implement TokenizerBackend (name, exact, "
                f"count(text)); got {type(backend).__name__}."
            )
        self.backend: TokenizerBackend = (
            backend
            if backend is not None
            else _resolve_backend(encoding, vocab_path, download_timeout)
        )
        self.message_overhead = message_overhead
        self.tool_call_overhead = tool_call_overhead
        self.tool_calls_overhead = tool_calls_overhead
        self.tools_overhead = tools_overhead
        self.tool_overhead = tool_overhead
        self.reply_priming = reply_priming
        self.image_tokens = image_tokens
        if reasoning not in ("tool_calls", "all", "none"):
            raise KimiConfigurationError(
                f"TokenCounter: reasoning must be 'tool_calls', 'all' or 'none', got {reasoning!r}."
            )
        self.reasoning = reasoning
        self._cache_size = cache_size
        self._snapshot_count = snapshot_count
        self._lock = threading.RLock()
        self._memo: OrderedDict[tuple[Any, ...], int] = OrderedDict()
        self._tool_memo: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._snapshots: OrderedDict[int, _Snapshot] = OrderedDict()
        self._by_second: dict[int, int] = {}
        self._ident: dict[int, tuple[Any, ...]] = {}
        self._forget = _identity_forgetter(self._ident)

    def __repr__(self) -> str:
        return f"TokenCounter(backend={self.backend.name!r})"

    # -- text ------------------------------------------------------------------------

    def count_text(self, text: str) -> int:
        """Count the tokens of a plain string (no message overhead).

        Args:
            text: Any string.

        Returns:
            The token count.

        Example:
            >>> TokenCounter(backend=ApproximateBackend()).count_text("北京欢迎你")
            3
        """
        return self.backend.count(text)

    # -- messages --------------------------------------------------------------------

    def count_message(self, message: BaseMessage) -> int:
        """Count one message, including its overhead, tool calls and reasoning.

        Memoised by message id and a hash of everything counted (content, tool calls,
        reasoning, name, tool-call id), so a changed message is recounted. A message
        object counted before (and whose fields were not reassigned since) is answered
        from an identity cache without hashing anything.

        Args:
            message: Any LangChain message (``RemoveMessage`` counts 0).

        Returns:
            The token count.

        Example:
            >>> from langchain_core.messages import HumanMessage
            >>> counter = TokenCounter(backend=ApproximateBackend())
            >>> counter.count_message(HumanMessage("hello")) == 1 + counter.message_overhead
            True
        """
        fields = message.__dict__
        ident_key = id(message)
        seen = self._ident.get(ident_key)
        if (
            seen is not None
            and seen[0]() is message
            and seen[1] is fields.get("content")
            and seen[2] is fields.get("additional_kwargs")
            and seen[3] is fields.get("tool_calls")
            and seen[4] is fields.get("name")
            and seen[5] is fields.get("tool_call_id")
        ):
            return seen[6]
        if isinstance(message, RemoveMessage):
            return 0
        key = self._fingerprint(message)
        memo = self._memo
        with self._lock:
            count = memo.get(key)
            if count is not None:
                memo.move_to_end(key)
        if count is None:
            count = self._count_uncached(message)
            with self._lock:
                memo[key] = count
                if len(memo) > self._cache_size:
                    memo.popitem(last=False)
        self._remember(message, fields, count)
        return count

    def _remember(self, message: BaseMessage, fields: dict[str, Any], count: int) -> None:
        """Put ``message`` in the identity cache (a weak reference: it never keeps it alive)."""
        ident = self._ident
        key = id(message)
        try:
            ref = weakref.KeyedRef(message, self._forget, key)
        except TypeError:  # a message class without weak-reference support
            return
        ident[key] = (
            ref,
            fields.get("content"),
            fields.get("additional_kwargs"),
            fields.get("tool_calls"),
            fields.get("name"),
            fields.get("tool_call_id"),
            count,
        )
        if len(ident) > self._cache_size:
            with self._lock:
                while len(ident) > self._cache_size:
                    try:
                        ident.pop(next(iter(ident)))
                    except (StopIteration, KeyError, RuntimeError):
                        break

    def count_messages(
        self,
        messages: Sequence[BaseMessage | Any],
        tools: Sequence[Any] | None = None,
    ) -> int:
        """Count a request: messages, tool schemas and the reply priming.

        Args:
            messages: LangChain messages (anything ``convert_to_messages`` accepts is
                converted, without the incremental fast path).
            tools: Tool schemas sent with the request (see :meth:`count_tools`).

        Returns:
            The token count of the whole prompt (0 for no messages and no tools).

        Example:
            >>> from langchain_core.messages import HumanMessage
            >>> counter = TokenCounter(backend=ApproximateBackend())
            >>> def get_weather(city: str) -> str:
            ...     '''Get the weather of a city.'''
            ...     return "sunny"
            >>> msgs = [HumanMessage("Weather in Paris?")]
            >>> counter.count_messages(msgs, tools=[get_weather]) > counter.count_messages(msgs)
            True
        """
        total = self._sum_messages(messages)
        if tools:
            total += self.count_tools(tools)
        if messages or tools:
            total += self.reply_priming
        return total

    def __call__(self, messages: Sequence[BaseMessage]) -> int:
        """Count ``messages`` (lets the counter be a ``trim_messages`` ``token_counter``).

        Args:
            messages: LangChain messages.

        Returns:
            Sum of :meth:`count_message` over the messages.

        Example:
            >>> from langchain_core.messages import HumanMessage, trim_messages
            >>> counter = TokenCounter(backend=ApproximateBackend())
            >>> msgs = [HumanMessage("一二三四五"), HumanMessage("六七八九十")]
            >>> len(trim_messages(msgs, max_tokens=10, token_counter=counter))
            1
        """
        return self._sum_messages(messages)

    def _totals(self, msgs: Sequence[BaseMessage], at: int = 0) -> tuple[int, int]:
        """Return ``(tokens of msgs, tokens of msgs[:at])`` (sums of :meth:`count_message`).

        Reuses the running totals of an earlier list that shares a prefix with ``msgs``
        (the same message objects, whose content / ``additional_kwargs`` / tool calls
        still equal what was counted), so only the messages after that prefix are
        counted. The prefix check runs at C speed (``map`` over ``operator`` functions).
        A list whose first message is a new object but whose second is known (a system
        prompt rebuilt on every call) reuses the totals too.

        Raises:
            _NotMessagesError: A message to count is not a ``BaseMessage``.
        """
        if not isinstance(msgs, (list, tuple)):
            msgs = list(msgs)
        n = len(msgs)
        with self._lock:
            snap = self._snapshot_for(msgs)
            old = snap.messages
            limit = min(n, len(old))
            head = msgs[:limit]
            whole = limit == len(old)
            if (
                all(map(operator.is_, head, old))
                and list(map(_FIELDS, head)) == (snap.fields if whole else snap.fields[:limit])
                and _tool_calls_of(head) == (snap.tool_calls if whole else snap.tool_calls[:limit])
            ):
                k = limit
            else:
                k = 0
                while k < limit and msgs[k] is old[k] and _same_fields(msgs[k], snap, k):
                    k += 1
            if k < n:
                new = msgs[k:]
                if not all(map(isinstance, new, repeat(BaseMessage))):
                    raise _NotMessagesError
                if k < len(old):
                    del old[k:], snap.fields[k:], snap.tool_calls[k:], snap.prefix[k + 1 :]
                prefix = snap.prefix
                running = prefix[k]
                for m in new:
                    running += self.count_message(m)
                    prefix.append(running)
                    old.append(m)
                tail = old[k:]
                snap.fields.extend(map(_FIELDS, tail))
                snap.tool_calls.extend(_tool_calls_of(tail))
                if k < 2 <= len(old):
                    self._by_second[id(old[1])] = id(old[0])
            return snap.prefix[n], snap.prefix[at]

    def _snapshot_for(self, msgs: Sequence[BaseMessage]) -> _Snapshot:
        """Find (or create) the running totals to reuse for ``msgs`` (lock held)."""
        first = msgs[0]
        key = id(first)
        snaps = self._snapshots
        snap = snaps.get(key)
        if snap is not None and snap.messages and snap.messages[0] is first:
            snaps.move_to_end(key)
            return snap
        if len(msgs) > 1:
            old_key = self._by_second.get(id(msgs[1]), -1)
            candidate = snaps.get(old_key)
            if (
                candidate is not None
                and len(candidate.messages) > 1
                and candidate.messages[1] is msgs[1]
                and isinstance(first, BaseMessage)
            ):
                # Same history behind a new head object: swap the head, shift the totals.
                delta = self.count_message(first) - candidate.prefix[1]
                if delta:
                    candidate.prefix[1:] = [p + delta for p in candidate.prefix[1:]]
                candidate.messages[0] = first
                candidate.fields[0] = _FIELDS(first)
                candidate.tool_calls[0] = first.__dict__.get("tool_calls")
                del snaps[old_key]
                snaps[key] = candidate
                self._by_second[id(msgs[1])] = key
                return candidate
        snap = _Snapshot(messages=[], fields=[], tool_calls=[])
        snaps[key] = snap
        while len(snaps) > self._snapshot_count:
            _, evicted = snaps.popitem(last=False)
            if len(evicted.messages) > 1:
                self._by_second.pop(id(evicted.messages[1]), None)
        return snap

    def _sum_messages(self, messages: Sequence[Any]) -> int:
        """Sum of :meth:`count_message` over ``messages`` (incremental when possible)."""
        msgs = _as_sequence(messages)
        if not msgs:
            return 0
        try:
            return self._totals(msgs)[0]
        except _NotMessagesError:
            return sum(map(self.count_message, convert_to_messages(msgs)))

    def _fingerprint(self, m: BaseMessage) -> tuple[Any, ...]:
        content = m.content
        content_key = hash(content) if isinstance(content, str) else hash(repr(content))
        calls_key = 0
        if isinstance(m, AIMessage) and (m.tool_calls or m.invalid_tool_calls):
            calls_key = hash(repr(m.tool_calls) + repr(m.invalid_tool_calls))
        reasoning = m.additional_kwargs.get("reasoning_content")
        reasoning_key = hash(reasoning) if isinstance(reasoning, str) else 0
        call_id = m.tool_call_id if isinstance(m, ToolMessage) else None
        return (m.id, m.type, content_key, calls_key, reasoning_key, m.name, call_id)

    def _count_uncached(self, m: BaseMessage) -> int:
        count = self.backend.count
        total = self.message_overhead + self._count_content(m.content)
        if m.name:
            total += count(m.name) + 1
        if isinstance(m, AIMessage):
            if m.tool_calls or m.invalid_tool_calls:
                total += self.tool_calls_overhead
            for call in m.tool_calls:
                args = json.dumps(call["args"], ensure_ascii=False)
                total += self.tool_call_overhead + count(call["name"]) + count(args)
                if call.get("id"):
                    total += count(call["id"] or "")
            for bad in m.invalid_tool_calls:
                total += self.tool_call_overhead
                total += count(bad.get("name") or "") + count(bad.get("args") or "")
                total += count(bad.get("id") or "")
            mode = self.reasoning
            if mode == "all" or (mode == "tool_calls" and (m.tool_calls or m.invalid_tool_calls)):
                total += count(_reasoning_text(m))
        elif isinstance(m, ToolMessage):
            total += count(m.tool_call_id)
        return total

    def _count_content(self, content: str | list[Any]) -> int:
        count = self.backend.count
        if isinstance(content, str):
            return count(content)
        total = 0
        for block in content:
            if isinstance(block, str):
                total += count(block)
            elif isinstance(block, Mapping):
                kind = block.get("type")
                if kind == "text":
                    total += count(str(block.get("text", "")))
                elif kind in _IMAGE_BLOCK_TYPES:
                    total += self.image_tokens
                elif kind in _REASONING_BLOCK_TYPES:
                    pass  # counted (or not) with the message's reasoning
                else:
                    total += count(json.dumps(block, ensure_ascii=False, default=str))
            else:
                total += count(str(block))
        return total

    # -- tools -----------------------------------------------------------------------

    def count_tools(self, tools: Sequence[Any]) -> int:
        """Count tool schemas as sent in the request's ``tools`` field.

        Accepts OpenAI tool dicts (``{"type": "function", "function": {...}}``, also
        Kimi's ``builtin_function``), LangChain tools, pydantic models, TypedDicts and
        functions; non-dict tools are converted with
        ``langchain_core.utils.function_calling.convert_to_openai_tool``. Conversions
        and counts are memoised.

        Args:
            tools: The tools.

        Returns:
            The token count (0 for no tools).

        Example:
            >>> from pydantic import BaseModel, Field
            >>> class ReadFile(BaseModel):
            ...     '''Read a file of the repository.'''
            ...     path: str = Field(description="Path relative to the repository root")
            >>> counter = TokenCounter(backend=ApproximateBackend())
            >>> small = counter.count_tools([ReadFile])
            >>> small > counter.tools_overhead
            True
            >>> counter.count_tools([ReadFile, ReadFile]) > small
            True
        """
        if not tools:
            return 0
        total = self.tools_overhead
        for tool in tools:
            total += self.tool_overhead + self._count_tool(tool)
        return total

    def _count_tool(self, tool: Any) -> int:
        if isinstance(tool, Mapping):
            text = json.dumps(_tool_dict(tool), ensure_ascii=False, default=str)
            key: Any = ("json", text)
            anchor: Any = None
        else:
            key = ("obj", id(tool))
            anchor = tool
            text = None
        with self._lock:
            hit = self._tool_memo.get(key)
            if hit is not None and (anchor is None or hit[0] is anchor):
                self._tool_memo.move_to_end(key)
                return hit[1]
        if text is None:
            text = json.dumps(_tool_dict(tool), ensure_ascii=False, default=str)
        value = self.backend.count(text)
        with self._lock:
            self._tool_memo[key] = (anchor, value)
            if len(self._tool_memo) > 1024:
                self._tool_memo.popitem(last=False)
        return value

    def clear_cache(self) -> None:
        """Forget all memoised counts and running totals.

        Example:
            >>> counter = TokenCounter(backend=ApproximateBackend())
            >>> counter.clear_cache()
        """
        with self._lock:
            self._memo.clear()
            self._tool_memo.clear()
            self._snapshots.clear()
            self._by_second.clear()
            self._ident.clear()


def _reasoning_text(message: AIMessage) -> str:
    """The reasoning a chat model replays: ``reasoning_content``, else reasoning blocks."""
    text = message.additional_kwargs.get("reasoning_content")
    if isinstance(text, str):
        return text
    if isinstance(message.content, list):
        return "".join(
            str(block.get("reasoning") or block.get("thinking") or "")
            for block in message.content
            if isinstance(block, Mapping) and block.get("type") in _REASONING_BLOCK_TYPES
        )
    return ""


def _tool_dict(tool: Any) -> dict[str, Any]:
    if isinstance(tool, Mapping) and tool.get("type") in {"function", "builtin_function"}:
        return dict(tool)
    from langchain_core.utils.function_calling import convert_to_openai_tool

    try:
        return convert_to_openai_tool(tool)
    except (ValueError, TypeError, KeyError) as exc:
        raise KimiConfigurationError(
            f"Cannot count tool {tool!r:.80}: expected an OpenAI tool dict, a LangChain "
            f"tool, a pydantic model or a typed function ({exc})."
        ) from exc


def _identity_forgetter(
    ident: dict[int, tuple[Any, ...]],
) -> Callable[[weakref.KeyedRef[int, BaseMessage]], None]:
    """Weak-reference callback that drops a dead message from the identity cache."""

    def forget(ref: weakref.KeyedRef[int, BaseMessage]) -> None:
        entry = ident.get(ref.key)
        if entry is not None and entry[0] is ref:
            ident.pop(ref.key, None)

    return forget


class _NotMessagesError(Exception):
    """Internal: a list holds message-like values that need ``convert_to_messages``."""


def _as_sequence(messages: Sequence[Any]) -> Sequence[Any]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(
            f"expected a sequence of messages, got {type(messages).__name__}; wrap a "
            f"single message in a list"
        )
    return messages


def _as_messages(messages: Sequence[Any]) -> Sequence[BaseMessage]:
    msgs = _as_sequence(messages)
    if all(map(isinstance, msgs, repeat(BaseMessage))):
        return msgs
    return convert_to_messages(msgs)


_default_lock = threading.Lock()
_default_counter: TokenCounter | None = None


def default_token_counter() -> TokenCounter:
    """Return the process-wide :class:`TokenCounter` (created on first use).

    The backend is the Kimi vocabulary named by ``KIMI_TOKENIZER_PATH`` when set, else
    :class:`ApproximateBackend` with one :class:`TokenizerFallbackWarning`.

    Returns:
        The shared counter.

    Example:
        >>> default_token_counter() is default_token_counter()
        True
    """
    global _default_counter
    counter = _default_counter
    if counter is not None:
        return counter
    with _default_lock:
        if _default_counter is None:
            _default_counter = TokenCounter()
        return _default_counter


def set_default_token_counter(counter: TokenCounter | None) -> None:
    """Replace the process-wide counter (``None`` recreates it on next use).

    Args:
        counter: The counter every component without an explicit one should use.

    Example:
        >>> previous = default_token_counter()
        >>> set_default_token_counter(TokenCounter(backend=ApproximateBackend()))
        >>> default_token_counter() is previous
        False
        >>> set_default_token_counter(previous)
    """
    global _default_counter
    if counter is not None and not isinstance(counter, TokenCounter):
        raise TypeError(f"expected a TokenCounter or None, got {type(counter).__name__}")
    with _default_lock:
        _default_counter = counter


def count_tokens_for_model(
    messages: Sequence[BaseMessage | Any],
    tools: Sequence[Any] | None = None,
    *,
    model: str | None = None,
) -> int:
    """Count a request for a Kimi model locally (for ``get_num_tokens_from_messages``).

    All Kimi models share one tokenizer family, so ``model`` does not change the count
    today; it is accepted so callers need not change when that stops being true.

    Args:
        messages: The messages.
        tools: Tool schemas sent with them.
        model: The model name.

    Returns:
        The local estimate from :func:`default_token_counter` (no network).

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> count_tokens_for_model([HumanMessage("hi")], model="kimi-k2.6") > 0
        True
    """
    del model
    return default_token_counter().count_messages(messages, tools)


# ---------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------


@dataclass
class TokenCalibrator:
    """Per-session correction factor: server-billed ``prompt_tokens`` / local estimate.

    The first observation sets the factor; later ones move it in log space by
    ``smoothing`` (an exponential moving average of the log ratio), and it is clamped to
    ``[min_factor, max_factor]`` so one odd reply cannot wreck the estimate.

    Attributes:
        factor: The current correction factor (1.0 before any observation).
        observations: Number of observations folded in.
        smoothing: Weight of a new observation (0 < smoothing <= 1).
        min_factor: Lower bound of the factor.
        max_factor: Upper bound of the factor.
        last_ratio: The last raw ratio observed (unclamped), for diagnostics.

    Example:
        >>> cal = TokenCalibrator()
        >>> cal.observe(estimated=1000, actual=1200)
        1.2
        >>> cal.apply(500)
        600
        >>> cal.observe(estimated=1000, actual=5000) <= cal.max_factor  # bounded, smoothed
        True
        >>> TokenCalibrator.from_dict(cal.to_dict()) == cal
        True
    """

    factor: float = 1.0
    observations: int = 0
    smoothing: float = 0.5
    min_factor: float = 0.5
    max_factor: float = 2.0
    last_ratio: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.smoothing <= 1.0:
            raise KimiConfigurationError(
                f"TokenCalibrator: smoothing must be in (0, 1], got {self.smoothing}."
            )
        if not 0.0 < self.min_factor <= 1.0 <= self.max_factor:
            raise KimiConfigurationError(
                "TokenCalibrator: need 0 < min_factor <= 1 <= max_factor, got "
                f"{self.min_factor}..{self.max_factor}."
            )
        self.factor = self._clamp(self.factor)

    def _clamp(self, value: float) -> float:
        return min(self.max_factor, max(self.min_factor, value))

    def observe(self, estimated: int, actual: int) -> float:
        """Fold in one (local estimate, server-reported prompt tokens) pair.

        Pairs where either side is not positive are ignored.

        Args:
            estimated: The uncalibrated local count of the prompt.
            actual: The server's ``prompt_tokens`` for that prompt.

        Returns:
            The new factor (rounded to 6 digits).

        Example:
            >>> cal = TokenCalibrator(smoothing=0.5)
            >>> cal.observe(1000, 1100), cal.observe(1000, 1210)
            (1.1, 1.15369)
        """
        if estimated <= 0 or actual <= 0:
            return self.factor
        ratio = actual / estimated
        self.last_ratio = ratio
        clamped = self._clamp(ratio)
        if self.observations == 0:
            new = clamped
        else:
            log_new = (1 - self.smoothing) * math.log(self.factor) + self.smoothing * math.log(
                clamped
            )
            new = self._clamp(math.exp(log_new))
        self.factor = round(new, 6)
        self.observations += 1
        return self.factor

    def apply(self, estimated: int) -> int:
        """Return the calibrated value of a local estimate.

        Args:
            estimated: An uncalibrated local count.

        Returns:
            ``round(estimated * factor)``.

        Example:
            >>> TokenCalibrator(factor=1.5).apply(100)
            150
        """
        return round(estimated * self.factor)

    def to_dict(self) -> dict[str, Any]:
        """Serialise to a small JSON-compatible dict (for checkpoints).

        Returns:
            The state.

        Example:
            >>> TokenCalibrator().to_dict()["factor"]
            1.0
        """
        return {
            "factor": self.factor,
            "observations": self.observations,
            "smoothing": self.smoothing,
            "min_factor": self.min_factor,
            "max_factor": self.max_factor,
            "last_ratio": self.last_ratio,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenCalibrator:
        """Restore from :meth:`to_dict` output.

        Args:
            data: The serialised state.

        Returns:
            The calibrator.

        Example:
            >>> TokenCalibrator.from_dict({"factor": 1.3, "observations": 4}).factor
            1.3
        """
        return cls(
            factor=float(data.get("factor", 1.0)),
            observations=int(data.get("observations", 0)),
            smoothing=float(data.get("smoothing", 0.5)),
            min_factor=float(data.get("min_factor", 0.5)),
            max_factor=float(data.get("max_factor", 2.0)),
            last_ratio=(None if data.get("last_ratio") is None else float(data["last_ratio"])),
        )


@dataclass
class _Anchor:
    message_count: int
    prompt_tokens: int
    raw_messages: int
    raw_tools: int
    last_message_id: str | None


class ContextSizeTracker:
    """Current context size of one session: last server usage + calibrated delta.

    After each model call, :meth:`record_usage` (or :meth:`record_response`) stores the
    server-reported ``prompt_tokens`` for the messages sent and teaches the
    :class:`TokenCalibrator`. :meth:`current_size` then returns that exact number plus
    the calibrated local estimate of whatever was appended since (the reply, tool
    results, the next user turn). When the history was rewritten below the anchor
    (compaction, truncation), it returns the calibrated estimate of the whole request.

    Args:
        counter: The counter (default: :func:`default_token_counter`).
        calibrator: The per-session calibrator (default: a new one).

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> tracker = ContextSizeTracker(TokenCounter(backend=ApproximateBackend()))
        >>> history = [HumanMessage("Summarise the design doc.")]
        >>> tracker.record_usage(history, prompt_tokens=40)
        >>> history = history + [AIMessage("It proposes a cache."), HumanMessage("Why?")]
        >>> tracker.current_size(history) > 40
        True
        >>> restored = ContextSizeTracker.from_dict(tracker.to_dict(), tracker.counter)
        >>> restored.current_size(history) == tracker.current_size(history)
        True
    """

    def __init__(
        self,
        counter: TokenCounter | None = None,
        calibrator: TokenCalibrator | None = None,
    ) -> None:
        self.counter = counter if counter is not None else default_token_counter()
        self.calibrator = calibrator if calibrator is not None else TokenCalibrator()
        self._anchor: _Anchor | None = None

    @property
    def factor(self) -> float:
        """The current calibration factor."""
        return self.calibrator.factor

    @property
    def last_prompt_tokens(self) -> int | None:
        """The last server-reported prompt size, if any."""
        return None if self._anchor is None else self._anchor.prompt_tokens

    def estimate(self, messages: Sequence[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """Return the calibrated local estimate of a whole request (ignores the anchor).

        Args:
            messages: The messages of the request.
            tools: Its tool schemas.

        Returns:
            ``factor x`` the raw count.

        Example:
            >>> from langchain_core.messages import HumanMessage
            >>> counter = TokenCounter(backend=ApproximateBackend())
            >>> tracker = ContextSizeTracker(counter, TokenCalibrator(factor=2.0))
            >>> msgs = [HumanMessage("hi")]
            >>> tracker.estimate(msgs) == 2 * counter.count_messages(msgs)
            True
        """
        return self.calibrator.apply(self.counter.count_messages(messages, tools))

    def record_usage(
        self,
        messages: Sequence[BaseMessage],
        prompt_tokens: int,
        *,
        tools: Sequence[Any] | None = None,
    ) -> None:
        """Record the server-reported prompt size of a request that was sent.

        Args:
            messages: Exactly the messages sent (after the context pipeline).
            prompt_tokens: ``usage.prompt_tokens`` (``usage_metadata["input_tokens"]``).
            tools: The tool schemas sent.

        Raises:
            ValueError: ``prompt_tokens`` is negative.

        Example:
            >>> from langchain_core.messages import HumanMessage
            >>> tracker = ContextSizeTracker(TokenCounter(backend=ApproximateBackend()))
            >>> tracker.record_usage([HumanMessage("你好")], prompt_tokens=12)
            >>> tracker.last_prompt_tokens, tracker.calibrator.observations
            (12, 1)
        """
        if prompt_tokens < 0:
            raise ValueError(f"prompt_tokens must be >= 0, got {prompt_tokens}")
        msgs = _as_messages(messages)
        raw_messages = self.counter(msgs)
        raw_tools = self.counter.count_tools(tools) if tools else 0
        raw_total = self.counter.count_messages(msgs, tools)
        self.calibrator.observe(raw_total, prompt_tokens)
        self._anchor = _Anchor(
            message_count=len(msgs),
            prompt_tokens=prompt_tokens,
            raw_messages=raw_messages,
            raw_tools=raw_tools,
            last_message_id=msgs[-1].id if msgs else None,
        )

    def record_response(
        self,
        messages: Sequence[BaseMessage],
        response: AIMessage,
        *,
        tools: Sequence[Any] | None = None,
    ) -> bool:
        """Record usage from a model reply's ``usage_metadata`` (if it has any).

        Args:
            messages: The messages that were sent.
            response: The reply (``usage_metadata["input_tokens"]`` is read).
            tools: The tool schemas sent.

        Returns:
            Whether usage was found and recorded.

        Example:
            >>> from langchain_core.messages import HumanMessage
            >>> tracker = ContextSizeTracker(TokenCounter(backend=ApproximateBackend()))
            >>> reply = AIMessage("hi", usage_metadata={
            ...     "input_tokens": 9, "output_tokens": 1, "total_tokens": 10})
            >>> tracker.record_response([HumanMessage("hello")], reply)
            True
        """
        usage = response.usage_metadata
        if not usage or not usage.get("input_tokens"):
            return False
        self.record_usage(messages, int(usage["input_tokens"]), tools=tools)
        return True

    def current_size(
        self, messages: Sequence[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Return the best estimate of the prompt size of sending ``messages`` now.

        Args:
            messages: The messages that would be sent.
            tools: The tool schemas that would be sent.

        Returns:
            Last server usage + calibrated estimate of the delta when ``messages``
            extends the last recorded request, else the calibrated full estimate.

        Example:
            >>> from langchain_core.messages import HumanMessage
            >>> counter = TokenCounter(backend=ApproximateBackend())
            >>> tracker = ContextSizeTracker(counter)
            >>> first = [HumanMessage("hello")]
            >>> tracker.record_usage(first, prompt_tokens=100)
            >>> nxt = [*first, AIMessage("hi"), HumanMessage("more")]
            >>> tracker.current_size(nxt) - 100 == tracker.calibrator.apply(
            ...     counter.count_message(nxt[1]) + counter.count_message(nxt[2]))
            True
        """
        msgs = _as_messages(messages)
        anchor = self._anchor
        if anchor is None or not msgs or len(msgs) < anchor.message_count:
            return self.estimate(msgs, tools)
        n = anchor.message_count
        total, at_anchor = self.counter._totals(msgs, n)
        if at_anchor != anchor.raw_messages or (
            anchor.last_message_id is not None and msgs[n - 1].id != anchor.last_message_id
        ):
            return self.estimate(msgs, tools)
        raw_tools = self.counter.count_tools(tools) if tools else 0
        delta = total - at_anchor + raw_tools - anchor.raw_tools
        return max(0, anchor.prompt_tokens + self.calibrator.apply(delta))

    def to_dict(self) -> dict[str, Any]:
        """Serialise to a small JSON-compatible dict (no message content).

        Returns:
            ``{"version", "calibrator", "anchor"}``.

        Example:
            >>> sorted(ContextSizeTracker(TokenCounter(backend=ApproximateBackend())).to_dict())
            ['anchor', 'calibrator', 'version']
        """
        anchor = self._anchor
        return {
            "version": 1,
            "calibrator": self.calibrator.to_dict(),
            "anchor": None
            if anchor is None
            else {
                "message_count": anchor.message_count,
                "prompt_tokens": anchor.prompt_tokens,
                "raw_messages": anchor.raw_messages,
                "raw_tools": anchor.raw_tools,
                "last_message_id": anchor.last_message_id,
            },
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], counter: TokenCounter | None = None
    ) -> ContextSizeTracker:
        """Restore a tracker saved with :meth:`to_dict`.

        Args:
            data: The serialised state.
            counter: The counter to use (must be configured like the original one for
                the anchor to stay valid; default: :func:`default_token_counter`).

        Returns:
            The tracker.

        Raises:
            ValueError: ``data`` is not a tracker state of a known version.

        Example:
            >>> counter = TokenCounter(backend=ApproximateBackend())
            >>> state = {"version": 1, "calibrator": {"factor": 1.2}, "anchor": None}
            >>> ContextSizeTracker.from_dict(state, counter).factor
            1.2
        """
        if not isinstance(data, Mapping) or data.get("version") != 1:
            raise ValueError(
                "not a ContextSizeTracker state (expected the dict from to_dict() with version 1)"
            )
        tracker = cls(counter, TokenCalibrator.from_dict(data.get("calibrator") or {}))
        raw = data.get("anchor")
        if raw:
            tracker._anchor = _Anchor(
                message_count=int(raw["message_count"]),
                prompt_tokens=int(raw["prompt_tokens"]),
                raw_messages=int(raw["raw_messages"]),
                raw_tools=int(raw["raw_tools"]),
                last_message_id=raw.get("last_message_id"),
            )
        return tracker


# ---------------------------------------------------------------------------------------
# Exact count through the API
# ---------------------------------------------------------------------------------------

_DEFAULT_BASE_URL = "https://api.moonshot.ai/v1"


def _exact_request(
    messages: Sequence[BaseMessage | Any],
    *,
    tools: Sequence[Any] | None,
    model: str | None,
    base_url: str | None,
    api_key: SecretStr | str | None,
    chat_model: Any,
) -> tuple[str, dict[str, str], dict[str, Any]]:
    from langchain_kimi_context.profiles import DEFAULT_MODEL

    if chat_model is not None:
        model = model or getattr(chat_model, "model_name", None)
        base_url = base_url or getattr(chat_model, "openai_api_base", None)
        api_key = api_key or getattr(chat_model, "openai_api_key", None)
    model = model or DEFAULT_MODEL
    base_url = base_url or os.environ.get("MOONSHOT_BASE_URL") or _DEFAULT_BASE_URL
    if api_key is None:
        env_key = os.environ.get("MOONSHOT_API_KEY")
        api_key = SecretStr(env_key) if env_key else None
    if api_key is None:
        raise KimiConfigurationError(
            "count_tokens_exact needs an API key: pass api_key=..., a chat_model, or set "
            "MOONSHOT_API_KEY."
        )
    secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else str(api_key)
    url = base_url.rstrip("/") + "/tokenizers/estimate-token-count"
    payload_messages = []
    msgs = _as_messages(messages)
    for msg, wire in zip(msgs, convert_to_openai_messages(list(msgs)), strict=True):
        reasoning = msg.additional_kwargs.get("reasoning_content")
        if isinstance(msg, AIMessage) and isinstance(reasoning, str) and reasoning:
            wire = {**wire, "reasoning_content": reasoning}
        payload_messages.append(wire)
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    body: dict[str, Any] = {"model": model, "messages": payload_messages}
    if tools:
        body["tools"] = [_tool_dict(tool) for tool in tools]
    return url, headers, body


def _exact_result(response: httpx.Response) -> int:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    error = body.get("error") if isinstance(body, Mapping) else None
    if error or response.status_code >= 400:
        import openai

        from langchain_kimi_context.errors import from_openai_error

        if not isinstance(body, Mapping) or not error:
            body = {"error": {"message": str(body)[:500] or f"HTTP {response.status_code}"}}
        message = str((body.get("error") or {}).get("message") or "")
        status = response.status_code if response.status_code >= 400 else 400
        if status != response.status_code:
            response = type(response)(status, headers=response.headers, request=response.request)
        fake: Any = response
        raise from_openai_error(openai.APIStatusError(message, response=fake, body=body))
    try:
        return int(body["data"]["total_tokens"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"unexpected estimate-token-count reply (no data.total_tokens): {str(body)[:200]}"
        ) from exc


def count_tokens_exact(
    messages: Sequence[BaseMessage | Any],
    tools: Sequence[Any] | None = None,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: SecretStr | str | None = None,
    chat_model: Any = None,
    timeout: float = 30.0,
    client: httpx.Client | None = None,
) -> int:
    """Ask the server for the exact token count (``POST /tokenizers/estimate-token-count``).

    A network call: use it when you need the exact number (e.g. to check the local
    estimate), never on every turn. Connection settings come from the arguments, else
    from ``chat_model`` (its ``model_name``, ``openai_api_base``, ``openai_api_key``),
    else from ``MOONSHOT_BASE_URL`` / ``MOONSHOT_API_KEY``.

    Args:
        messages: The messages to count.
        tools: Tool schemas to count with them (any form :meth:`TokenCounter.count_tools`
            accepts; sent as the request's ``tools``).
        model: Model name (default: the chat model's, else the package default).
        base_url: API base URL ending in ``/v1``.
        api_key: API key.
        chat_model: A ``KimiChatModel`` (or any ``BaseChatOpenAI``) to take settings from.
        timeout: Request timeout in seconds.
        client: An ``httpx.Client`` to reuse.

    Returns:
        ``data.total_tokens`` of the reply.

    Raises:
        KimiConfigurationError: No API key is available.
        openai.APIStatusError: A typed subclass from
            :func:`~langchain_kimi_context.errors.from_openai_error` on an error reply
            (``KimiAuthenticationError``, ``KimiNotFoundError``, ...).
        httpx.HTTPError: The server could not be reached (connection error, timeout).

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> count_tokens_exact([HumanMessage("hi")], api_key="sk-...")  # doctest: +SKIP
        7
    """
    import httpx

    url, headers, body = _exact_request(
        messages,
        tools=tools,
        model=model,
        base_url=base_url,
        api_key=api_key,
        chat_model=chat_model,
    )
    if client is not None:
        return _exact_result(client.post(url, json=body, headers=headers, timeout=timeout))
    with httpx.Client(timeout=timeout) as own:
        return _exact_result(own.post(url, json=body, headers=headers))


async def acount_tokens_exact(
    messages: Sequence[BaseMessage | Any],
    tools: Sequence[Any] | None = None,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: SecretStr | str | None = None,
    chat_model: Any = None,
    timeout: float = 30.0,
    client: httpx.AsyncClient | None = None,
) -> int:
    """Async :func:`count_tokens_exact`.

    Args:
        messages: The messages to count.
        tools: Tool schemas to count with them.
        model: Model name.
        base_url: API base URL ending in ``/v1``.
        api_key: API key.
        chat_model: A chat model to take settings from.
        timeout: Request timeout in seconds.
        client: An ``httpx.AsyncClient`` to reuse.

    Returns:
        ``data.total_tokens`` of the reply.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> await acount_tokens_exact([HumanMessage("hi")], api_key="sk-...")  # doctest: +SKIP
        7
    """
    import httpx

    url, headers, body = _exact_request(
        messages,
        tools=tools,
        model=model,
        base_url=base_url,
        api_key=api_key,
        chat_model=chat_model,
    )
    if client is not None:
        response = await client.post(url, json=body, headers=headers, timeout=timeout)
        return _exact_result(response)
    async with httpx.AsyncClient(timeout=timeout) as own:
        return _exact_result(await own.post(url, json=body, headers=headers))
