"""Tokenizer backends: the protocol, tiktoken, and which backend a counter gets.

Contract: a :class:`TokenizerBackend` turns text into a token count (``count``) and has a
``name``. :class:`TiktokenBackend` wraps a tiktoken encoding (long runs are split as
Kimi's tokenizer does). The default backend is the vocabulary given, else the one named
by ``KIMI_TOKENIZER_PATH``, else
:class:`~langchain_kimi_context.tokens.approximate.ApproximateBackend`, and the fallback
is reported once per process (:class:`TokenizerFallbackWarning`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.tokens.approximate import ApproximateBackend
from langchain_kimi_context.tokens.vocab import (
    KIMI_TOKENIZER_PATH_ENV,
    _load_named_encoding,
    load_kimi_encoding,
)

if TYPE_CHECKING:
    import tiktoken


logger = logging.getLogger("langchain_kimi_context.tokens")

#: tiktoken is slow on very long runs of (non-)whitespace; Kimi's tokenizer splits them.
_MAX_RUN_CHARS = 25_000
_LONG_RUN = re.compile(r"\S{%d,}|\s{%d,}" % (_MAX_RUN_CHARS, _MAX_RUN_CHARS))  # noqa: UP031


class TokenizerFallbackWarning(UserWarning):
    """Issued once per process when a requested tokenizer vocabulary is unavailable.

    The counter then uses :class:`ApproximateBackend`; a :class:`TokenCalibrator`
    corrects its bias against what the server bills.

    Example:
        >>> issubclass(TokenizerFallbackWarning, UserWarning)
        True
    """


_fallback_lock = threading.Lock()
_fallback_logged = False
_fallback_warned = False


def _warn_fallback(reason: str, *, requested: bool = False) -> None:
    """Report that the approximate backend is used: one INFO log line per process.

    A :class:`TokenizerFallbackWarning` is added (once per process) only when the caller
    asked for a vocabulary (``encoding=`` or ``$KIMI_TOKENIZER_PATH``) that is unusable;
    having none configured is the normal case and stays a log line.
    """
    global _fallback_logged, _fallback_warned
    with _fallback_lock:
        log, warn = not _fallback_logged, requested and not _fallback_warned
        _fallback_logged = True
        _fallback_warned = _fallback_warned or requested
    message = (
        f"langchain-kimi-context: {reason}; token counts use the approximate CJK-aware "
        f"counter (calibrated against server usage when a ContextSizeTracker is used). "
        f"For exact local counts set {KIMI_TOKENIZER_PATH_ENV} to a Kimi tiktoken.model "
        f"file, or pass TokenCounter(vocab_path=...) / TokenCounter(encoding=...)."
    )
    if not (log or warn):
        logger.debug("approximate token counting: %s", reason)
        return
    if log:
        logger.info(message)
    if warn:
        warnings.warn(message, TokenizerFallbackWarning, stacklevel=3)


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
        """Return the number of tokens of ``text`` (no special tokens)."""
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
        >>> from langchain_kimi_context.tokens import KIMI_PAT_STR
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
        """
        return cls(_load_named_encoding(name, timeout), name=f"tiktoken:{name}")


def _resolve_backend(
    encoding: str | None, vocab_path: str | os.PathLike[str] | None, timeout: float
) -> TokenizerBackend:
    if vocab_path is not None:
        return TiktokenBackend.from_kimi_vocab(vocab_path)
    if encoding is not None:
        try:
            return TiktokenBackend.from_encoding_name(encoding, timeout=timeout)
        except LookupError as exc:
            _warn_fallback(str(exc), requested=True)
            return ApproximateBackend()
    env_path = os.environ.get(KIMI_TOKENIZER_PATH_ENV, "").strip()
    if env_path:
        try:
            return TiktokenBackend.from_kimi_vocab(env_path)
        except KimiConfigurationError as exc:
            _warn_fallback(f"{KIMI_TOKENIZER_PATH_ENV} is set but unusable ({exc})", requested=True)
            return ApproximateBackend()
    _warn_fallback("no tokenizer vocabulary is configured")
    return ApproximateBackend()
