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
  vocabulary is available the counter falls back to the approximate backend and says so
  in one INFO log line per process (a :class:`TokenizerFallbackWarning` only when a
  vocabulary was asked for and cannot be loaded).
* :class:`TokenCalibrator` and :class:`ContextSizeTracker`: a per-session correction
  factor learned from the server-reported ``prompt_tokens``, and the current context
  size as "last server usage + calibrated estimate of what was appended since".
* :func:`count_tokens_exact` / :func:`acount_tokens_exact`: the exact count from
  ``POST /v1/tokenizers/estimate-token-count`` (a network call, only when asked).

Modules (each states its contract in its docstring): :mod:`.vocab` (vocabulary files and
named encodings), :mod:`.backends` (the backend protocol, tiktoken, the default backend),
:mod:`.approximate` (the vocabulary-free backend), :mod:`.counter` (:class:`TokenCounter`),
:mod:`.default` (the process-wide counter), :mod:`.calibration` (calibrator and context
size tracker), :mod:`.remote` (the exact count through the API) and
:mod:`.protocol` (the one counter protocol every ``token_counter=`` accepts).
"""

from __future__ import annotations

from langchain_kimi_context.tokens.approximate import ApproximateBackend
from langchain_kimi_context.tokens.backends import (
    TiktokenBackend,
    TokenizerBackend,
    TokenizerFallbackWarning,
)
from langchain_kimi_context.tokens.calibration import ContextSizeTracker, TokenCalibrator
from langchain_kimi_context.tokens.counter import TokenCounter
from langchain_kimi_context.tokens.default import (
    count_tokens_for_model,
    default_token_counter,
    set_default_token_counter,
)
from langchain_kimi_context.tokens.protocol import SupportsTokenCounting, resolve_token_counter
from langchain_kimi_context.tokens.remote import acount_tokens_exact, count_tokens_exact
from langchain_kimi_context.tokens.vocab import (
    KIMI_PAT_STR,
    KIMI_TOKENIZER_PATH_ENV,
    load_kimi_encoding,
)

__all__ = [
    "KIMI_PAT_STR",
    "KIMI_TOKENIZER_PATH_ENV",
    "ApproximateBackend",
    "ContextSizeTracker",
    "SupportsTokenCounting",
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
    "resolve_token_counter",
    "set_default_token_counter",
]
