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
  after each response (see the "caching" contract in the project brief).

Example:
    >>> from langchain_kimi_context import KimiChatModel
    >>> model = KimiChatModel(api_key="sk-test")
    >>> model.model_name, model.profile["max_input_tokens"], model.model_profile.cache_kind
    ('kimi-k2.6', 262144, 'automatic')
    >>> "sk-test" in repr(model)
    False
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import random
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self, cast, get_type_hints, runtime_checkable
from urllib.parse import urlsplit

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LangSmithParams, LanguageModelInput, ModelProfile
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages import content as types
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.block_translators import openai as openai_translator
from langchain_core.messages.block_translators import register_translator
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.runnables.config import ensure_config
from langchain_core.tools import BaseTool
from langchain_core.utils import from_env, secret_from_env
from langchain_openai.chat_models.base import BaseChatOpenAI, _create_usage_metadata
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, model_validator

from langchain_kimi_context.errors import (
    KimiAPIContextOverflowError,
    KimiConfigurationError,
    KimiConnectionError,
    KimiEmptyResponseError,
    KimiModelRetiredError,
    KimiOutputLimitError,
    from_openai_error,
    is_retryable_error,
    is_unreachable_error,
)
from langchain_kimi_context.profiles import (
    DEFAULT_MODEL,
    KimiModelProfile,
    get_profile,
    update_profiles_from_models_payload,
)
from langchain_kimi_context.thinking_rules import plan_tool_choice, plan_web_search, thinking_on
from langchain_kimi_context.tokens import count_tokens_for_model, default_token_counter

__all__ = [
    "DEFAULT_BASE_URL",
    "WEB_SEARCH_TOOL",
    "CacheStrategy",
    "KimiChatModel",
    "PassThroughCacheStrategy",
    "builtin_tool_result",
    "resolve_session_id",
]

DEFAULT_BASE_URL: Final = "https://api.moonshot.ai/v1"
"""Moonshot's global endpoint (the default of Moonshot's own SDK, kosong, and of most
clients); the China platform's is ``https://api.moonshot.cn/v1``. A key of one platform gets
401 on the other: set ``MOONSHOT_BASE_URL`` or ``base_url=...`` to switch."""

_MOONSHOT_HOSTS: Final = frozenset({"api.moonshot.ai", "api.moonshot.cn"})
"""Moonshot's own API hosts: only there is a retired model refused before the request."""

WEB_SEARCH_TOOL: Final[Mapping[str, Any]] = {
    "type": "builtin_function",
    "function": {"name": "$web_search"},
}
"""Kimi's builtin web search tool, as accepted by :meth:`KimiChatModel.bind_tools`."""

_MAX_N: Final = 5
_MAX_STOP: Final = 5
_MAX_STOP_BYTES: Final = 32
_NEAR_ZERO_TEMPERATURE: Final = 1e-3
_LC_PROFILE_KEYS: Final = frozenset(get_type_hints(ModelProfile))
_LOGGER = logging.getLogger(__name__)
_REFRESH_LOCK = threading.Lock()
_MIN_OUTPUT_BUDGET: Final = 1_024
_PROMPT_ESTIMATE_MARGIN: Final = 1.05
"""Local prompt estimates are approximate: keep 5% headroom when sizing max_tokens."""
_PROVIDER: Final = "moonshot"
"""``response_metadata["model_provider"]`` of replies (and ``ls_provider``)."""


def _reasoning_block(message: AIMessage, *, index: str | None = None) -> list[types.ContentBlock]:
    text = message.additional_kwargs.get("reasoning_content")
    if not isinstance(text, str) or not text:
        return []
    block: types.ReasoningContentBlock = {"type": "reasoning", "reasoning": text}
    if index is not None:
        block["index"] = index
    return [block]


def _translate_content(message: AIMessage) -> list[types.ContentBlock]:
    """Standard content blocks of a Kimi reply: reasoning first, then OpenAI's blocks."""
    blocks = openai_translator.translate_content(message)
    return [*_reasoning_block(message), *blocks]


def _translate_content_chunk(chunk: AIMessageChunk) -> list[types.ContentBlock]:
    """Chunk variant; the reasoning block has its own index so streamed parts merge."""
    blocks = openai_translator.translate_content_chunk(chunk)
    return [*_reasoning_block(chunk, index="lc_kimi_reasoning"), *blocks]


# LangChain's OpenAI translator ignores ``reasoning_content``; Kimi replies are tagged
# ``model_provider="moonshot"`` and translated here so ``AIMessage.content_blocks`` (and
# ``output_version="v1"``) carry a standard ``reasoning`` block.
register_translator(_PROVIDER, _translate_content, _translate_content_chunk)

# Retry waits go through these names so tests can observe them without patching the
# process-wide ``time.sleep`` / ``asyncio.sleep``.
_sleep: Callable[[float], None] = time.sleep
_async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


# --------------------------------------------------------------------------- caching seam


@runtime_checkable
class CacheStrategy(Protocol):
    """The seam through which context caching plugs into :class:`KimiChatModel`.

    ``prepare``/``aprepare`` run right before a request is sent and may return a changed
    payload (add ``extra_headers``, ``prompt_cache_key``, rewrite ``messages``); the
    payload is the exact keyword set passed to ``client.chat.completions.create``.
    ``record`` runs after each response with the Moonshot-shaped ``usage`` dict (``None``
    when the server sent none); its returned dict is merged into the reply's
    ``response_metadata``. ``close``/``aclose`` release what the strategy holds.

    Example:
        >>> isinstance(PassThroughCacheStrategy(), CacheStrategy)
        True
    """

    def prepare(self, payload: dict[str, Any], *, session_id: str | None) -> dict[str, Any]:
        """Return the payload to send (sync path).

        Example:
            >>> PassThroughCacheStrategy().prepare({"model": "m"}, session_id=None)
            {'model': 'm'}
        """
        ...

    async def aprepare(self, payload: dict[str, Any], *, session_id: str | None) -> dict[str, Any]:
        """Return the payload to send (async path).

        Example:
            >>> import asyncio
            >>> asyncio.run(PassThroughCacheStrategy().aprepare({}, session_id="s"))
            {}
        """
        ...

    def record(
        self,
        payload: Mapping[str, Any],
        usage: Mapping[str, Any] | None,
        *,
        session_id: str | None,
    ) -> dict[str, Any]:
        """Account for a response; the result is merged into ``response_metadata``.

        Example:
            >>> PassThroughCacheStrategy().record({}, {"prompt_tokens": 1}, session_id=None)
            {}
        """
        ...

    def close(self) -> None:
        """Release resources (sync).

        Example:
            >>> PassThroughCacheStrategy().close()
        """
        ...

    async def aclose(self) -> None:
        """Release resources (async).

        Example:
            >>> import asyncio
            >>> asyncio.run(PassThroughCacheStrategy().aclose())
        """
        ...


