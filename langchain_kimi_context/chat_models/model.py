"""``KimiChatModel``: the LangChain chat model for the Kimi (Moonshot) API.

Contract: how a call runs, on top of the settings, profile, clients and typed errors of
:class:`~langchain_kimi_context.chat_models.settings.BaseKimiChatModel`. Every call
resolves the session id, builds and checks the payload (:mod:`.request`), lets the cache
strategy prepare it, sends it through the backoff drivers
(:func:`langchain_kimi_context.backoff.run_with_retries` /
:func:`~langchain_kimi_context.backoff.arun_with_retries`; the decision is
:func:`.retrying.retry_delay`; a stream is retried only until its first chunk), checks and
reads the reply (:mod:`.response`) and lets the cache strategy record it. Tools (Kimi's
builtin ``$web_search`` included), structured output and local token counts are here too.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, NoReturn, cast

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.tools import BaseTool

from langchain_kimi_context.backoff import arun_with_retries, run_with_retries
from langchain_kimi_context.chat_models import retrying
from langchain_kimi_context.chat_models.cache_seam import resolve_session_id
from langchain_kimi_context.chat_models.request import (
    add_thinking_switch,
    apply_call_rules,
    default_output_budget,
    is_builtin_tool,
    kimi_message,
    refuse_retired,
)
from langchain_kimi_context.chat_models.response import (
    StreamState,
    check_not_empty,
    check_reply,
    end_of_stream,
    read_chunk,
    read_reply,
    track_chunk,
)
from langchain_kimi_context.chat_models.settings import BaseKimiChatModel
from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.thinking_rules import plan_tool_choice, plan_web_search
from langchain_kimi_context.tokens import count_tokens_for_model, default_token_counter

__all__ = ["KimiChatModel"]


class KimiChatModel(BaseKimiChatModel):
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
        >>> KimiChatModel(base_url=base_url, api_key=api_key).invoke("@say Hello").content
        'Hello'
    """

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
        """
        return count_tokens_for_model(messages, tools, model=self.model_name)

    def get_num_tokens(self, text: str) -> int:
        """Count the tokens of ``text`` with the process-wide token counter.

        Args:
            text: The text.

        Returns:
            The estimated token count.
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
