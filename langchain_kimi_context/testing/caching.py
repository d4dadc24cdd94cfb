"""The emulator's two kinds of context caching.

* :class:`PrefixCache`: automatic prefix caching (kimi-k2 family). The canonical token
  sequence of a request (tools, then messages) is cut into 256-token blocks whose
  chained hashes are remembered per ``(model, api key, prompt_cache_key)``; a later
  request gets the longest run of leading blocks seen before as cached tokens (so the
  hit is rounded DOWN to whole blocks). Memory is bounded: at most
  ``max_blocks_per_partition`` block hashes per partition and ``max_partitions``
  partitions, both evicted least-recently-used.
* :class:`ExplicitCacheStore`: Moonshot's Context Caching API objects (moonshot-v1),
  with TTL/expiry on an injectable clock.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_kimi_context.testing.tokenizer import EmulatorTokenizer, canonical_json

__all__ = [
    "CacheStatus",
    "EmulatorClock",
    "ExplicitCache",
    "ExplicitCacheStore",
    "PrefixCache",
    "messages_digest",
    "normalize_message",
]

CacheStatus = Literal["pending", "ready", "error", "inactive"]


class EmulatorClock:
    """Wall-clock time plus an offset that tests can advance (no sleeping).

    Example:
        >>> clock = EmulatorClock()
        >>> before = clock.now()
        >>> clock.advance(3600)
        >>> clock.now() - before >= 3600
        True
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Return the current emulator time (unix seconds).

        Returns:
            ``time.time()`` plus the advanced offset.
        """
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward.

        Args:
            seconds: Non-negative number of seconds.

        Raises:
            ValueError: If ``seconds`` is negative.
        """
        if seconds < 0:
            msg = f"the emulator clock cannot go backwards (seconds={seconds})"
            raise ValueError(msg)
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        """Drop the advanced offset."""
        with self._lock:
            self._offset = 0.0

    @property
    def offset(self) -> float:
        """Seconds the clock was advanced."""
        with self._lock:
            return self._offset

    def __call__(self) -> float:
        """Return :meth:`now` (the clock is usable as a ``() -> float`` callable)."""
        return self.now()


class PrefixCache:
    """Automatic prefix cache with block granularity and bounded memory.

    Args:
        block_size: Tokens per block (Kimi: 256).
        max_blocks_per_partition: Block hashes kept per partition (LRU).
        max_partitions: Partitions kept (LRU).

    Example:
        >>> cache = PrefixCache(block_size=4)
        >>> cache.lookup_and_store(("m", "k", None), list("abcdefghij"))
        0
        >>> cache.lookup_and_store(("m", "k", None), list("abcdefghXY"))
        8
        >>> cache.lookup_and_store(("m", "other", None), list("abcdefghij"))
        0
    """

    def __init__(
        self,
        *,
        block_size: int = 256,
        max_blocks_per_partition: int = 65_536,
        max_partitions: int = 1_024,
    ) -> None:
        if block_size < 1 or max_blocks_per_partition < 1 or max_partitions < 1:
            msg = "block_size, max_blocks_per_partition and max_partitions must be >= 1"
            raise ValueError(msg)
        self.block_size = block_size
        self.max_blocks_per_partition = max_blocks_per_partition
        self.max_partitions = max_partitions
        self._tokenizer = EmulatorTokenizer()
        self._parts: OrderedDict[tuple[Any, ...], OrderedDict[bytes, None]] = OrderedDict()
        self._lock = threading.Lock()

    def lookup_and_store(self, partition: tuple[Any, ...], tokens: Sequence[str]) -> int:
        """Return the cached prefix length of ``tokens`` and remember its blocks.

        Args:
            partition: ``(model, api_key, prompt_cache_key)``.
            tokens: The request's canonical token sequence.

        Returns:
            Cached tokens (a multiple of ``block_size``).
        """
        digests = self._tokenizer.block_hashes(tokens, self.block_size)
        with self._lock:
            blocks = self._parts.get(partition)
            if blocks is None:
                blocks = OrderedDict()
                self._parts[partition] = blocks
                while len(self._parts) > self.max_partitions:
                    self._parts.popitem(last=False)
            else:
                self._parts.move_to_end(partition)
            matched = 0
            for digest in digests:
                if digest not in blocks:
                    break
                matched += 1
            for digest in digests:
                blocks[digest] = None
                blocks.move_to_end(digest)
            while len(blocks) > self.max_blocks_per_partition:
                blocks.popitem(last=False)
        return matched * self.block_size

    @property
    def stored_blocks(self) -> int:
        """Block hashes currently held over all partitions."""
        with self._lock:
            return sum(len(b) for b in self._parts.values())

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._parts.clear()


_MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id", "partial")


def normalize_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """Return the fields of ``message`` that the cache hash covers (``None`` dropped).

    Args:
        message: A chat message.

    Returns:
        The normalised message.
    """
    return {k: message[k] for k in _MESSAGE_FIELDS if message.get(k) is not None}


def messages_digest(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None
) -> str:
    """Return the hash that header-mode cache use compares.

    Args:
        messages: The messages (the cached prefix).
        tools: The tools.

    Returns:
        Hex digest of the canonical JSON of both.
    """
    payload = {
        "messages": [normalize_message(m) for m in messages],
        "tools": list(tools or []),
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


@dataclass
class ExplicitCache:
    """One Context Caching API object.

    Attributes:
        id: ``cache-...`` id.
        api_key: The owning key (never serialised).
        model: The model family (``"moonshot-v1"``).
        messages: Cached messages.
        tools: Cached tools.
        name: Optional name.
        description: Optional description.
        metadata: String map.
        created_at: Creation time (unix seconds).
        expired_at: Expiry time (unix seconds).
        tokens: Token count of tools + messages.
        ready_at: When the status turns from ``pending`` to ``ready``.
        digest: Hash of messages + tools.
        billed_until: Storage is billed up to this time.

    Example:
        >>> c = ExplicitCache(id="cache-1", api_key="k", model="moonshot-v1", messages=[],
        ...     created_at=0, expired_at=10, tokens=5, ready_at=0)
        >>> c.status(5), c.status(10)
        ('ready', 'inactive')
    """

    id: str
    api_key: str
    model: str
    messages: list[dict[str, Any]]
    created_at: float
    expired_at: float
    tokens: int
    ready_at: float
    tools: list[dict[str, Any]] = field(default_factory=list)
    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    digest: str = ""
    billed_until: float = 0.0

    def status(self, now: float) -> CacheStatus:
        """Return the status at time ``now``.

        Args:
            now: Emulator time.

        Returns:
            ``pending``, ``ready`` or ``inactive`` (expired).
        """
        if now >= self.expired_at:
            return "inactive"
        if now < self.ready_at:
            return "pending"
        return "ready"

    def to_json(self, now: float) -> dict[str, Any]:
        """Return the cache object as the API sends it.

        Args:
            now: Emulator time (for ``status``).

        Returns:
            The JSON object.
        """
        return {
            "id": self.id,
            "object": "context_cache.object",
            "status": self.status(now),
            "created_at": int(self.created_at),
            "expired_at": int(self.expired_at),
            "tokens": self.tokens,
            "model": self.model,
            "messages": self.messages,
            "tools": self.tools,
            "name": self.name,
            "description": self.description,
            "metadata": self.metadata,
        }


class ExplicitCacheStore:
    """In-memory store of :class:`ExplicitCache` objects and tags (per API key)."""

    def __init__(self, *, tokenizer: EmulatorTokenizer | None = None) -> None:
        self._tokenizer = tokenizer or EmulatorTokenizer()
        self._caches: dict[str, ExplicitCache] = {}
        self._tags: dict[tuple[str, str], str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    @property
    def lock(self) -> threading.RLock:
        """The store's lock (held by the server around multi-step updates)."""
        return self._lock

    def create(
        self,
        *,
        api_key: str,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        now: float,
        ttl: float | None = None,
        expired_at: float | None = None,
        name: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
        ready_delay: float = 0.0,
    ) -> ExplicitCache:
        """Create a cache object.

        Args:
            api_key: Owner key.
            model: Model family.
            messages: Messages to cache.
            tools: Tools to cache.
            now: Emulator time.
            ttl: Seconds to live (used when ``expired_at`` is ``None``; default 3600).
            expired_at: Absolute expiry time.
            name: Optional name.
            description: Optional description.
            metadata: String map.
            ready_delay: Seconds in ``pending`` before ``ready``.

        Returns:
            The cache.
        """
        with self._lock:
            seq = next(self._ids)
            cache_id = "cache-" + hashlib.sha256(f"{seq}|{now}".encode()).hexdigest()[:20]
            expiry = expired_at if expired_at is not None else now + (ttl if ttl else 3600)
            cache = ExplicitCache(
                id=cache_id,
                api_key=api_key,
                model=model,
                messages=messages,
                tools=tools,
                name=name,
                description=description,
                metadata=dict(metadata or {}),
                created_at=now,
                expired_at=expiry,
                tokens=self._tokenizer.count_messages(messages, tools),
                ready_at=now + ready_delay,
                digest=messages_digest(messages, tools),
                billed_until=now,
            )
            self._caches[cache_id] = cache
            return cache

    def get(self, api_key: str, cache_id: str) -> ExplicitCache | None:
        """Return the cache ``cache_id`` owned by ``api_key``, or ``None``.

        Args:
            api_key: Owner key.
            cache_id: The id.

        Returns:
            The cache or ``None``.
        """
        with self._lock:
            cache = self._caches.get(cache_id)
            return cache if cache is not None and cache.api_key == api_key else None

    def for_key(self, api_key: str) -> list[ExplicitCache]:
        """Return the caches of ``api_key`` oldest first.

        Args:
            api_key: Owner key.

        Returns:
            The caches.
        """
        with self._lock:
            return [c for c in self._caches.values() if c.api_key == api_key]

    def all(self) -> list[ExplicitCache]:
        """Return every cache (all keys).

        Returns:
            The caches.
        """
        with self._lock:
            return list(self._caches.values())

    def delete(self, api_key: str, cache_id: str) -> ExplicitCache | None:
        """Delete a cache (and the tags pointing at it).

        Args:
            api_key: Owner key.
            cache_id: The id.

        Returns:
            The deleted cache, or ``None`` when not found.
        """
        with self._lock:
            cache = self.get(api_key, cache_id)
            if cache is None:
                return None
            del self._caches[cache_id]
            for key in [k for k, v in self._tags.items() if v == cache_id]:
                del self._tags[key]
            return cache

    def set_tag(self, api_key: str, tag: str, cache_id: str) -> None:
        """Point ``tag`` at ``cache_id`` for ``api_key``.

        Args:
            api_key: Owner key.
            tag: Tag name.
            cache_id: Cache id.
        """
        with self._lock:
            self._tags[(api_key, tag)] = cache_id

    def tag(self, api_key: str, tag: str) -> str | None:
        """Return the cache id a tag points at.

        Args:
            api_key: Owner key.
            tag: Tag name.

        Returns:
            The id or ``None``.
        """
        with self._lock:
            return self._tags.get((api_key, tag))

    def tags(self, api_key: str) -> dict[str, str]:
        """Return ``{tag: cache_id}`` for ``api_key``.

        Args:
            api_key: Owner key.

        Returns:
            The tags.
        """
        with self._lock:
            return {t: c for (k, t), c in self._tags.items() if k == api_key}

    def delete_tag(self, api_key: str, tag: str) -> bool:
        """Delete a tag.

        Args:
            api_key: Owner key.
            tag: Tag name.

        Returns:
            Whether it existed.
        """
        with self._lock:
            return self._tags.pop((api_key, tag), None) is not None

    def clear(self) -> None:
        """Forget every cache and tag."""
        with self._lock:
            self._caches.clear()
            self._tags.clear()