class PassThroughCacheStrategy:
    """A :class:`CacheStrategy` that changes nothing and records nothing.

    Used when ``langchain_kimi_context.caching`` provides no ``make_cache_strategy`` and
    no strategy was passed to the model.

    Example:
        >>> s = PassThroughCacheStrategy()
        >>> s.prepare({"model": "kimi-k2.6", "messages": []}, session_id="t1")["model"]
        'kimi-k2.6'
        >>> s.record({}, {"prompt_tokens": 3}, session_id=None)
        {}
    """

    def prepare(self, payload: dict[str, Any], *, session_id: str | None) -> dict[str, Any]:
        """Return ``payload`` unchanged.

        Args:
            payload: The request keyword arguments.
            session_id: The resolved session id (unused).

        Returns:
            The same payload.

        Example:
            >>> PassThroughCacheStrategy().prepare({"a": 1}, session_id=None)
            {'a': 1}
        """
        return payload

    async def aprepare(self, payload: dict[str, Any], *, session_id: str | None) -> dict[str, Any]:
        """Return ``payload`` unchanged (async).

        Args:
            payload: The request keyword arguments.
            session_id: The resolved session id (unused).

        Returns:
            The same payload.

        Example:
            >>> import asyncio
            >>> asyncio.run(PassThroughCacheStrategy().aprepare({"a": 1}, session_id=None))
            {'a': 1}
        """
        return payload

    def record(
        self,
        payload: Mapping[str, Any],
        usage: Mapping[str, Any] | None,
        *,
        session_id: str | None,
    ) -> dict[str, Any]:
        """Record nothing.

        Args:
            payload: The request that was sent.
            usage: The server's usage dict, or ``None``.
            session_id: The resolved session id.

        Returns:
            An empty dict.

        Example:
            >>> PassThroughCacheStrategy().record({}, None, session_id=None)
            {}
        """
        return {}

    def close(self) -> None:
        """Do nothing.

        Example:
            >>> PassThroughCacheStrategy().close()
        """

    async def aclose(self) -> None:
        """Do nothing (async).

        Example:
            >>> import asyncio
            >>> asyncio.run(PassThroughCacheStrategy().aclose())
        """


def _default_cache_strategy(model: KimiChatModel) -> CacheStrategy:
    """Strategy for ``model``: ``caching.make_cache_strategy(model)`` if that exists."""
    if importlib.util.find_spec("langchain_kimi_context.caching") is None:
        return PassThroughCacheStrategy()
    module = importlib.import_module("langchain_kimi_context.caching")
    factory: Callable[[KimiChatModel], CacheStrategy] | None = getattr(
        module, "make_cache_strategy", None
    )
    return PassThroughCacheStrategy() if factory is None else factory(model)


def resolve_session_id(
    explicit: str | None = None,
    model_session_id: str | None = None,
    *,
    run_metadata: Mapping[str, Any] | None = None,
) -> str | None:
    """Resolve the session id used for caching (``prompt_cache_key``, cache ids).

    Order: the explicit call keyword (``model.invoke(..., session_id=...)``) > the model's
    ``session_id`` field > ``configurable.thread_id`` of the current ``RunnableConfig``
    (set inside LangGraph nodes and LCEL chains, via ``ensure_config()``) > ``thread_id``
    in the run's metadata (LangGraph copies it there).

    Args:
        explicit: The ``session_id`` passed to the call, if any.
        model_session_id: The model's ``session_id`` field.
        run_metadata: The callback manager's metadata of the current run, if any.

    Returns:
        The session id, or ``None`` when nothing names one.

    Example:
        >>> resolve_session_id("call", "field")
        'call'
        >>> resolve_session_id(None, "field")
        'field'
        >>> resolve_session_id(run_metadata={"thread_id": 7})
        '7'
        >>> resolve_session_id() is None
        True
    """
    if explicit:
        return str(explicit)
    if model_session_id:
        return model_session_id
    thread_id = ensure_config().get("configurable", {}).get("thread_id")
    if thread_id is None and run_metadata:
        thread_id = run_metadata.get("thread_id")
    return None if thread_id is None else str(thread_id)


# --------------------------------------------------------------------------- helpers


def builtin_tool_result(tool_call: ToolCall) -> ToolMessage:
    """Answer a Kimi builtin tool call (e.g. ``$web_search``) as Kimi expects.

    Kimi runs builtin tools itself; the client only echoes the call's arguments back as
    the tool result.

    Args:
        tool_call: The tool call from ``AIMessage.tool_calls``.

    Returns:
        The ``ToolMessage`` to append to the conversation.

    Example:
        >>> call = {"name": "$web_search", "args": {"search_result": {"search_id": "s1"}},
        ...         "id": "$web_search:0", "type": "tool_call"}
        >>> builtin_tool_result(call).content
        '{"search_result": {"search_id": "s1"}}'
    """
    return ToolMessage(
        content=json.dumps(tool_call["args"], ensure_ascii=False),
        tool_call_id=tool_call["id"] or "",
        name=tool_call["name"],
    )


def _is_builtin_tool(tool: Any) -> bool:
    return isinstance(tool, Mapping) and tool.get("type") == "builtin_function"


def _usage_metadata(usage: Mapping[str, Any]) -> UsageMetadata:
    """LangChain usage from a Moonshot ``usage`` dict (top-level ``cached_tokens`` first)."""
    meta = _create_usage_metadata(dict(usage))
    cached = usage.get("cached_tokens")
    if cached is None:
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    input_details = dict(meta.get("input_token_details") or {})
    if cached is not None:
        input_details["cache_read"] = int(cached)
    meta["input_token_details"] = cast(Any, input_details)
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    if reasoning is None:
        reasoning = usage.get("reasoning_tokens")
    output_details = dict(meta.get("output_token_details") or {})
    if reasoning is not None:
        output_details["reasoning"] = int(reasoning)
    meta["output_token_details"] = cast(Any, output_details)
    return meta


