"""``KimiChatModel``: the LangChain chat model class for the Kimi (Moonshot) API.

Contract: a ``BaseChatOpenAI`` subclass whose fields are the Kimi settings and whose
methods wire the base class to the package's rules; the rules themselves live in the
sibling modules (:mod:`.request` for the payload, :mod:`.response` for replies and
streams, :mod:`.retrying` for errors and the retry decision, :mod:`.cache_seam` for the
cache strategy) and in the model layer (:mod:`langchain_kimi_context.profiles`,
:mod:`langchain_kimi_context.backoff`, :mod:`langchain_kimi_context.usage`).

- The model's profile is ``get_profile(model, profile_overrides)``: built-in data, the
  overrides, and the process-wide learned windows of
  :func:`langchain_kimi_context.profiles.learn_context_window` (the one store; an overflow
  error naming a smaller window teaches it).
- Every call: resolve the session id, build and check the payload, let the cache
  strategy prepare it, send it with the backoff drivers (a stream only until its first
  chunk), check and read the reply, let the cache strategy record it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Literal, NoReturn, Self, cast, get_type_hints

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LangSmithParams, LanguageModelInput, ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.tools import BaseTool
from langchain_core.utils import from_env, secret_from_env
from langchain_openai.chat_models.base import BaseChatOpenAI
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, model_validator

from langchain_kimi_context import profiles
from langchain_kimi_context.backoff import arun_with_retries, run_with_retries
from langchain_kimi_context.chat_models import retrying
from langchain_kimi_context.chat_models.cache_seam import (
    CacheStrategy,
    PassThroughCacheStrategy,
    default_cache_strategy,
    resolve_session_id,
)
from langchain_kimi_context.chat_models.request import (
    DEFAULT_BASE_URL,
    add_thinking_switch,
    apply_call_rules,
    default_output_budget,
    is_builtin_tool,
    kimi_message,
    refuse_retired,
    validate_effort,
    validate_sampling,
    validate_stop,
    validate_thinking,
)
from langchain_kimi_context.chat_models.response import (
    PROVIDER,
    StreamState,
    check_not_empty,
    check_reply,
    end_of_stream,
    read_chunk,
    read_reply,
    track_chunk,
)
from langchain_kimi_context.errors import KimiAPIContextOverflowError, KimiConfigurationError
from langchain_kimi_context.profiles import (
    DEFAULT_MODEL,
    KimiModelProfile,
    get_profile,
    update_profiles_from_models_payload,
)
from langchain_kimi_context.thinking_rules import plan_tool_choice, plan_web_search, thinking_on
from langchain_kimi_context.tokens import count_tokens_for_model, default_token_counter

__all__ = ["KimiChatModel"]

_LC_PROFILE_KEYS: Final = frozenset(get_type_hints(ModelProfile))
_LOGGER = logging.getLogger("langchain_kimi_context.chat_models")
_REFRESH_LOCK = threading.Lock()


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
        params["ls_provider"] = PROVIDER
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
        validate_sampling(
            {
                "temperature": self.temperature,
                "top_p": self.top_p,
                "n": self.n,
                "presence_penalty": self.presence_penalty,
                "frequency_penalty": self.frequency_penalty,
            },
            profile,
            where="KimiChatModel(...)",
            thinking=thinking_on(profile, self.thinking),
        )
        validate_stop(self.stop)
        validate_thinking(self.thinking, profile)
        validate_effort(self.reasoning_effort, profile)
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
            else default_cache_strategy(self)
        )
        return self

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

    # ------------------------------------------------------------------ profiles

    def _profile_for(self, model: str | None) -> KimiModelProfile:
        name = model or self.model_name
        return get_profile(name, self.profile_overrides if name == self.model_name else None)

    @property
    def model_profile(self) -> KimiModelProfile:
        """The model's :class:`~langchain_kimi_context.profiles.KimiModelProfile`.

        Built-in data, then ``profile_overrides``, then a smaller window learned
        process-wide (:meth:`learn_context_window`, or an overflow error).

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
        """Use ``window`` as the model's context window from now on, process-wide.

        Called with the window named by a server overflow error (the model does this
        itself for :class:`~langchain_kimi_context.errors.KimiAPIContextOverflowError`).
        The window goes to the one store of learned windows,
        :func:`langchain_kimi_context.profiles.learn_context_window`: every model instance,
        the window guard and the compaction trigger see it; only a window smaller than
        the known one is kept. Updates :attr:`model_profile` and
        ``profile["max_input_tokens"]``.

        Args:
            window: The context window in tokens.
            model: The model id it applies to (default: this model's).

        Raises:
            KimiConfigurationError: If ``window`` is not a positive integer.
        """
        if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
            msg = f"window must be a positive number of tokens, got {window!r}."
            raise KimiConfigurationError(msg)
        profiles.learn_context_window(model or self.model_name, window)
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
            >>> from langchain_kimi_context.chat_models import WEB_SEARCH_TOOL
            >>> m = KimiChatModel(api_key="k").bind_tools([WEB_SEARCH_TOOL])
            >>> m.kwargs["tools"][0]["function"]["name"]
            '$web_search'
        """
        regular = [t for t in tools if not is_builtin_tool(t)]
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
            dict(cast(Mapping[str, Any], t)) if is_builtin_tool(t) else next(formatted)
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
        refuse_retired(profile, self.openai_api_base)
        thinking, thinks = apply_call_rules(payload, profile, thinking, stop=stop)
        if "max_tokens" not in payload and "max_completion_tokens" not in payload:
            payload["max_tokens"] = default_output_budget(messages, payload, profile)
        add_thinking_switch(payload, profile, thinking)
        payload["messages"] = [
            kimi_message(message, converted, thinking=thinks)
            for message, converted in zip(messages, payload["messages"], strict=True)
        ]
        return payload

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
        return read_reply(result, body)

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
        return read_chunk(generation, chunk)

    _check_not_empty = staticmethod(check_not_empty)

    # ------------------------------------------------------------------ errors & retries

    def _api_key_text(self) -> str | None:
        key = self.openai_api_key
        return key.get_secret_value() if isinstance(key, SecretStr) else None

    def _translate_error(self, exc: BaseException, model: str | None) -> BaseException:
        """Typed package error for ``exc``; learns the window from overflow errors."""
        err = retrying.translate_error(
            exc, base_url=self.openai_api_base, secret=self._api_key_text()
        )
        if isinstance(err, KimiAPIContextOverflowError):
            err.model = model or self.model_name
            # Learn only a smaller window: an error never buys more room than we had.
            if err.window and err.window < self._profile_for(err.model).context_window:
                self.learn_context_window(err.window, model=err.model)
        return err

    def _raise_typed(self, exc: BaseException, model: str | None) -> NoReturn:
        retrying.raise_typed(exc, self._translate_error(exc, model), self._api_key_text())

    def _decide(self, model: str | None) -> Callable[[Exception, int], float | None]:
        """The retry decision of one call for the backoff drivers (raises to give up)."""

        def decide(exc: Exception, retry_number: int) -> float:
            err = self._translate_error(exc, model)
            delay = retrying.retry_delay(
                err,
                retry_number - 1,
                max_retries=self.max_retries or 0,
                max_wait=self.max_retry_wait,
            )
            if delay is None:
                retrying.raise_typed(exc, err, self._api_key_text())
            return delay

        return decide

    # ------------------------------------------------------------------ calls

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

    def _recorder(
        self, payload: Mapping[str, Any], session: str | None
    ) -> Callable[[Mapping[str, Any] | None], dict[str, Any]]:
        """The cache strategy's ``record`` for one call; its result goes to the reply."""

        def record(usage: Mapping[str, Any] | None) -> dict[str, Any]:
            return dict(self._cache_strategy.record(payload, usage, session_id=session) or {})

        return record

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

        def call() -> ChatResult:
            result = super(KimiChatModel, self)._generate(
                messages, stop, run_manager, _kimi_payload=dict(payload), **kwargs
            )
            for generation in result.generations:
                check_reply(generation, payload)
            return result

        result = run_with_retries(call, self._decide(model), sleep=lambda d: retrying._sleep(d))
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

        async def call() -> ChatResult:
            result = await super(KimiChatModel, self)._agenerate(
                messages, stop, run_manager, _kimi_payload=dict(payload), **kwargs
            )
            for generation in result.generations:
                check_reply(generation, payload)
            return result

        result = await arun_with_retries(
            call, self._decide(model), sleep=lambda d: retrying._async_sleep(d)
        )
        return self._finish_result(result, payload, session)

    def _finish_result(
        self, result: ChatResult, payload: Mapping[str, Any], session: str | None
    ) -> ChatResult:
        usage = (result.llm_output or {}).get("token_usage") or None
        extra = self._recorder(payload, session)(usage)
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
        record, state = self._recorder(payload, session), StreamState()

        def open_stream() -> tuple[list[ChatGenerationChunk], Iterator[ChatGenerationChunk]]:
            """Send the request and wait for the first chunk: the part that is retried."""
            chunks = super(KimiChatModel, self)._stream(
                messages, stop, run_manager, _kimi_payload=dict(payload), **kwargs
            )
            return list(itertools.islice(chunks, 1)), chunks

        first, rest = run_with_retries(
            open_stream, self._decide(model), sleep=lambda d: retrying._sleep(d)
        )
        try:
            for chunk in itertools.chain(first, rest):
                yield track_chunk(chunk, state, record)
        except Exception as exc:
            self._raise_typed(exc, model)
        last = end_of_stream(state, payload, record)
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
        record, state = self._recorder(payload, session), StreamState()

        async def open_stream() -> tuple[
            list[ChatGenerationChunk], AsyncIterator[ChatGenerationChunk]
        ]:
            """Send the request and wait for the first chunk: the part that is retried."""
            chunks = super(KimiChatModel, self)._astream(
                messages, stop, run_manager, _kimi_payload=dict(payload), **kwargs
            )
            first = await anext(chunks, None)
            return ([] if first is None else [first]), chunks

        first, rest = await arun_with_retries(
            open_stream, self._decide(model), sleep=lambda d: retrying._async_sleep(d)
        )
        try:
            for chunk in first:
                yield track_chunk(chunk, state, record)
            async for chunk in rest:
                yield track_chunk(chunk, state, record)
        except Exception as exc:
            self._raise_typed(exc, model)
        last = end_of_stream(state, payload, record)
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
