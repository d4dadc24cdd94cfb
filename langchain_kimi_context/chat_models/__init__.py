"""``KimiChatModel``: LangChain chat model for the Kimi (Moonshot) API.

A thin subclass of langchain-openai's ``BaseChatOpenAI`` that adds what the Kimi API needs
and the base class does not do:

* Moonshot credentials and endpoint (``MOONSHOT_API_KEY``, ``MOONSHOT_BASE_URL``), model
  profiles as data (:mod:`langchain_kimi_context.profiles`) exposed as LangChain's
  ``model.profile`` so ``SummarizationMiddleware(trigger=("fraction", f))`` works.
* Usage: cache hits from Moonshot's top-level ``usage.cached_tokens`` (fallback
  ``prompt_tokens_details.cached_tokens``) as ``input_token_details.cache_read``, reasoning
  tokens where reported, usage inside the last choice, ``stream_usage`` on by default.
* ``reasoning_content`` read on invoke and stream into
  ``AIMessage.additional_kwargs["reasoning_content"]`` and sent back on replayed assistant
  tool-call messages, so thinking models work across tool loops.
* Typed errors (:mod:`langchain_kimi_context.errors`) for every API failure, retries only
  for retryable ones (honouring the server's retry-after hint), an error for empty replies.
* Kimi quirks: empty ``content`` omitted on assistant tool-call messages, temperature range
  and fixed sampling parameters validated, ``n <= 5``, ``$web_search`` builtin tool,
  partial mode.
* A caching seam (:class:`CacheStrategy`) called right before each request is sent and
  after each response.

The package's modules, one concern each: :mod:`.model` (the class), :mod:`.request`
(payload rules), :mod:`.response` (reply and stream reading, reply checks),
:mod:`.retrying` (typed errors, the retry decision), :mod:`.cache_seam` (the cache
strategy protocol and the session id).
"""

from __future__ import annotations

from langchain_kimi_context.chat_models.cache_seam import (
    CacheStrategy,
    PassThroughCacheStrategy,
    resolve_session_id,
)
from langchain_kimi_context.chat_models.model import KimiChatModel
from langchain_kimi_context.chat_models.request import (
    DEFAULT_BASE_URL,
    WEB_SEARCH_TOOL,
    builtin_tool_result,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "WEB_SEARCH_TOOL",
    "CacheStrategy",
    "KimiChatModel",
    "PassThroughCacheStrategy",
    "builtin_tool_result",
    "resolve_session_id",
]
