"""``BaseKimiChatModel``: the settings half of ``KimiChatModel``.

Contract: the fields of the model, their validation at construction (a bad setting
raises :class:`~langchain_kimi_context.errors.KimiConfigurationError` before any
request), the model's profile and LangChain's ``profile``, LangChain serialisation and
tracing plumbing, the HTTP clients (SDK retries off, one async pool per event loop),
typed errors, and closing. How a call runs is the other half,
:class:`langchain_kimi_context.chat_models.KimiChatModel` (:mod:`.model`).

- The model's profile is ``get_profile(model, profile_overrides)``: built-in data, the
  overrides, and the process-wide learned windows of
  :func:`langchain_kimi_context.profiles.learn_context_window` (the one store; an overflow
  error naming a smaller window teaches it). A guessed profile (an unknown model id) is
  refreshed once from ``GET /v1/models`` in the background.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Literal, Self, cast, get_type_hints

import openai
from langchain_core.language_models import LangSmithParams, ModelProfile
from langchain_core.utils import from_env, secret_from_env
from langchain_openai.chat_models.base import BaseChatOpenAI
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, model_validator

from langchain_kimi_context import profiles
from langchain_kimi_context.chat_models import retrying
from langchain_kimi_context.chat_models.cache_seam import (
    CacheStrategy,
    PassThroughCacheStrategy,
    default_cache_strategy,
)
from langchain_kimi_context.chat_models.request import (
    DEFAULT_BASE_URL,
    validate_effort,
    validate_sampling,
    validate_stop,
    validate_thinking,
)
from langchain_kimi_context.chat_models.response import PROVIDER
from langchain_kimi_context.errors import KimiAPIContextOverflowError, KimiConfigurationError
from langchain_kimi_context.profiles import (
    DEFAULT_MODEL,
    KimiModelProfile,
    get_profile,
    update_profiles_from_models_payload,
)
from langchain_kimi_context.thinking_rules import thinking_on

__all__ = ["BaseKimiChatModel"]

_LC_PROFILE_KEYS: Final = frozenset(get_type_hints(ModelProfile))
_LOGGER = logging.getLogger("langchain_kimi_context.chat_models")
_REFRESH_LOCK = threading.Lock()


class BaseKimiChatModel(BaseChatOpenAI):
    """Fields, validation, profile, clients and errors of ``KimiChatModel``.

    Not used on its own: :class:`langchain_kimi_context.chat_models.KimiChatModel` adds
    the calls. See that class for the fields.
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
        """Map the API key field to its environment variable (never serialised)."""
        return {"openai_api_key": "MOONSHOT_API_KEY"}

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """Return the LangChain serialisation namespace.

        Returns:
            ``["langchain_kimi_context", "chat_models"]``.
        """
        return ["langchain_kimi_context", "chat_models"]

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """Return ``True``: the model can be serialised (without its key).

        Returns:
            ``True``.
        """
        return True

    @property
    def lc_attributes(self) -> dict[str, Any]:
        """Attributes serialised in addition to the constructor arguments (a non-default URL)."""
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

    def _profile_for(self, model: str | None) -> KimiModelProfile:
        name = model or self.model_name
        return get_profile(name, self.profile_overrides if name == self.model_name else None)

    @property
    def model_profile(self) -> KimiModelProfile:
        """The model's :class:`~langchain_kimi_context.profiles.KimiModelProfile`.

        Built-in data, then ``profile_overrides``, then a smaller window learned
        process-wide (:meth:`learn_context_window`, or an overflow error).
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
        """
        self._bind_async_client_to_loop()
        try:
            page = await self.root_async_client.models.list()
        except openai.APIStatusError as exc:
            raise self._translate_error(exc, self.model_name) from exc
        update_profiles_from_models_payload([m.model_dump() for m in page.data])
        self._sync_langchain_profile()
        return self.model_profile

    # ------------------------------------------------------------------ errors

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

    # ------------------------------------------------------------------ lifecycle

    @property
    def ledger(self) -> Any:
        """The cache strategy's cost ledger (``ledger.session(id)``), or ``None``."""
        return getattr(self._cache_strategy, "ledger", None)

    def close(self) -> None:
        """Release what the cache strategy holds.

        The sync HTTP client is shared with other models (langchain-openai caches it per
        base URL) and stays open; :meth:`aclose` also closes this model's async pool.
        """
        self._cache_strategy.close()

    async def aclose(self) -> None:
        """Async :meth:`close`; also closes this model's pool for the running loop."""
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
