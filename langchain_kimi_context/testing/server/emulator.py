"""``KimiEmulator``: lifecycle, keys, request log, ledgers, clock and billing helpers.

Contract: :class:`KimiEmulator` owns every piece of state the routes read (profiles,
responder, tokenizer, prefix and explicit caches, faults, ledgers per key, the request
log) behind one lock and starts and stops the HTTP server thread; routes write the
request log and the ledgers only through its ``_log_record`` and ``_bill``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from langchain_kimi_context.profiles import ExplicitCachePricing, KimiModelProfile
from langchain_kimi_context.testing.caching import (
    EmulatorClock,
    ExplicitCache,
    ExplicitCacheStore,
    PrefixCache,
)
from langchain_kimi_context.testing.faults import Fault, FaultInjector, parse_fault_directive
from langchain_kimi_context.testing.ledger import (
    LedgerAccount,
    LedgerEntry,
    RequestRecord,
    key_hint,
)
from langchain_kimi_context.testing.responders import (
    DefaultResponder,
    ReplySpec,
    ResponderRequest,
)
from langchain_kimi_context.testing.server.routes import _Handler
from langchain_kimi_context.testing.server.transport import _Server
from langchain_kimi_context.testing.tokenizer import (
    EmulatorTokenizer,
    canonical_json,
)
from langchain_kimi_context.testing.validation import known_profiles

DEFAULT_API_KEY = "sk-kimi-emulator-0000000000000000"
"""The API key a :class:`KimiEmulator` accepts unless told otherwise."""

StreamUsageMode = Literal["final_chunk", "in_choice", "both"]
Catalog = Literal["current", "legacy"]


class KimiEmulator:
    """A strict, deterministic Kimi API server on 127.0.0.1 for tests and demos.

    Args:
        host: Interface to bind (loopback by default).
        port: Port; 0 picks a free one.
        api_key: The key clients must send (``Authorization: Bearer <key>``).
        api_keys: More accepted keys (each gets its own ledger and caches).
        accept_any_key: Accept any non-empty key (each still billed separately).
        responder: Reply generator (default :class:`DefaultResponder`).
        catalog: ``"current"`` (default): today's API. Only current models are served
            (retired ids get Moonshot's 404 "Not found the model <id> or Permission
            denied"); 429s carry their delay only in the message (no ``Retry-After``
            header: none was seen on the live API); the automatic prefix cache is keyed by
            content alone (``prompt_cache_key`` is accepted but does not partition it:
            live measurements report it as ignored for cache identity); some thinking
            tool-call turns carry empty reasoning (``reason_free_every``). ``"legacy"``:
            the catalog of 2025 (every builtin profile, retired ones included, e.g.
            moonshot-v1 for the explicit Context Caching API), ``Retry-After`` headers and
            a prefix cache partitioned by ``prompt_cache_key``. The thinking rules (forced
            tool choice, reasoning replay, locked parameters, ``$web_search``) follow each
            model's profile in both.
        profiles: Models served (default: per ``catalog``); other models get a 404.
        reason_free_every: With thinking on, every N-th tool-call turn of a
            conversation (counted by earlier tool calls) has empty ``reasoning_content``,
            as real replies sometimes do (``None``: never; default 2 in the current
            catalog). A responder's explicit reasoning wins.
        tokenizer: Token counter (default :class:`EmulatorTokenizer`).
        cache_block_size: Prefix-cache granularity in tokens (Kimi: 256).
        max_cached_blocks_per_partition: Memory bound of the prefix cache.
        nested_cached_tokens: Also report ``usage.prompt_tokens_details.cached_tokens``.
        stream_usage_mode: ``"final_chunk"`` (OpenAI style: a last chunk with
            ``choices: []`` when ``stream_options.include_usage``), ``"in_choice"``
            (Kimi style: ``usage`` inside the last choice, always) or ``"both"``.
        stream_chunk_chars: Characters of text per SSE chunk.
        stream_chunk_delay: Seconds (real time) between SSE chunks.
        cache_ready_delay: Seconds (emulator clock) an explicit cache stays
            ``pending``; 0 = ``ready`` at once.
        reject_empty_tool_call_content: Reject an empty text part on assistant
            tool-call messages (as some Kimi endpoints do).
        reject_empty_string_content: Also reject ``content: ""`` on them.
        max_logged_requests: Size bound of the request log (oldest records dropped).
        log_bodies: Keep request bodies and responses in the log. Turn off for long
            benchmark sessions (every logged body is a full copy of the conversation).
        keep_alive: Keep HTTP/1.1 connections open between requests. Off by default:
            every response closes its connection, so pooled clients never reuse a
            connection across event loops (pytest-asyncio runs each async test in a new
            loop, and langchain-openai caches its async HTTP client per base URL, which
            otherwise fails with "Event loop is closed"). Turn it on for benchmarks.

    Start it with ``with KimiEmulator() as emu:`` (or :meth:`start`/:meth:`stop`) and
    point a client at ``emu.base_url`` with ``emu.api_key``.

    Example:
        >>> import httpx
        >>> r = httpx.post(emulator.base_url + "/chat/completions", headers=emulator.headers,
        ...                json={"model": "kimi-k2.6",
        ...                      "messages": [{"role": "user", "content": "@say hi"}]})
        >>> r.json()["choices"][0]["message"]["content"], emulator.ledger().requests
        ('hi', 1)
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        api_keys: Iterable[str] = (),
        accept_any_key: bool = False,
        responder: Callable[[ResponderRequest], ReplySpec] | None = None,
        catalog: Catalog = "current",
        profiles: Mapping[str, KimiModelProfile] | Iterable[KimiModelProfile] | None = None,
        reason_free_every: int | None = -1,
        tokenizer: EmulatorTokenizer | None = None,
        cache_block_size: int = 256,
        max_cached_blocks_per_partition: int = 65_536,
        nested_cached_tokens: bool = False,
        stream_usage_mode: StreamUsageMode = "final_chunk",
        stream_chunk_chars: int = 24,
        stream_chunk_delay: float = 0.0,
        cache_ready_delay: float = 0.0,
        reject_empty_tool_call_content: bool = True,
        reject_empty_string_content: bool = False,
        max_logged_requests: int = 2_000,
        log_bodies: bool = True,
        keep_alive: bool = False,
    ) -> None:
        if not api_key:
            msg = "api_key must be a non-empty string"
            raise ValueError(msg)
        if stream_usage_mode not in ("final_chunk", "in_choice", "both"):
            msg = (
                "stream_usage_mode must be final_chunk, in_choice or both, "
                f"not {stream_usage_mode!r}"
            )
            raise ValueError(msg)
        if stream_chunk_chars < 1:
            msg = "stream_chunk_chars must be >= 1"
            raise ValueError(msg)
        self.host = host
        self._requested_port = port
        self.api_key = api_key
        self._keys = {api_key, *api_keys}
        self.accept_any_key = accept_any_key
        self.responder: Callable[[ResponderRequest], ReplySpec] = responder or DefaultResponder()
        if catalog not in ("current", "legacy"):
            msg = f"catalog must be 'current' or 'legacy', not {catalog!r}"
            raise ValueError(msg)
        self.catalog: Catalog = catalog
        today = catalog == "current"
        self.retry_after_header = not today
        self.cache_key_partitions = not today
        self.reason_free_every: int | None = (
            (2 if today else None) if reason_free_every == -1 else reason_free_every
        )
        if profiles is None:
            self.profiles: dict[str, KimiModelProfile] = {
                name: p
                for name, p in known_profiles().items()
                if not today or p.lifecycle != "retired"
            }
        elif isinstance(profiles, Mapping):
            self.profiles = dict(profiles)
        else:
            self.profiles = {p.name: p for p in profiles}
        self.tokenizer = tokenizer or EmulatorTokenizer()
        self.nested_cached_tokens = nested_cached_tokens
        self.stream_usage_mode: StreamUsageMode = stream_usage_mode
        self.stream_chunk_chars = stream_chunk_chars
        self.stream_chunk_delay = stream_chunk_delay
        self.cache_ready_delay = cache_ready_delay
        self.reject_empty_tool_call_content = reject_empty_tool_call_content
        self.reject_empty_string_content = reject_empty_string_content
        self.keep_alive = keep_alive
        self.log_bodies = log_bodies
        self.clock = EmulatorClock()
        self.faults = FaultInjector()
        self.prefix_cache = PrefixCache(
            block_size=cache_block_size,
            max_blocks_per_partition=max_cached_blocks_per_partition,
        )
        self.caches = ExplicitCacheStore(tokenizer=self.tokenizer)
        self._lock = threading.RLock()
        self._log: deque[RequestRecord] = deque(maxlen=max_logged_requests)
        self._seq = 0
        self._epoch = 0
        self._ledgers: dict[str, list[LedgerEntry]] = {}
        self._fail_counts: OrderedDict[str, int] = OrderedDict()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> KimiEmulator:
        """Start serving in a background thread (idempotent).

        Returns:
            ``self``.
        """
        if self._server is not None:
            return self
        server = _Server((self.host, self._requested_port), _Handler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"KimiEmulator:{server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> KimiEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.base_url if self._server is not None else "stopped"
        return f"KimiEmulator({state})"

    @property
    def port(self) -> int:
        """The bound port (raises ``RuntimeError`` if the server is not running)."""
        if self._server is None:
            msg = "KimiEmulator is not running; call start() or use it as a context manager"
            raise RuntimeError(msg)
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: pass it as the client's ``base_url``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>`` (admin endpoints live under ``/_emulator``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <api_key>"}`` for raw HTTP clients."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def add_api_key(self, key: str) -> None:
        """Accept another API key (with its own ledger and caches).

        Args:
            key: The key.
        """
        with self._lock:
            self._keys.add(key)

    def is_valid_key(self, key: str | None) -> bool:
        """Return whether requests with ``key`` are authenticated.

        Args:
            key: The bearer token.

        Returns:
            Whether it is accepted.
        """
        if not key:
            return False
        with self._lock:
            return self.accept_any_key or key in self._keys

    # ------------------------------------------------------------------ state access
    @property
    def requests(self) -> list[RequestRecord]:
        """The request log (admin requests excluded), oldest first.

        A request is logged (and billed) before its response is complete, so once a
        client has read a whole reply (JSON body or SSE stream up to ``[DONE]``), the
        record is here: tests need no waiting.
        """
        with self._lock:
            return list(self._log)

    @property
    def chat_requests(self) -> list[RequestRecord]:
        """The logged ``POST /v1/chat/completions`` requests, oldest first."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def last_request(self) -> RequestRecord | None:
        """The most recent logged request, if any."""
        with self._lock:
            return self._log[-1] if self._log else None

    def ledger(self, api_key: str | None = None) -> LedgerAccount:
        """Return the bill of ``api_key`` (default: the emulator's key).

        Explicit-cache storage is settled up to the current emulator time first.

        Args:
            api_key: The key.

        Returns:
            A snapshot :class:`LedgerAccount`.
        """
        key = api_key or self.api_key
        self._settle_storage()
        with self._lock:
            return LedgerAccount(key_hint(key), tuple(self._ledgers.get(key, ())))

    def ledgers(self) -> dict[str, LedgerAccount]:
        """Return every account keyed by the key's non-secret hint.

        Returns:
            Hint -> account.
        """
        self._settle_storage()
        with self._lock:
            return {
                str(key_hint(k)): LedgerAccount(key_hint(k), tuple(v))
                for k, v in self._ledgers.items()
            }

    def advance_time(self, seconds: float) -> None:
        """Advance the emulator clock (cache TTLs) without sleeping.

        Args:
            seconds: Seconds to add.
        """
        self.clock.advance(seconds)

    def reset(self) -> None:
        """Forget requests, ledgers, caches, faults and the clock offset."""
        with self._lock:
            self._epoch += 1
            self._log.clear()
            self._seq = 0
            self._ledgers.clear()
            self._fail_counts.clear()
        self.faults.clear()
        self.prefix_cache.clear()
        self.caches.clear()
        self.clock.reset()

    # ------------------------------------------------------------------ internals
    def _next_record(self, method: str, path: str) -> RequestRecord:
        with self._lock:
            self._seq += 1
            return RequestRecord(seq=self._seq, time=self.clock.now(), method=method, path=path)

    @property
    def _current_epoch(self) -> int:
        with self._lock:
            return self._epoch

    def _log_record(self, record: RequestRecord, epoch: int) -> None:
        if not self.log_bodies:
            record.body = None
            record.response = None
        with self._lock:
            if epoch == self._epoch:  # requests in flight across reset() are dropped
                self._log.append(record)

    def _bill(self, api_key: str, entry: LedgerEntry, epoch: int | None = None) -> None:
        with self._lock:
            if epoch is None or epoch == self._epoch:
                self._ledgers.setdefault(api_key, []).append(entry)

    def _settle_storage(self, only: ExplicitCache | None = None) -> None:
        now = self.clock.now()
        caches = [only] if only is not None else self.caches.all()
        with self.caches.lock:
            for cache in caches:
                until = min(now, cache.expired_at)
                if until <= cache.billed_until:
                    continue
                minutes = (until - cache.billed_until) / 60.0
                pricing = self._explicit_pricing(cache.model)
                cost = cache.tokens / 1e6 * pricing.storage_per_m_per_minute * minutes
                cache.billed_until = until
                self._bill(
                    cache.api_key,
                    LedgerEntry(
                        kind="cache_storage",
                        model=cache.model,
                        cost=cost,
                        currency=pricing.currency,
                        time=now,
                        cache_id=cache.id,
                        cache_tokens=cache.tokens,
                        minutes=minutes,
                    ),
                )

    def _explicit_pricing(self, family: str) -> ExplicitCachePricing:
        for profile in self.profiles.values():
            if profile.cache_family == family and profile.explicit_cache_pricing is not None:
                return profile.explicit_cache_pricing
        return ExplicitCachePricing()

    def _fail_once(
        self, api_key: str, messages: Sequence[Mapping[str, Any]], spec: str
    ) -> Fault | None:
        """Return the ``@fail`` fault if this exact request has failed fewer times."""
        fault, count = parse_fault_directive(spec)
        digest = hashlib.sha256(
            (api_key + "|" + spec + "|" + canonical_json(list(messages))).encode("utf-8")
        ).hexdigest()
        with self._lock:
            used = self._fail_counts.get(digest, 0)
            if used >= count:
                return None
            self._fail_counts[digest] = used + 1
            self._fail_counts.move_to_end(digest)
            while len(self._fail_counts) > 10_000:
                self._fail_counts.popitem(last=False)
        return fault