def _usage_of(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``usage`` of a response or chunk: top level, else inside the last choice."""
    usage = body.get("usage")
    if not usage:
        choices = body.get("choices") or []
        usage = choices[-1].get("usage") if choices and isinstance(choices[-1], Mapping) else None
    return {k: v for k, v in usage.items() if v is not None} if usage else None


def _reasoning_from_message(message: AIMessage) -> str | None:
    """Reasoning text of an AI message (``additional_kwargs`` or reasoning blocks)."""
    text = message.additional_kwargs.get("reasoning_content")
    if isinstance(text, str):
        return text
    if isinstance(message.content, list):
        parts = [
            str(block.get("reasoning", ""))
            for block in message.content
            if isinstance(block, dict) and block.get("type") == "reasoning"
        ]
        if parts:
            return "".join(parts)
    return None


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "**********") if secret and secret in text else text


# --------------------------------------------------------------------------- the model


class KimiChatModel(BaseChatOpenAI):
    """Kimi (Moonshot) chat model with profiles, cache-aware usage and typed errors.

    Setup:
        Set ``MOONSHOT_API_KEY`` (and optionally ``MOONSHOT_BASE_URL``, default the global
        ``https://api.moonshot.ai/v1``; China platform keys need
        ``https://api.moonshot.cn/v1``) or pass ``api_key``/``base_url``.

    Kimi's thinking rules are applied from the model's profile (see
    ``docs/kimi-api-rules.md``): ``reasoning_content`` is kept on every reply (also when
    empty) and replayed on every assistant message of a thinking request; locked sampling
    parameters are checked locally and never sent; a forced ``tool_choice`` the model
    rejects while thinking is sent with thinking switched off for that call (kimi-k2.6),
    narrowed to ``"required"`` over the named tool (kimi-k3), or refused locally
    (always-thinking models without forced choice); ``with_structured_output`` uses
    function calling where a forced tool works and ``json_schema`` otherwise.

    Retries: the OpenAI client's own retries are switched off (it would retry exhausted
    quota and other non-retryable 429s). The model itself retries up to ``max_retries``
    times (default 2), only errors for which
    :func:`~langchain_kimi_context.errors.is_retryable_error` is true, sleeping for the
    server's retry-after hint when given (up to ``max_retry_wait`` seconds; a longer hint
    is raised to the caller at once) and otherwise with jittered exponential backoff.
    A stream is retried only before its first chunk. When an outer layer retries (the
    package's agent, LangGraph ``RetryPolicy``, ``ModelRetryMiddleware``), construct the
    model with ``max_retries=0`` so retries do not multiply.

    Attributes:
        thinking: ``True``/``False`` sends ``extra_body={"thinking": {"type":
            "enabled"|"disabled"}}`` to models with a thinking switch (kimi-k2.6);
            ``None`` leaves the model default. Always-reasoning models get no switch.
        reasoning_effort: ``"low"``, ``"high"`` or ``"max"`` for models tuned with the
            top-level ``reasoning_effort`` field (kimi-k3); ``None`` = server default.
        profile_overrides: Replacement values for fields of the model's
            :class:`~langchain_kimi_context.profiles.KimiModelProfile`.
        context_cache: Caching mode for the cache strategy (``"auto"``, ``"explicit"``,
            ``"off"``).
        session_id: Default session id for caching (see :func:`resolve_session_id`).
        cache_strategy: A :class:`CacheStrategy` to use instead of the default one
            (``langchain_kimi_context.caching.make_cache_strategy(model)`` when that
            module provides it, else :class:`PassThroughCacheStrategy`).
        cache_policy: Caching thresholds (``caching.CachePolicy``).
        cache_registry: Registry of explicit caches shared between models/processes.
        cost_ledger: Cost ledger shared between models (``model.ledger`` reads it).
        max_retry_wait: Longest retry-after hint (seconds) the model waits out itself.

    Example:
        >>> model = KimiChatModel(model="kimi-k3", api_key="sk-test", reasoning_effort="high")
        >>> model.model_profile.thinking, model.profile["reasoning_output"]
        ('always', True)
        >>> KimiChatModel(model="kimi-k2.6", api_key="k", temperature=1.5)
        Traceback (most recent call last):
        ...
        langchain_kimi_context.errors.KimiConfigurationError: temperature=1.5 is out of range: ...
        >>> model.invoke("Hello")  # doctest: +SKIP
        AIMessage(content='Hi! ...', additional_kwargs={'reasoning_content': '...'}, ...)
    """

    model_name: str = Field(default=DEFAULT_MODEL, alias="model")
    """Model id (default: :data:`langchain_kimi_context.profiles.DEFAULT_MODEL`)."""

    openai_api_key: SecretStr | Callable[[], str] | None = Field(
        alias="api_key", default_factory=secret_from_env("MOONSHOT_API_KEY", default=None)
    )
    """Moonshot API key; read from ``MOONSHOT_API_KEY`` when not given."""

    openai_api_base: str | None = Field(
        alias="base_url", default_factory=from_env("MOONSHOT_BASE_URL", default=DEFAULT_BASE_URL)
    )
    """API base URL; ``MOONSHOT_BASE_URL`` or ``https://api.moonshot.ai/v1`` (global)."""

    stream_usage: bool | None = True
    """Ask for usage in the final stream chunk (on by default, unlike the base class)."""

    max_retries: int | None = 2
    """Retries of retryable errors done by the model itself (see the class docstring)."""

    max_retry_wait: float = 60.0
    """Longest server retry-after hint (seconds) the model waits before retrying."""

    thinking: bool | None = None
    """Enable/disable thinking (``extra_body.thinking``); ``None`` = model default."""

    reasoning_effort: Literal["low", "high", "max"] | None = None
    """Reasoning depth of models tuned with ``reasoning_effort`` (kimi-k3)."""

    profile_overrides: dict[str, Any] | None = None
    """Overrides for the model's profile (e.g. ``{"context_window": 131072}``)."""

    context_cache: Literal["auto", "explicit", "off"] = "auto"
    """Caching mode, read by the cache strategy."""

    session_id: str | None = None
    """Default caching session id (call kwarg ``session_id`` wins)."""

    cache_strategy: Any | None = Field(default=None, exclude=True)
    """Custom :class:`CacheStrategy`; default from ``langchain_kimi_context.caching``."""

    cache_policy: Any | None = Field(default=None, exclude=True)
    """:class:`~langchain_kimi_context.caching.CachePolicy` (TTL, cost guard, ...)."""

    cache_registry: Any | None = Field(default=None, exclude=True)
    """Shared :class:`~langchain_kimi_context.caching.CacheRegistry` of explicit caches."""

    cost_ledger: Any | None = Field(default=None, exclude=True)
    """Shared :class:`~langchain_kimi_context.caching.CostLedger` (a new one if ``None``)."""

    _cache_strategy: CacheStrategy = PrivateAttr(default_factory=PassThroughCacheStrategy)
    _learned_windows: dict[str, int] = PrivateAttr(default_factory=dict)
    _auto_profile: bool = PrivateAttr(default=True)
    _refresh_tried: bool = PrivateAttr(default=False)
    _refresh_thread: threading.Thread | None = PrivateAttr(default=None)
    _async_template: Any = PrivateAttr(default=None)
    _loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = PrivateAttr(
        default_factory=weakref.WeakKeyDictionary
    )

    def __init__(self, **kwargs: Any) -> None:
        try:
            super().__init__(**kwargs)
        except ValidationError as exc:  # surface our own configuration errors as-is
            for error in exc.errors():
                cause = (error.get("ctx") or {}).get("error")
                if isinstance(cause, KimiConfigurationError):
                    raise cause from None
                if error.get("loc") == ("reasoning_effort",):
                    msg = (
                        f"reasoning_effort={error.get('input')!r} is not a Kimi reasoning "
                        "effort: use 'low', 'high' or 'max' (kimi-k3), or None."
                    )
                    raise KimiConfigurationError(msg) from None
            raise
        # A LangChain profile given by the caller is kept as is; ours follows the data.
        self._auto_profile = kwargs.get("profile") is None

    # ------------------------------------------------------------------ LangChain plumbing

    @property
    def _llm_type(self) -> str:
        """Return the type of chat model."""
        return "kimi-chat"

    @property
    def lc_secrets(self) -> dict[str, str]:
        """Map the API key field to its environment variable (never serialised).

        Example:
            >>> KimiChatModel(api_key="k").lc_secrets
            {'openai_api_key': 'MOONSHOT_API_KEY'}
        """
        return {"openai_api_key": "MOONSHOT_API_KEY"}

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """Return the LangChain serialisation namespace.

        Returns:
            ``["langchain_kimi_context", "chat_models"]``.

        Example:
            >>> KimiChatModel.get_lc_namespace()
            ['langchain_kimi_context', 'chat_models']
        """
        return ["langchain_kimi_context", "chat_models"]

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """Return ``True``: the model can be serialised (without its key).

        Returns:
            ``True``.

        Example:
            >>> KimiChatModel.is_lc_serializable()
            True
        """
        return True

    @property
    def lc_attributes(self) -> dict[str, Any]:
        """Attributes serialised in addition to the constructor arguments.

        Example:
            >>> KimiChatModel(api_key="k", base_url="http://127.0.0.1:8765/v1").lc_attributes
            {'openai_api_base': 'http://127.0.0.1:8765/v1'}
        """
        attributes: dict[str, Any] = {}
        if self.openai_api_base and self.openai_api_base != DEFAULT_BASE_URL:
            attributes["openai_api_base"] = self.openai_api_base
        return attributes

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """Standard tracing params, with ``ls_provider="moonshot"``."""
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = _PROVIDER
        return params

    def _use_responses_api(self, payload: dict) -> bool:
        """Kimi has no Responses API: always use Chat Completions."""
        return False

    # ------------------------------------------------------------------ validation

    @model_validator(mode="before")
    @classmethod
    def _require_moonshot_key(cls, values: Any) -> Any:
        """Refuse to start without a Moonshot key (never fall back to OPENAI_API_KEY)."""
        if isinstance(values, dict):
            has_key = any(values.get(k) is not None for k in ("api_key", "openai_api_key"))
            env = secret_from_env("MOONSHOT_API_KEY", default=None)()
            if not has_key and env is None:
                msg = (
                    "No Moonshot API key: set the MOONSHOT_API_KEY environment variable or "
                    "pass KimiChatModel(api_key=...). (OPENAI_API_KEY is deliberately not "
                    "used.) For offline use, start langchain_kimi_context.testing."
                    "KimiEmulator and pass its base_url and api_key."
                )
                raise KimiConfigurationError(msg)
        return values

    @model_validator(mode="after")
    def _setup_kimi(self) -> Self:
        """Validate Kimi settings, disable client retries, resolve profile and strategy."""
        if self.profile_overrides:
            try:
                get_profile(self.model_name, self.profile_overrides)
            except TypeError as exc:
                raise KimiConfigurationError(f"profile_overrides: {exc}") from None
        if self.max_retries is not None and self.max_retries < 0:
            msg = f"max_retries={self.max_retries} must be >= 0."
            raise KimiConfigurationError(msg)
        base = self.openai_api_base
        if base is not None and not base.lower().startswith(("http://", "https://")):
            # without a scheme every call ends, after the retries, in "Connection error."
            example = f"'https://{base.lstrip('/')}'" if base.strip() else "unset it"
            msg = (
                f"base_url {base!r} (MOONSHOT_BASE_URL or base_url=...) must be a full URL "
                f"with http:// or https:// (e.g. {example}); Moonshot's are "
                "https://api.moonshot.cn/v1 (the default) and https://api.moonshot.ai/v1."
            )
            raise KimiConfigurationError(msg)
        profile = self.model_profile
        self._validate_sampling(
            {
                "temperature": self.temperature,
                "top_p": self.top_p,
                "n": self.n,
                "presence_penalty": self.presence_penalty,
                "frequency_penalty": self.frequency_penalty,
            },
            profile,
            where="KimiChatModel(...)",
            thinking=self._thinking_on(self.thinking, profile),
        )
        self._validate_stop(self.stop)
        self._validate_thinking(self.thinking, profile)
        self._validate_effort(self.reasoning_effort, profile)
        # The model retries (only retryable errors); the SDK must not retry on its own.
        if self.root_client is not None:
            self.root_client = self.root_client.with_options(max_retries=0)
            self.client = self.root_client.chat.completions
        if self.root_async_client is not None:
            self.root_async_client = self.root_async_client.with_options(max_retries=0)
            self.async_client = self.root_async_client.chat.completions
            if self.http_async_client is None:
                self._async_template = self.root_async_client
        self._cache_strategy = (
            cast(CacheStrategy, self.cache_strategy)
            if self.cache_strategy is not None
            else _default_cache_strategy(self)
        )
        return self

    @staticmethod
    def _thinking_on(thinking: bool | None, profile: KimiModelProfile) -> bool:
        """Whether a request runs with thinking (the profile's mode + the toggle)."""
        return thinking_on(profile, thinking)

    @staticmethod
    def _validate_sampling(
        params: Mapping[str, Any], profile: KimiModelProfile, *, where: str, thinking: bool
    ) -> None:
        temperature = params.get("temperature")
        if temperature is not None and not 0.0 <= float(temperature) <= 1.0:
            msg = (
                f"temperature={temperature} is out of range: Kimi accepts values in [0, 1] "
                f"(in {where}; model {profile.name!r}, default {profile.default_temperature})."
            )
            raise KimiConfigurationError(msg)
        for name, fixed in profile.fixed_params_for(thinking=thinking).items():
            value = params.get(name)
            if value is not None and value != fixed:
                msg = (
                    f"{name}={value!r} is not allowed for {profile.name!r}: the model fixes "
                    f"{name} to {fixed!r}. Remove {name} (in {where}) or use a model "
                    f"without fixed sampling parameters."
                )
                raise KimiConfigurationError(msg)
        n = params.get("n")
        if n is not None and n > _MAX_N:
            msg = f"n={n} is too large: Kimi returns at most {_MAX_N} choices (in {where})."
            raise KimiConfigurationError(msg)
        if (
            n is not None
            and n > 1
            and temperature is not None
            and temperature < _NEAR_ZERO_TEMPERATURE
        ):
            msg = (
                f"n={n} needs a temperature above ~0 (got {temperature}): Kimi rejects "
                f"several choices at temperature near 0 (in {where})."
            )
            raise KimiConfigurationError(msg)

    @staticmethod
    def _validate_stop(stop: str | list[str] | None) -> None:
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        too_long = [s for s in stops if len(s.encode()) > _MAX_STOP_BYTES]
        if len(stops) > _MAX_STOP or too_long:
            msg = (
                f"stop sequences: Kimi accepts at most {_MAX_STOP} strings of at most "
                f"{_MAX_STOP_BYTES} bytes each; got {len(stops)}"
                + (f", too long: {too_long!r}" if too_long else "")
                + "."
            )
            raise KimiConfigurationError(msg)

    @staticmethod
    def _validate_thinking(thinking: bool | None, profile: KimiModelProfile) -> None:
        if thinking is False and profile.thinking == "always":
            msg = (
                f"thinking=False is not possible for {profile.name!r}: it always thinks. "
                f"Use a model with a thinking switch (e.g. kimi-k2.6 with thinking=False)."
            )
            raise KimiConfigurationError(msg)
        if thinking is True and profile.thinking == "off":
            msg = (
                f"thinking=True: {profile.name!r} has no thinking mode according to its "
                f"profile. Use a thinking model, or if the profile is outdated pass "
                f"profile_overrides={{'thinking': 'default_on'}}."
            )
            raise KimiConfigurationError(msg)

    @staticmethod
    def _validate_effort(effort: Any, profile: KimiModelProfile) -> None:
        if effort is None:
            return
        if not profile.reasoning_efforts:
            msg = (
                f"reasoning_effort={effort!r}: {profile.name!r} takes no reasoning_effort "
                f"(its reasoning is "
                + (
                    "switched with thinking=True/False)."
                    if profile.thinking == "default_on"
                    else "not configurable)."
                )
                + " Remove reasoning_effort, or use kimi-k3 (low/high/max)."
            )
            raise KimiConfigurationError(msg)
        if effort not in profile.reasoning_efforts:
            msg = (
                f"reasoning_effort={effort!r} is not accepted by {profile.name!r}; use one of "
                f"{list(profile.reasoning_efforts)} (or None for the server default)."
            )
            raise KimiConfigurationError(msg)

    def _bind_async_client_to_loop(self) -> None:
        """Use an HTTP connection pool owned by the running event loop.

        langchain-openai shares one cached async HTTP client between models, whose
        pooled connections belong to the loop that opened them; a second
        ``asyncio.run(...)`` (or a test framework's per-test loop) then fails with
        "Event loop is closed". Each loop gets its own pool here (unless the caller
        passed ``http_async_client``).
        """
        if self._async_template is None:
            return
        loop = asyncio.get_running_loop()
        client = self._loop_clients.get(loop)
        if client is None:
            client = self._async_template.with_options(http_client=openai.DefaultAsyncHttpxClient())
            self._loop_clients[loop] = client
        if self.root_async_client is not client:
            self.root_async_client = client
            self.async_client = client.chat.completions

    # ------------------------------------------------------------------ profiles

    def _profile_for(self, model: str | None) -> KimiModelProfile:
        name = model or self.model_name
        overrides = self.profile_overrides if name == self.model_name else None
        profile = get_profile(name, overrides)
        learned = self._learned_windows.get(name)
        if learned is not None and learned != profile.context_window:
            profile = profile.replace(context_window=learned, source="learned")
        return profile

    @property
    def model_profile(self) -> KimiModelProfile:
        """The model's :class:`~langchain_kimi_context.profiles.KimiModelProfile`.

        Built-in data, then ``profile_overrides``, then a window learned with
        :meth:`learn_context_window` (or from an overflow error).

        Example:
            >>> KimiChatModel(model="moonshot-v1-8k", api_key="k").model_profile.context_window
            8192
        """
        return self._profile_for(self.model_name)

    def _resolve_model_profile(self) -> ModelProfile | None:
        lc = self.model_profile.to_langchain_profile()
        return cast(ModelProfile, {k: v for k, v in lc.items() if k in _LC_PROFILE_KEYS})

    def _sync_langchain_profile(self) -> None:
        if self._auto_profile:
            self.profile = self._resolve_model_profile()

    def learn_context_window(self, window: int, *, model: str | None = None) -> None:
        """Use ``window`` as the model's context window from now on.

        Called with the window named by a server overflow error (the model does this
        itself for :class:`~langchain_kimi_context.errors.KimiAPIContextOverflowError`).
        Updates :attr:`model_profile` and ``profile["max_input_tokens"]``.

        Args:
            window: The context window in tokens.
            model: The model id it applies to (default: this model's).

        Raises:
            KimiConfigurationError: If ``window`` is not a positive integer.

        Example:
            >>> m = KimiChatModel(model="kimi-k2.6", api_key="k")
            >>> m.learn_context_window(131072)
            >>> m.model_profile.context_window, m.profile["max_input_tokens"]
            (131072, 131072)
        """
        if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
            msg = f"window must be a positive number of tokens, got {window!r}."
            raise KimiConfigurationError(msg)
        self._learned_windows[model or self.model_name] = window
        self._sync_langchain_profile()

    def refresh_profile(self) -> KimiModelProfile:
        """Refresh context windows from the server's ``GET /v1/models``.

        Registers the windows process-wide (see
        :func:`~langchain_kimi_context.profiles.update_profiles_from_models_payload`).

        Returns:
            The refreshed profile of this model.

        Example:
            >>> model.refresh_profile().source  # doctest: +SKIP
            '/v1/models'
        """
        try:
            page = self.root_client.models.list()
        except openai.APIStatusError as exc:
            raise self._translate_error(exc, self.model_name) from exc
        update_profiles_from_models_payload([m.model_dump() for m in page.data])
        self._sync_langchain_profile()
        return self.model_profile

    def _refresh_guessed_profile(self) -> None:
        """Once per model, refresh a guessed profile from ``/v1/models`` in the background.

        Only for ids the catalog does not know (the window is a guess); never blocks a
        call, and a failure only leaves the guess in place (logged at INFO).
        """
        if self._refresh_tried or self.root_client is None:
            return
        with _REFRESH_LOCK:  # concurrent first calls start one refresh
            claimed, self._refresh_tried = not self._refresh_tried, True
        if not claimed or not self.model_profile.is_guess:
            return
        thread = threading.Thread(
            target=self._refresh_quietly, name="kimi-refresh-profile", daemon=True
        )
        self._refresh_thread = thread
        thread.start()

    def _refresh_quietly(self) -> None:
        try:
            profile = self.refresh_profile()
        except Exception as exc:  # never fatal: the guessed profile stays in use
            _LOGGER.info(
                "Could not refresh the profile of %s from /v1/models (%s); using the "
                "guessed window %s.",
                self.model_name,
                type(exc).__name__,
                self.model_profile.context_window,
            )
            return
        _LOGGER.debug("Profile of %s refreshed: %s", self.model_name, profile.source)

    async def arefresh_profile(self) -> KimiModelProfile:
        """Async :meth:`refresh_profile`.

        Returns:
            The refreshed profile of this model.

        Example:
            >>> await model.arefresh_profile()  # doctest: +SKIP
        """
        self._bind_async_client_to_loop()
        try:
            page = await self.root_async_client.models.list()
        except openai.APIStatusError as exc:
            raise self._translate_error(exc, self.model_name) from exc
        update_profiles_from_models_payload([m.model_dump() for m in page.data])
        self._sync_langchain_profile()
        return self.model_profile

    # ------------------------------------------------------------------ tools

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: dict | str | bool | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        response_format: Any = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; Kimi builtin tools (``$web_search``) are passed through as-is.

        Args:
            tools: Tools as accepted by ``ChatOpenAI.bind_tools`` plus
                :data:`WEB_SEARCH_TOOL`-style ``{"type": "builtin_function", ...}`` dicts.
            tool_choice: As in ``ChatOpenAI.bind_tools``.
            strict: As in ``ChatOpenAI.bind_tools``.
            parallel_tool_calls: As in ``ChatOpenAI.bind_tools``.
            response_format: As in ``ChatOpenAI.bind_tools``.
            **kwargs: Bound to every call.

        Returns:
            The model with the tools bound.

        Example:
            >>> m = KimiChatModel(api_key="k").bind_tools([WEB_SEARCH_TOOL])
            >>> m.kwargs["tools"][0]["function"]["name"]
            '$web_search'
        """
        regular = [t for t in tools if not _is_builtin_tool(t)]
        bound = super().bind_tools(
            regular,
            tool_choice=tool_choice,
            strict=strict,
            parallel_tool_calls=parallel_tool_calls,
            response_format=response_format,
            **kwargs,
        )
        bound_kwargs = cast(RunnableBinding, bound).kwargs
        thinking = bound_kwargs.get("thinking", self.thinking)
        plan = plan_tool_choice(bound_kwargs.get("tool_choice"), self.model_profile, thinking)
        if plan.action == "refuse":  # before any request
            raise KimiConfigurationError(plan.reason)
        web = plan_web_search(tools, self.model_profile, thinking)
        if web.action == "refuse":
            raise KimiConfigurationError(web.reason)
        if len(regular) == len(tools):
            return bound
        formatted = iter(cast(RunnableBinding, bound).kwargs.get("tools", []))
        merged = [
            dict(cast(Mapping[str, Any], t)) if _is_builtin_tool(t) else next(formatted)
            for t in tools
        ]
        return self.bind(**{**cast(RunnableBinding, bound).kwargs, "tools": merged})

    def with_structured_output(
        self,
        schema: Any = None,
        *,
        method: Literal["function_calling", "json_mode", "json_schema"] = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        tools: list | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Return a runnable whose output follows ``schema``, on every Kimi model.

        ``"function_calling"`` (the default) forces the schema's tool. Where the model
        rejects a forced tool while thinking, the call is still made with a forced tool:
        kimi-k2.6 gets thinking switched off for that call, kimi-k3 gets ``"required"``
        over the one schema tool. On models that always think and cannot force a tool
        (kimi-k2.7-code) the method becomes ``"json_schema"`` (``response_format`` with
        the schema; the reply is still validated against it by the parser).

        Args:
            schema: As in ``ChatOpenAI.with_structured_output``.
            method: As in ``ChatOpenAI.with_structured_output``.
            include_raw: As in ``ChatOpenAI.with_structured_output``.
            strict: As in ``ChatOpenAI.with_structured_output``.
            tools: As in ``ChatOpenAI.with_structured_output``.
            **kwargs: As in ``ChatOpenAI.with_structured_output``.

        Returns:
            The structured-output runnable.

        Example:
            >>> schema = {"title": "Answer", "type": "object",
            ...           "properties": {"city": {"type": "string"}}, "required": ["city"]}
            >>> m = KimiChatModel(model="kimi-k2.7-code", api_key="k")
            >>> m.with_structured_output(schema).first.kwargs["response_format"]["type"]
            'json_schema'
        """
        if method == "function_calling":
            probe = {"type": "function", "function": {"name": "schema"}}
            if plan_tool_choice(probe, self.model_profile, self.thinking).action == "refuse":
                method = "json_schema"
        return super().with_structured_output(
            schema, method=method, include_raw=include_raw, strict=strict, tools=tools, **kwargs
        )

    # ------------------------------------------------------------------ tokens

    def get_num_tokens_from_messages(
        self,
        messages: Sequence[BaseMessage],
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool] | None = None,
        *,
        allow_fetching_images: bool = True,
    ) -> int:
        """Count the prompt tokens of ``messages`` (and ``tools``) locally.

        Delegates to :func:`langchain_kimi_context.tokens.count_tokens_for_model` (the
        process-wide :class:`~langchain_kimi_context.tokens.TokenCounter`): Kimi's chat
        template, tool schemas and replayed ``reasoning_content`` included. No network.

        Args:
            messages: The messages.
            tools: Tool schemas sent with them.
            allow_fetching_images: Unused (kept for signature compatibility).

        Returns:
            The estimated prompt token count.

        Example:
            >>> from langchain_core.messages import HumanMessage
            >>> KimiChatModel(api_key="k").get_num_tokens_from_messages(
            ...     [HumanMessage("hello world")]) > 0
            True
        """
        return count_tokens_for_model(messages, tools, model=self.model_name)

    def get_num_tokens(self, text: str) -> int:
        """Count the tokens of ``text`` with the process-wide token counter.

        Args:
            text: The text.

        Returns:
            The estimated token count.

        Example:
            >>> KimiChatModel(api_key="k").get_num_tokens("hello world") > 0
            True
        """
        return default_token_counter().count_text(text)

    # ------------------------------------------------------------------ request payload

    def _get_request_payload(
        self,
        input_: LanguageModelInput,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> dict:
        prepared = kwargs.pop("_kimi_payload", None)
        if prepared is not None:
            return cast(dict, prepared)
        thinking = kwargs.pop("thinking", self.thinking)
        messages = self._convert_input(input_).to_messages()
        payload = super()._get_request_payload(messages, stop=stop, **kwargs)
        profile = self._profile_for(payload.get("model"))
        self._refuse_retired(profile)
        thinks = self._thinking_on(thinking, profile)
        self._validate_sampling(payload, profile, where="the call's parameters", thinking=thinks)
        if stop is not None:
            self._validate_stop(stop)
        self._validate_thinking(thinking, profile)
        self._validate_effort(payload.get("reasoning_effort"), profile)
        plan = plan_tool_choice(payload.get("tool_choice"), profile, thinking)
        if plan.action == "refuse":
            raise KimiConfigurationError(plan.reason)
        if plan.action == "narrow":
            # "required" over exactly the named tool forces the same call.
            payload["tools"] = [
                t
                for t in payload.get("tools") or []
                if (t.get("function") or {}).get("name") == plan.tool
            ]
            payload["tool_choice"] = "required"
        web = plan_web_search(payload.get("tools"), profile, thinking)
        if web.action == "refuse":
            raise KimiConfigurationError(web.reason)
        if "thinking_off" in (plan.action, web.action):
            _LOGGER.debug("%s Sending thinking disabled for this call.", plan.reason or web.reason)
            thinking, thinks = False, False
        # Locked sampling parameters: validated above, never sent (in either mode).
        locked = {
            *profile.fixed_params_for(thinking=True),
            *profile.fixed_params_for(thinking=False),
        }
        for name in locked:
            payload.pop(name, None)
        if "max_tokens" not in payload and "max_completion_tokens" not in payload:
            payload["max_tokens"] = self._default_output_budget(messages, payload, profile)
        if thinking is not None and profile.thinking == "default_on" and profile.thinking_switch:
            extra = dict(payload.get("extra_body") or {})
            extra.setdefault("thinking", {"type": "enabled" if thinking else "disabled"})
            payload["extra_body"] = extra
        payload["messages"] = [
            self._kimi_message(message, converted, thinking=thinks)
            for message, converted in zip(messages, payload["messages"], strict=True)
        ]
        return payload

    @staticmethod
    def _default_output_budget(
        messages: Sequence[BaseMessage], payload: Mapping[str, Any], profile: KimiModelProfile
    ) -> int:
        """``max_tokens`` when the caller set none: the profile's, within the window's room.

        Thinking models need a large budget (reasoning is output), but input + max_tokens
        must fit the window or the request is refused; the budget shrinks to the room
        left by the (locally estimated, with a margin) prompt, never below
        ``_MIN_OUTPUT_BUDGET`` (a prompt that leaves less overflows either way).
        """
        budget = profile.default_max_tokens
        estimate = count_tokens_for_model(messages, payload.get("tools"), model=profile.name)
        room = profile.context_window - int(estimate * _PROMPT_ESTIMATE_MARGIN)
        return max(min(budget, room), min(budget, _MIN_OUTPUT_BUDGET))

    def _refuse_retired(self, profile: KimiModelProfile) -> None:
        """Raise the retired-model error before a request to Moonshot's own endpoints."""
        if profile.lifecycle != "retired":
            return
        host = urlsplit(self.openai_api_base or DEFAULT_BASE_URL).hostname or ""
        if host.lower() in _MOONSHOT_HOSTS:
            raise KimiModelRetiredError(
                profile.name, retired_on=profile.retired_on, replacement=profile.replacement
            )

    @staticmethod
    def _kimi_message(
        message: BaseMessage, converted: dict[str, Any], *, thinking: bool = False
    ) -> dict[str, Any]:
        """Apply Kimi's rules to one converted message (never mutates ``message``).

        Reasoning is replayed on every assistant message that has it (empty strings
        included); in a thinking request every assistant message carries the field, an
        empty one when the reasoning is unknown (the API rejects tool-call turns without it
        with 400 "thinking is enabled but reasoning_content is missing ...").
        """
        if not isinstance(message, AIMessage) or converted.get("role") != "assistant":
            return converted
        if converted.get("tool_calls") and not converted.get("content"):
            converted.pop("content", None)
        reasoning = _reasoning_from_message(message)
        if reasoning is not None and (thinking or converted.get("tool_calls")):
            converted["reasoning_content"] = reasoning
        elif thinking:
            converted["reasoning_content"] = ""
        if message.additional_kwargs.get("partial"):
            converted["partial"] = True
        return converted

    # ------------------------------------------------------------------ responses

    def _create_chat_result(
        self,
        response: dict | openai.BaseModel,
        generation_info: dict | None = None,
    ) -> ChatResult:
        result = super()._create_chat_result(response, generation_info)
        body = (
            response
            if isinstance(response, dict)
            else response.model_dump(
                exclude={"choices": {"__all__": {"message": {"parsed"}}}}, warnings=False
            )
        )
        usage = _usage_of(body)
        for generation, choice in zip(result.generations, body.get("choices") or [], strict=False):
            message = generation.message
            message.response_metadata["model_provider"] = _PROVIDER
            reasoning = (choice.get("message") or {}).get("reasoning_content")
            if isinstance(reasoning, str):  # empty reasoning is kept: it is replayed
                message.additional_kwargs["reasoning_content"] = reasoning
            if usage and isinstance(message, AIMessage):
                message.usage_metadata = _usage_metadata(usage)
        if result.llm_output is not None:
            result.llm_output["model_provider"] = _PROVIDER
            if usage:
                result.llm_output["token_usage"] = dict(usage)
        return result

    def _convert_chunk_to_generation_chunk(
        self,
        chunk: dict,
        default_chunk_class: type,
        base_generation_info: dict | None,
    ) -> ChatGenerationChunk | None:
        generation = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info
        )
        if generation is None or not isinstance(generation.message, AIMessageChunk):
            return generation
        message = generation.message
        if message.response_metadata.get("model_provider"):
            message.response_metadata["model_provider"] = _PROVIDER
        choices = chunk.get("choices") or []
        if choices:
            reasoning = (choices[0].get("delta") or {}).get("reasoning_content")
            if isinstance(reasoning, str):  # empty reasoning is kept: it is replayed
                message.additional_kwargs["reasoning_content"] = reasoning
        usage = _usage_of(chunk)
        if usage:
            message.usage_metadata = _usage_metadata(usage)
            generation.generation_info = {
                **(generation.generation_info or {}),
                "token_usage": dict(usage),
            }
        return generation

    # ------------------------------------------------------------------ errors & retries

    def _api_key_text(self) -> str | None:
        key = self.openai_api_key
        return key.get_secret_value() if isinstance(key, SecretStr) else None

    def _translate_error(self, exc: BaseException, model: str | None) -> BaseException:
        """Typed package error for ``exc``; learns the window from overflow errors."""
        err = from_openai_error(exc) if isinstance(exc, openai.APIStatusError) else exc
        if (
            isinstance(exc, openai.APIConnectionError)
            and not isinstance(exc, openai.APITimeoutError | KimiConnectionError)
            and is_unreachable_error(exc)
        ):  # refused, DNS: never reached; name the endpoint
            root: BaseException = exc
            while (inner := root.__cause__ or root.__context__) is not None:
                root = inner  # the socket-level error (refused, name not resolved...)
            url = str(self.openai_api_base or exc.request.url)
            err = KimiConnectionError(url, str(root) or exc.message, request=exc.request)
        if isinstance(err, KimiAPIContextOverflowError):
            err.model = model or self.model_name
            # Learn only a smaller window: an error never buys more room than we had.
            if err.window and err.window < self._profile_for(err.model).context_window:
                self.learn_context_window(err.window, model=err.model)
        secret = self._api_key_text()
        if secret and secret in str(err):
            err.args = tuple(_redact(str(a), secret) for a in err.args)
            if hasattr(err, "message"):
                err.message = _redact(str(err.message), secret)
        return err

    def _retry_delay(self, err: BaseException, attempt: int) -> float | None:
        """Seconds to wait before retrying ``err``, or ``None`` to give up."""
        if attempt >= (self.max_retries or 0) or not is_retryable_error(err):
            return None
        info = getattr(err, "info", None)
        hint = getattr(info, "retry_after", None)
        if hint is not None:
            return float(hint) if hint <= self.max_retry_wait else None
        return min(0.5 * 2**attempt, 8.0) * (0.5 + random.random() / 2)  # noqa: S311

    def _fail(
        self, exc: Exception, model: str | None, attempt: int, *, retry: bool = True
    ) -> float:
        """Translate ``exc``; return the retry delay or raise the typed error."""
        err = self._translate_error(exc, model)
        delay = self._retry_delay(err, attempt) if retry else None
        if delay is None:
            if err is exc:
                raise exc
            secret = self._api_key_text()
            if secret and secret in str(exc):
                raise err from None
            raise err from exc
        return delay

    @staticmethod
    def _check_output_limit(
        finish: Any, answered: bool, reasoning: Any, payload: Mapping[str, Any]
    ) -> None:
        """Report a reply cut by ``max_tokens`` (``finish_reason="length"``).

        A cut with no answer at all (the reasoning used the whole budget) raises
        :class:`~langchain_kimi_context.errors.KimiOutputLimitError`; a cut answer is
        returned as is (``finish_reason`` says so) with a warning in the log.
        """
        if finish != "length":
            return
        budget = payload.get("max_tokens") or payload.get("max_completion_tokens")
        model = str(payload.get("model") or "")
        if not answered:
            msg = (
                f"{model} spent the whole output budget (max_tokens={budget}) "
                f"{'reasoning' if reasoning else 'without answering'} and returned no answer "
                "(finish_reason='length'). Thinking models count reasoning as output: raise "
                "max_tokens (e.g. KimiChatModel(max_tokens=32768)) or lower reasoning_effort."
            )
            raise KimiOutputLimitError(
                msg, model=model, max_tokens=budget, reasoning=str(reasoning or "")
            )
        _LOGGER.warning(
            "%s reply was cut at max_tokens=%s (finish_reason='length'); raise max_tokens "
            "for complete answers.",
            model,
            budget,
        )

    @classmethod
    def _check_reply(cls, generation: Any, payload: Mapping[str, Any]) -> None:
        message = generation.message
        if isinstance(message, AIMessage):
            finish = (generation.generation_info or {}).get("finish_reason")
            cls._check_output_limit(
                finish or message.response_metadata.get("finish_reason"),
                bool(message.text.strip() or message.tool_calls or message.invalid_tool_calls),
                message.additional_kwargs.get("reasoning_content"),
                payload,
            )
        cls._check_not_empty(message)

    @staticmethod
    def _check_not_empty(message: BaseMessage) -> None:
        if not isinstance(message, AIMessage):
            return
        has_text = bool(message.text.strip()) if message.content else False
        has_tools = bool(message.tool_calls or message.invalid_tool_calls)
        has_chunks = isinstance(message, AIMessageChunk) and bool(message.tool_call_chunks)
        has_reasoning = bool(message.additional_kwargs.get("reasoning_content"))
        if not (has_text or has_tools or has_chunks or has_reasoning):
            finish = message.response_metadata.get("finish_reason")
            msg = (
                f"Kimi returned an empty reply (no content, no tool calls, no reasoning; "
                f"finish_reason={finish!r}). The call may be retried."
            )
            raise KimiEmptyResponseError(msg)

    def _call_context(
        self, kwargs: dict[str, Any], run_manager: Any
    ) -> tuple[str | None, str | None]:
        self._refresh_guessed_profile()
        self._sync_langchain_profile()  # the profile registry may have changed
        session = resolve_session_id(
            kwargs.pop("session_id", None),
            self.session_id,
            run_metadata=getattr(run_manager, "metadata", None),
        )
        return session, kwargs.get("model") or self.model_name

    def _record(
        self, payload: Mapping[str, Any], usage: Mapping[str, Any] | None, session: str | None
    ) -> dict[str, Any]:
        return dict(self._cache_strategy.record(payload, usage, session_id=session) or {})

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        session, model = self._call_context(kwargs, run_manager)
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        payload = self._cache_strategy.prepare(payload, session_id=session)
        attempt = 0
        while True:
            try:
                result = super()._generate(
                    messages, stop, run_manager, _kimi_payload=dict(payload), **kwargs
                )
                for generation in result.generations:
                    self._check_reply(generation, payload)
                break
            except Exception as exc:
                _sleep(self._fail(exc, model, attempt))
                attempt += 1
        return self._finish_result(result, payload, session)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._bind_async_client_to_loop()
        session, model = self._call_context(kwargs, run_manager)
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        payload = await self._cache_strategy.aprepare(payload, session_id=session)
        attempt = 0
        while True:
            try:
                result = await super()._agenerate(
                    messages, stop, run_manager, _kimi_payload=dict(payload), **kwargs
                )
                for generation in result.generations:
                    self._check_reply(generation, payload)
                break
            except Exception as exc:
                await _async_sleep(self._fail(exc, model, attempt))
                attempt += 1
        return self._finish_result(result, payload, session)

    def _finish_result(
        self, result: ChatResult, payload: Mapping[str, Any], session: str | None
    ) -> ChatResult:
        usage = (result.llm_output or {}).get("token_usage") or None
        extra = self._record(payload, usage, session)
        if extra:
            for generation in result.generations:
                generation.generation_info = {**(generation.generation_info or {}), **extra}
        return result

    def _stream_payload(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        stream_usage: bool | None,
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        """Build the payload exactly as ``BaseChatOpenAI._stream`` would."""
        kwargs["stream"] = True
        if self._should_stream_usage(stream_usage, **kwargs):
            kwargs["stream_options"] = {"include_usage": True}
        return self._get_request_payload(messages, stop=stop, **kwargs)

    def _track_chunk(
        self,
        chunk: ChatGenerationChunk,
        state: dict[str, Any],
        payload: Mapping[str, Any],
        session: str | None,
    ) -> ChatGenerationChunk:
        """Dedupe usage, remember content, attach ``record`` output to the usage chunk."""
        message = chunk.message
        if isinstance(message, AIMessageChunk):
            if message.usage_metadata is not None:
                info = dict(chunk.generation_info or {})
                usage = info.get("token_usage")
                if state["recorded"]:
                    message.usage_metadata = None  # usage sent twice: count it once
                    info.pop("token_usage", None)
                else:
                    state["recorded"] = True
                    info.update(self._record(payload, usage, session))
                chunk.generation_info = info or None
            if message.text.strip() or message.tool_call_chunks:
                state["answered"] = True
            if state.get("answered") or message.additional_kwargs.get("reasoning_content"):
                state["content"] = True
            if message.additional_kwargs.get("reasoning_content"):
                state["reasoning"] = True
            if chunk.generation_info and chunk.generation_info.get("finish_reason"):
                state["finish_reason"] = chunk.generation_info["finish_reason"]
        return chunk

    def _stream_end(
        self, state: dict[str, Any], payload: Mapping[str, Any], session: str | None
    ) -> ChatGenerationChunk | None:
        self._check_output_limit(
            state.get("finish_reason"),
            bool(state.get("answered")),
            "(streamed)" if state.get("reasoning") else "",
            payload,
        )
        if not state["content"]:
            msg = (
                f"Kimi streamed an empty reply (no content, no tool calls, no reasoning; "
                f"finish_reason={state.get('finish_reason')!r}). The call may be retried."
            )
            raise KimiEmptyResponseError(msg)
        if state["recorded"]:
            return None
        extra = self._record(payload, None, session)
        return (
            ChatGenerationChunk(message=AIMessageChunk(content=""), generation_info=extra)
            if extra
            else None
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        *,
        stream_usage: bool | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        session, model = self._call_context(kwargs, run_manager)
        payload = self._stream_payload(messages, stop, stream_usage, kwargs)
        payload = self._cache_strategy.prepare(payload, session_id=session)
        state: dict[str, Any] = {"recorded": False, "content": False}
        attempt = 0
        while True:
            started = False
            try:
                for chunk in super()._stream(
                    messages, stop, run_manager, _kimi_payload=dict(payload), **kwargs
                ):
                    started = True
                    yield self._track_chunk(chunk, state, payload, session)
                break
            except Exception as exc:
                _sleep(self._fail(exc, model, attempt, retry=not started))
                attempt += 1
        last = self._stream_end(state, payload, session)
        if last is not None:
            yield last

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        *,
        stream_usage: bool | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        self._bind_async_client_to_loop()
        session, model = self._call_context(kwargs, run_manager)
        payload = self._stream_payload(messages, stop, stream_usage, kwargs)
        payload = await self._cache_strategy.aprepare(payload, session_id=session)
        state: dict[str, Any] = {"recorded": False, "content": False}
        attempt = 0
        while True:
            started = False
            try:
                async for chunk in super()._astream(
                    messages, stop, run_manager, _kimi_payload=dict(payload), **kwargs
                ):
                    started = True
                    yield self._track_chunk(chunk, state, payload, session)
                break
            except Exception as exc:
                await _async_sleep(self._fail(exc, model, attempt, retry=not started))
                attempt += 1
        last = self._stream_end(state, payload, session)
        if last is not None:
            yield last

    # ------------------------------------------------------------------ lifecycle

    @property
    def ledger(self) -> Any:
        """The cache strategy's cost ledger (``ledger.session(id)``), or ``None``.

        Example:
            >>> KimiChatModel(api_key="k").ledger.total().calls
            0
        """
        return getattr(self._cache_strategy, "ledger", None)

    def close(self) -> None:
        """Release what the cache strategy holds.

        The sync HTTP client is shared with other models (langchain-openai caches it per
        base URL) and stays open; :meth:`aclose` also closes this model's async pool.

        Example:
            >>> KimiChatModel(api_key="k").close()
        """
        self._cache_strategy.close()

    async def aclose(self) -> None:
        """Async :meth:`close`; also closes this model's pool for the running loop.

        Example:
            >>> import asyncio
            >>> asyncio.run(KimiChatModel(api_key="k").aclose())
        """
        await self._cache_strategy.aclose()
        client = self._loop_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
