"""The caching seam of :class:`~langchain_kimi_context.chat_models.KimiChatModel`.

Contract:

- :class:`CacheStrategy` is what the model calls around every request: ``prepare`` /
  ``aprepare`` right before the request is sent (they may return a changed payload),
  ``record`` after each response (its dict is merged into the reply's
  ``response_metadata``), ``close`` / ``aclose`` when the model is closed.
- :class:`PassThroughCacheStrategy` changes and records nothing.
- :func:`default_cache_strategy` picks ``caching.make_cache_strategy(model)`` when the
  caching package provides it, else the pass-through strategy.
- :func:`resolve_session_id` is the one order in which a call's session id is found.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from langchain_core.runnables.config import ensure_config

__all__ = [
    "CacheStrategy",
    "PassThroughCacheStrategy",
    "default_cache_strategy",
    "resolve_session_id",
]


@runtime_checkable
class CacheStrategy(Protocol):
    """The seam through which context caching plugs into ``KimiChatModel``.

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
        """Return the payload to send (sync path)."""
        ...

    async def aprepare(self, payload: dict[str, Any], *, session_id: str | None) -> dict[str, Any]:
        """Return the payload to send (async path)."""
        ...

    def record(
        self,
        payload: Mapping[str, Any],
        usage: Mapping[str, Any] | None,
        *,
        session_id: str | None,
    ) -> dict[str, Any]:
        """Account for a response; the result is merged into ``response_metadata``."""
        ...

    def close(self) -> None:
        """Release resources (sync)."""
        ...

    async def aclose(self) -> None:
        """Release resources (async)."""
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
        """
        return payload

    async def aprepare(self, payload: dict[str, Any], *, session_id: str | None) -> dict[str, Any]:
        """Return ``payload`` unchanged (async :meth:`prepare`)."""
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
        """
        return {}

    def close(self) -> None:
        """Do nothing."""

    async def aclose(self) -> None:
        """Do nothing (async)."""


def default_cache_strategy(model: Any) -> CacheStrategy:
    """Strategy for ``model``: ``caching.make_cache_strategy(model)`` if that exists.

    Args:
        model: The ``KimiChatModel`` the strategy serves.

    Returns:
        The strategy.
    """
    if importlib.util.find_spec("langchain_kimi_context.caching") is None:
        return PassThroughCacheStrategy()
    module = importlib.import_module("langchain_kimi_context.caching")
    factory: Callable[[Any], CacheStrategy] | None = getattr(module, "make_cache_strategy", None)
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
