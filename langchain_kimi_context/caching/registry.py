"""Registry of live explicit caches, shared by models, threads and worker processes.

Contract: a :class:`CacheRegistry` maps a session key to a :class:`CacheEntry` (cache
id, prefix fingerprint, holders with their last-use time); :class:`InMemoryCacheRegistry`
serves one process, :class:`StoreCacheRegistry` any LangGraph ``BaseStore`` (several
processes). A malformed stored entry is logged and ignored, never raised. The live
explicit-cache managers of this process are tracked here too, so that their caches are
deleted at interpreter exit (best effort).
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from langchain_kimi_context.errors import KimiConfigurationError

if TYPE_CHECKING:
    from langchain_kimi_context.caching.explicit import ExplicitContextCache

logger = logging.getLogger("langchain_kimi_context.caching")


@dataclass(frozen=True, kw_only=True)
class CacheEntry:
    """A live explicit cache as recorded in a :class:`CacheRegistry`.

    Attributes:
        cache_id: The server's id (``cache-...``).
        fingerprint: :func:`prefix_fingerprint` of the cached messages and tools.
        session_id: The session owning it.
        family: The cache model family (``"moonshot-v1"``).
        prefix_messages: Number of leading request messages the cache covers.
        tokens: Tokens in the cache (the server's count, else an estimate).
        created_at: Creation time (clock seconds).
        expires_at: Expected expiry (clock seconds; moved forward by each TTL reset).
        verified_at: Last time the server confirmed the cache is alive.
        holders: Strategy instances using it, with the time each last used it.

    Example:
        >>> e = CacheEntry(cache_id="cache-1", fingerprint="f", session_id="s",
        ...                family="moonshot-v1", prefix_messages=1, tokens=10,
        ...                created_at=0.0, expires_at=3600.0, verified_at=0.0)
        >>> CacheEntry.from_dict(e.to_dict()) == e
        True
    """

    cache_id: str
    fingerprint: str
    session_id: str
    family: str
    prefix_messages: int
    tokens: int
    created_at: float
    expires_at: float
    verified_at: float
    holders: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as a JSON-serialisable dict."""
        data = asdict(self)
        data["holders"] = dict(self.holders)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CacheEntry:
        """Rebuild an entry from :meth:`to_dict` output.

        Args:
            data: The dict.

        Returns:
            The entry.
        """
        return cls(
            cache_id=str(data["cache_id"]),
            fingerprint=str(data["fingerprint"]),
            session_id=str(data["session_id"]),
            family=str(data["family"]),
            prefix_messages=int(data["prefix_messages"]),
            tokens=int(data["tokens"]),
            created_at=float(data["created_at"]),
            expires_at=float(data["expires_at"]),
            verified_at=float(data["verified_at"]),
            holders=dict(data.get("holders") or {}),
        )

    def replace(self, **changes: Any) -> CacheEntry:
        """Return a copy with ``changes`` applied."""
        data = self.to_dict()
        data.update(changes)
        return CacheEntry.from_dict(data)


@runtime_checkable
class CacheRegistry(Protocol):
    """Where live explicit caches are recorded, keyed by session (and account/family).

    Example:
        >>> isinstance(InMemoryCacheRegistry(), CacheRegistry)
        True
    """

    def get(self, key: str) -> CacheEntry | None:
        """Return the entry stored under ``key`` (``None`` if absent)."""
        ...

    def put(self, key: str, entry: CacheEntry) -> None:
        """Store ``entry`` under ``key`` (replacing any previous one)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the entry under ``key`` (no error if absent)."""
        ...


class InMemoryCacheRegistry:
    """Process-local registry (the default): shared by models given the same instance.

    Example:
        >>> reg = InMemoryCacheRegistry()
        >>> e = CacheEntry(cache_id="c", fingerprint="f", session_id="s", family="m",
        ...                prefix_messages=1, tokens=1, created_at=0, expires_at=1,
        ...                verified_at=0)
        >>> reg.put("k", e); reg.get("k").cache_id
        'c'
        >>> reg.delete("k"); reg.get("k") is None
        True
    """

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> CacheEntry | None:
        """Return the entry under ``key`` or ``None``."""
        with self._lock:
            data = self._entries.get(key)
        return CacheEntry.from_dict(data) if data is not None else None

    def put(self, key: str, entry: CacheEntry) -> None:
        """Store ``entry`` under ``key``."""
        with self._lock:
            self._entries[key] = entry.to_dict()

    def delete(self, key: str) -> None:
        """Remove the entry under ``key``."""
        with self._lock:
            self._entries.pop(key, None)


class StoreCacheRegistry:
    """Registry kept in a LangGraph ``BaseStore`` (InMemoryStore, SqliteStore, Postgres...).

    Several models or worker processes pointing at the same store share one cache per
    session instead of creating one each.

    Args:
        store: Any ``langgraph.store.base.BaseStore``.
        namespace: Namespace of the entries (labels must not contain ``.``).

    Example:
        >>> from langgraph.store.memory import InMemoryStore
        >>> reg = StoreCacheRegistry(InMemoryStore())
        >>> reg.put("k", CacheEntry(cache_id="c", fingerprint="f", session_id="s",
        ...     family="m", prefix_messages=1, tokens=1, created_at=0, expires_at=1,
        ...     verified_at=0))
        >>> reg.get("k").cache_id
        'c'
    """

    def __init__(
        self, store: Any, *, namespace: tuple[str, ...] = ("kimi_context", "explicit_caches")
    ) -> None:
        if any("." in label or not label for label in namespace):
            msg = f"namespace labels must be non-empty and contain no '.' (got {namespace!r})"
            raise KimiConfigurationError(msg)
        self.store = store
        self.namespace = namespace

    def get(self, key: str) -> CacheEntry | None:
        """Return the entry under ``key`` or ``None``."""
        item = self.store.get(self.namespace, key)
        if item is None:
            return None
        try:
            return CacheEntry.from_dict(item.value)
        except (KeyError, TypeError, ValueError):
            logger.warning("Ignoring malformed explicit-cache registry entry %r", key)
            return None

    def put(self, key: str, entry: CacheEntry) -> None:
        """Store ``entry`` under ``key``."""
        self.store.put(self.namespace, key, entry.to_dict(), index=False)

    def delete(self, key: str) -> None:
        """Remove the entry under ``key``."""
        self.store.delete(self.namespace, key)


_LIVE_EXPLICIT: weakref.WeakSet[ExplicitContextCache] = weakref.WeakSet()
_ATEXIT_LOCK = threading.Lock()
_ATEXIT_REGISTERED = False


def _close_all_at_exit() -> None:
    for manager in list(_LIVE_EXPLICIT):
        try:
            manager.close()
        except Exception:
            logger.debug("explicit cache cleanup at exit failed", exc_info=True)


def _register_atexit(manager: ExplicitContextCache) -> None:
    global _ATEXIT_REGISTERED
    with _ATEXIT_LOCK:
        _LIVE_EXPLICIT.add(manager)
        if not _ATEXIT_REGISTERED:
            atexit.register(_close_all_at_exit)
            _ATEXIT_REGISTERED = True
