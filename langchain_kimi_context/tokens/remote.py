"""The exact token count from the Kimi API (a network call, only when asked).

Contract: :func:`count_tokens_exact` / :func:`acount_tokens_exact` post the messages and
tools to ``POST /v1/tokenizers/estimate-token-count`` and return ``total_tokens``; an
HTTP error raises the typed error of :mod:`langchain_kimi_context.errors`, a malformed
reply ``ValueError`` and a missing key ``KimiConfigurationError``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    convert_to_openai_messages,
)
from pydantic import SecretStr

from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.tokens.counter import _as_messages, _tool_dict

if TYPE_CHECKING:
    import httpx


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
        >>> count_tokens_exact([HumanMessage("hi")], base_url=base_url, api_key=api_key)
        3
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
        >>> import asyncio
        >>> from langchain_core.messages import HumanMessage
        >>> asyncio.run(acount_tokens_exact([HumanMessage("hi")], base_url=base_url,
        ...                                 api_key=api_key))
        3
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
