"""``KimiEmulator``: an offline, strict stand-in for the Kimi (Moonshot) HTTP API.

A real HTTP server on 127.0.0.1 (stdlib ``ThreadingHTTPServer``, one thread per
connection, so concurrent and async clients work), serving:

* ``POST /v1/chat/completions`` (JSON or SSE streaming), ``GET /v1/models[/{id}]``,
  ``POST /v1/tokenizers/estimate-token-count``;
* the explicit Context Caching API ``/v1/caching[/{id}]`` and
  ``/v1/caching/refs/tags[/{tag}[/content]]``;
* admin endpoints (no auth): ``GET /_emulator/requests``, ``GET /_emulator/ledger``
  (``?api_key=...``), ``POST /_emulator/reset``, ``GET|POST|DELETE /_emulator/faults``,
  ``POST /_emulator/clock`` (``{"advance": seconds}``), ``GET /_emulator/health``.

See :mod:`langchain_kimi_context.testing` for the overview and
:mod:`langchain_kimi_context.testing.responders` for the scripted-agent grammar.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from langchain_kimi_context.profiles import ExplicitCachePricing, KimiModelProfile
from langchain_kimi_context.testing.caching import (
    EmulatorClock,
    ExplicitCache,
    ExplicitCacheStore,
    PrefixCache,
    messages_digest,
)
from langchain_kimi_context.testing.faults import Fault, FaultInjector, parse_fault_directive
from langchain_kimi_context.testing.ledger import (
    LedgerAccount,
    LedgerEntry,
    RequestRecord,
    key_hint,
    redact_headers,
)
from langchain_kimi_context.testing.responders import (
    DefaultResponder,
    ReplySpec,
    ResponderRequest,
    deterministic_text,
)
from langchain_kimi_context.testing.tokenizer import (
    EmulatorTokenizer,
    canonical_json,
    message_text,
)
from langchain_kimi_context.testing.validation import (
    EmulatorAPIError,
    ValidatedChatRequest,
    known_profiles,
    validate_chat_request,
)
from langchain_kimi_context.thinking_rules import web_search_echoes

__all__ = ["DEFAULT_API_KEY", "Catalog", "KimiEmulator", "StreamUsageMode"]

DEFAULT_API_KEY = "sk-kimi-emulator-0000000000000000"
"""The API key a :class:`KimiEmulator` accepts unless told otherwise."""

StreamUsageMode = Literal["final_chunk", "in_choice", "both"]
Catalog = Literal["current", "legacy"]
_MAX_BODY = 64 * 1024 * 1024


class _CutConnectionError(Exception):
    """Raised inside the handler to drop the connection mid-response."""


@dataclass
class _Choice:
    index: int
    content: str
    reasoning: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    completion_tokens: int
    reasoning_tokens: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # listen backlog: bursts of concurrent clients
    emulator: KimiEmulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that drop connections; report anything else on stderr."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


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

    Example:
        >>> import httpx
        >>> with KimiEmulator() as emu:
        ...     r = httpx.post(emu.base_url + "/chat/completions", headers=emu.headers,
        ...                    json={"model": "kimi-k2.6",
        ...                          "messages": [{"role": "user", "content": "@say hi"}]})
        ...     r.json()["choices"][0]["message"]["content"], emu.ledger().requests
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

        Example:
            >>> emu = KimiEmulator().start()
            >>> emu.port > 0
            True
            >>> emu.stop()
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
        """Stop serving and close the socket (idempotent).

        Example:
            >>> emu = KimiEmulator().start(); emu.stop(); emu.stop()
        """
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
        """The bound port (raises ``RuntimeError`` if the server is not running).

        Example:
            >>> with KimiEmulator() as emu:
            ...     0 < emu.port < 65536
            True
        """
        if self._server is None:
            msg = "KimiEmulator is not running; call start() or use it as a context manager"
            raise RuntimeError(msg)
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: pass it as the client's ``base_url``.

        Example:
            >>> with KimiEmulator() as emu:
            ...     emu.base_url == f"http://127.0.0.1:{emu.port}/v1"
            True
        """
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>`` (admin endpoints live under ``/_emulator``).

        Example:
            >>> import httpx
            >>> with KimiEmulator() as emu:
            ...     httpx.get(emu.root_url + "/_emulator/health").json()["status"]
            'ok'
        """
        return f"http://{self.host}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <api_key>"}`` for raw HTTP clients.

        Example:
            >>> KimiEmulator(api_key="sk-test-key-123456").headers
            {'Authorization': 'Bearer sk-test-key-123456'}
        """
        return {"Authorization": f"Bearer {self.api_key}"}

    def add_api_key(self, key: str) -> None:
        """Accept another API key (with its own ledger and caches).

        Args:
            key: The key.

        Example:
            >>> emu = KimiEmulator(); emu.add_api_key("sk-second-key-0000"); emu.is_valid_key(
            ...     "sk-second-key-0000")
            True
        """
        with self._lock:
            self._keys.add(key)

    def is_valid_key(self, key: str | None) -> bool:
        """Return whether requests with ``key`` are authenticated.

        Args:
            key: The bearer token.

        Returns:
            Whether it is accepted.

        Example:
            >>> KimiEmulator().is_valid_key("wrong")
            False
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

        Example:
            >>> import httpx
            >>> with KimiEmulator() as emu:
            ...     _ = httpx.get(emu.base_url + "/models", headers=emu.headers)
            ...     [(r.method, r.path, r.status) for r in emu.requests]
            [('GET', '/v1/models', 200)]
        """
        with self._lock:
            return list(self._log)

    @property
    def chat_requests(self) -> list[RequestRecord]:
        """The logged ``POST /v1/chat/completions`` requests, oldest first.

        Example:
            >>> KimiEmulator().chat_requests
            []
        """
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def last_request(self) -> RequestRecord | None:
        """The most recent logged request, if any.

        Example:
            >>> KimiEmulator().last_request is None
            True
        """
        with self._lock:
            return self._log[-1] if self._log else None

    def ledger(self, api_key: str | None = None) -> LedgerAccount:
        """Return the bill of ``api_key`` (default: the emulator's key).

        Explicit-cache storage is settled up to the current emulator time first.

        Args:
            api_key: The key.

        Returns:
            A snapshot :class:`LedgerAccount`.

        Example:
            >>> KimiEmulator().ledger().requests
            0
        """
        key = api_key or self.api_key
        self._settle_storage()
        with self._lock:
            return LedgerAccount(key_hint(key), tuple(self._ledgers.get(key, ())))

    def ledgers(self) -> dict[str, LedgerAccount]:
        """Return every account keyed by the key's non-secret hint.

        Returns:
            Hint -> account.

        Example:
            >>> KimiEmulator().ledgers()
            {}
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

        Example:
            >>> emu = KimiEmulator(); emu.advance_time(60); emu.clock.offset
            60.0
        """
        self.clock.advance(seconds)

    def reset(self) -> None:
        """Forget requests, ledgers, caches, faults and the clock offset.

        Example:
            >>> emu = KimiEmulator(); emu.advance_time(5); emu.reset(); emu.clock.offset
            0.0
        """
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


# ====================================================================== handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _body_stop: Any = None
    _epoch: int = 0
    _logged: bool = False
    server_version = "KimiEmulator/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    # ---------------------------------------------------------------- plumbing
    @property
    def emu(self) -> KimiEmulator:
        return self.server.emulator

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise EmulatorAPIError(413, "invalid_request_error", "Request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def end_headers(self) -> None:
        """Close the connection after this response unless keep-alive is on."""
        if not self.server.emulator.keep_alive:
            self.send_header("Connection", "close")
        super().end_headers()

    def _send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query, keep_blank_values=True)
        try:
            raw = self._read_body()
        except EmulatorAPIError as err:
            self._send_json(err.status, err.to_json())
            return
        if path.startswith("/_emulator"):
            self._admin(method, path, query, raw)
            return
        self._epoch = self.emu._current_epoch
        self._logged = False
        record = self.emu._next_record(method, path)
        record.query = query
        record.headers = redact_headers(dict(self.headers.items()))
        try:
            body = json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:
            body = None
            record.body = raw[:2000].decode("utf-8", "replace")
            self._error(
                record,
                EmulatorAPIError(
                    400, "invalid_request_error", "Invalid request: body is not valid JSON"
                ),
            )
            return
        record.body = body
        if isinstance(body, Mapping):
            model = body.get("model")
            record.model = model if isinstance(model, str) else None
        try:
            key = self._bearer()
            record.api_key_hint = key_hint(key)
            if not self.emu.is_valid_key(key):
                raise EmulatorAPIError(
                    401,
                    "invalid_authentication_error",
                    "Invalid Authentication" if key else "Missing Authentication header",
                )
            assert key is not None
            self._route(method, path, query, body, key, record)
        except _CutConnectionError:
            record.fault = record.fault or "cut"
            self.emu._log_record(record, self._epoch)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        except EmulatorAPIError as err:
            self._error(record, err)
        except (BrokenPipeError, ConnectionResetError):
            if not self._logged:
                self.emu._log_record(record, self._epoch)
            self.close_connection = True
        except Exception as exc:
            self._error(
                record,
                EmulatorAPIError(500, "server_error", f"emulator internal error: {exc!r}"),
            )

    def _error(self, record: RequestRecord, err: EmulatorAPIError) -> None:
        record.status = err.status
        record.error_type = err.error_type
        record.response = err.to_json()
        self.emu._log_record(record, self._epoch)
        self._logged = True
        headers = err.headers
        if not self.emu.retry_after_header:  # today's 429s: the delay is in the message
            headers = {k: v for k, v in headers.items() if k.lower() != "retry-after"}
        self._send_json(err.status, err.to_json(), headers)

    def _ok(self, record: RequestRecord, payload: Any, status: int = 200) -> None:
        record.status = status
        record.response = payload
        self.emu._log_record(record, self._epoch)
        self._logged = True
        self._send_json(status, payload)

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
        key: str,
        record: RequestRecord,
    ) -> None:
        if path == "/v1/chat/completions" and method == "POST":
            self._chat(body, key, record)
        elif path == "/v1/models" and method == "GET":
            self._ok(
                record,
                {
                    "object": "list",
                    "data": [self._model_json(p) for p in self.emu.profiles.values()],
                },
            )
        elif path.startswith("/v1/models/") and method == "GET":
            model = unquote(path[len("/v1/models/") :])
            profile = self.emu.profiles.get(model)
            if profile is None:
                raise EmulatorAPIError(
                    404,
                    "resource_not_found_error",
                    f"Not found the model {model} or Permission denied",
                )
            self._ok(record, self._model_json(profile))
        elif path == "/v1/tokenizers/estimate-token-count" and method == "POST":
            self._estimate(body, record)
        elif path == "/v1/caching" or path.startswith("/v1/caching/"):
            _CachingRoutes(self, key, record).route(method, path, query, body)
        else:
            raise EmulatorAPIError(404, "resource_not_found_error", f"Not found: {method} {path}")

    @staticmethod
    def _model_json(profile: KimiModelProfile) -> dict[str, Any]:
        return {
            "id": profile.name,
            "object": "model",
            "created": 1_700_000_000,
            "owned_by": "moonshot",
            "root": profile.name,
            "parent": None,
            "permission": [],
            "context_length": profile.context_window,
            "supports_image_in": False,
            "supports_reasoning": profile.thinking != "off",
        }

    def _estimate(self, body: Any, record: RequestRecord) -> None:
        if not isinstance(body, Mapping):
            raise EmulatorAPIError(400, "invalid_request_error", "Invalid request: body required")
        model = body.get("model")
        if not isinstance(model, str) or model not in self.emu.profiles:
            raise EmulatorAPIError(
                404, "resource_not_found_error", f"Not found the model {model} or Permission denied"
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
            raise EmulatorAPIError(
                400, "invalid_request_error", "Invalid request: messages must be a list"
            )
        tools = body.get("tools") if isinstance(body.get("tools"), list) else None
        total = self.emu.tokenizer.count_messages(messages, tools)
        self._ok(
            record,
            {"code": 0, "data": {"total_tokens": total}, "scode": "0x0", "status": True},
        )

    # ---------------------------------------------------------------- chat
    def _chat(self, body: Any, key: str, record: RequestRecord) -> None:
        emu = self.emu
        if not isinstance(body, Mapping):
            raise EmulatorAPIError(400, "invalid_request_error", "Invalid request: body required")
        stream = bool(body.get("stream"))
        self._body_stop = body.get("stop")
        record.stream = stream
        fault = emu.faults.next_fault("chat")
        if fault is not None:
            record.fault = fault.kind
            if fault.delay > 0:
                time.sleep(fault.delay)
            profile = emu.profiles.get(str(body.get("model")))
            err = fault.error(window=profile.context_window if profile else 262_144)
            if err is not None:
                raise err

        messages_in = body.get("messages")
        effective = dict(body)
        explicit_cache: ExplicitCache | None = None
        reset_ttl: float | None = None
        if (
            isinstance(messages_in, list)
            and messages_in
            and isinstance(messages_in[0], Mapping)
            and messages_in[0].get("role") == "cache"
        ):
            explicit_cache, reset_ttl = self._message_mode_cache(messages_in[0], body, key)
            effective["messages"] = [*explicit_cache.messages, *messages_in[1:]]
            effective["tools"] = list(explicit_cache.tools) or None
        validated = validate_chat_request(
            effective,
            profiles=emu.profiles,
            tokenizer=emu.tokenizer,
            reject_empty_tool_call_content=emu.reject_empty_tool_call_content,
            reject_empty_string_content=emu.reject_empty_string_content,
            check_web_search_echo=True,
        )
        choices: list[_Choice] = []
        fail_spec: str | None = None
        base_id = sum(
            len(m.get("tool_calls") or [])
            for m in validated.messages
            if m.get("role") == "assistant"
        )
        for index in range(validated.n):
            request = ResponderRequest(
                body=body,
                messages=validated.messages,
                tools=validated.tools,
                model=validated.profile.name,
                thinking=validated.thinking,
                prompt_tokens=validated.prompt_tokens,
                max_tokens=validated.max_tokens,
                tokenizer=emu.tokenizer,
                choice_index=index,
                reason_free=self._reason_free(validated, base_id),
            )
            try:
                spec = emu.responder(request)
            except Exception as exc:
                raise EmulatorAPIError(
                    500, "server_error", f"emulator responder failed: {exc}"
                ) from exc
            fail_spec = fail_spec or spec.fail
            choices.append(self._make_choice(index, spec, validated, base_id))
        if fault is None and fail_spec:
            fault = emu._fail_once(key, validated.messages, fail_spec)
            if fault is not None:
                record.fault = fault.kind
                if fault.delay > 0:
                    time.sleep(fault.delay)
                err = fault.error(
                    window=validated.profile.context_window,
                    requested=validated.prompt_tokens + validated.max_tokens,
                )
                if err is not None:
                    raise err
        # Only requests that get this far are processed (and fill the prefix cache).
        cached_tokens, explicit_hit = self._cached_tokens(
            validated, body, key, explicit_cache, reset_ttl
        )
        if fault is not None and fault.kind == "empty":
            choices = [_Choice(c.index, "", None, [], "stop", 0, 0) for c in choices]
        usage = self._usage(validated, choices, cached_tokens)
        record.usage = usage
        self._bill_chat(key, validated, usage, explicit_hit, record.seq)
        completion = self._completion_json(validated, choices, usage)
        cut_after = fault.after_chunks if fault is not None and fault.kind == "cut" else None
        if stream:
            record.status = 200
            record.response = completion
            self._stream(body, validated, choices, usage, completion, cut_after, record)
        elif cut_after is not None:
            data = json.dumps(completion).encode("utf-8")
            record.status = 200
            record.response = completion
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            raise _CutConnectionError
        else:
            self._ok(record, completion)

    def _message_mode_cache(
        self, first: Mapping[str, Any], body: Mapping[str, Any], key: str
    ) -> tuple[ExplicitCache, float | None]:
        if body.get("tools"):
            raise EmulatorAPIError(
                400,
                "invalid_request_error",
                "Invalid request: tools must be empty when a cache message is used; the "
                "cached tools are applied",
            )
        content = message_text(first.get("content"))
        fields: dict[str, str] = {}
        for item in content.split(";"):
            name, sep, value = item.partition("=")
            if sep:
                fields[name.strip()] = value.strip()
        cache_id = fields.get("cache_id")
        if cache_id is None and "tag" in fields:
            cache_id = self.emu.caches.tag(key, fields["tag"])
            if cache_id is None:
                raise EmulatorAPIError(
                    404, "resource_not_found_error", f"Not found the tag {fields['tag']}"
                )
        if not cache_id:
            raise EmulatorAPIError(
                400,
                "invalid_request_error",
                "Invalid request: cache message content must be "
                "'cache_id=<id>[;reset_ttl=<seconds>]' or 'tag=<tag>[;reset_ttl=<seconds>]'",
            )
        cache = self.emu.caches.get(key, cache_id)
        if cache is None:
            raise EmulatorAPIError(
                404, "resource_not_found_error", f"Not found the cache {cache_id}"
            )
        profile = self.emu.profiles.get(str(body.get("model")))
        if profile is not None and profile.cache_family != cache.model:
            raise EmulatorAPIError(
                400,
                "invalid_request_error",
                f"Invalid request: cache {cache_id} belongs to model family {cache.model}, "
                f"which does not include {profile.name}",
            )
        status = cache.status(self.emu.clock.now())
        if status != "ready":
            raise EmulatorAPIError(
                400,
                "invalid_request_error",
                f"Invalid request: cache {cache_id} is not ready (status: {status})",
            )
        reset: float | None = None
        if "reset_ttl" in fields:
            try:
                reset = float(fields["reset_ttl"])
            except ValueError as exc:
                raise EmulatorAPIError(
                    400, "invalid_request_error", "Invalid request: reset_ttl must be a number"
                ) from exc
        return cache, reset

    def _cached_tokens(
        self,
        validated: ValidatedChatRequest,
        body: Mapping[str, Any],
        key: str,
        message_cache: ExplicitCache | None,
        message_reset: float | None,
    ) -> tuple[int, ExplicitCache | None]:
        emu = self.emu
        now = emu.clock.now()
        if message_cache is not None:
            if message_reset is not None:
                emu._settle_storage(message_cache)
                message_cache.expired_at = now + message_reset
            return message_cache.tokens, message_cache
        header_id = self.headers.get("X-Msh-Context-Cache")
        if header_id:
            cache = emu.caches.get(key, header_id.strip())
            if (
                cache is not None
                and cache.status(now) == "ready"
                and validated.profile.cache_family == cache.model
            ):
                prefix = validated.messages[: len(cache.messages)]
                same = (
                    len(prefix) == len(cache.messages)
                    and messages_digest(prefix, validated.tools) == cache.digest
                )
                if same:
                    reset_raw = self.headers.get("X-Msh-Context-Cache-Reset-TTL")
                    if reset_raw:
                        try:
                            reset = float(reset_raw)
                        except ValueError:
                            reset = None
                        if reset is not None and reset > 0:
                            emu._settle_storage(cache)
                            cache.expired_at = now + reset
                    return min(cache.tokens, validated.prompt_tokens), cache
        if validated.profile.cache_kind != "automatic":
            return 0, None
        if self._epoch != emu._current_epoch:
            return 0, None  # in flight across reset(): do not refill the cleared cache
        cache_key = body.get("prompt_cache_key")
        if not emu.cache_key_partitions or not isinstance(cache_key, str):
            cache_key = None  # today: the content prefix alone is the cache identity
        # Moonshot's K3 docs: switching reasoning_effort invalidates prefix-cache hits
        # (quoted in opencode-kimi-full PR #11).
        effort = body.get("reasoning_effort") if validated.profile.reasoning_efforts else None
        partition = (validated.profile.name, key, cache_key, effort)
        return emu.prefix_cache.lookup_and_store(partition, validated.tokens), None

    def _reason_free(self, validated: ValidatedChatRequest, base_id: int) -> bool:
        """Whether a tool-call reply to this request carries empty reasoning.

        Real thinking replies sometimes carry empty reasoning on tool-call turns
        ("reason-free turns"; Moonshot's kosong client keeps "" as "reasoned but empty");
        the next request must still replay the field. Every ``reason_free_every``-th
        tool-call turn of a conversation (counted by earlier tool calls) is one.
        """
        every = self.emu.reason_free_every
        return bool(validated.thinking and every and base_id % every == every - 1)

    def _make_choice(
        self, index: int, spec: ReplySpec, validated: ValidatedChatRequest, base_id: int
    ) -> _Choice:
        tok = self.emu.tokenizer
        reasoning: str | None = None
        if validated.thinking:
            reasoning = (
                spec.reasoning
                if spec.reasoning is not None
                else deterministic_text(8, "think|" + str(index))
            )
        reasoning_tokens = tok.count_text(reasoning) if reasoning else 0
        if reasoning and reasoning_tokens >= validated.max_tokens:
            # The reasoning used the whole output budget: no answer (finish "length").
            reasoning = tok.truncate(reasoning, validated.max_tokens)
            return _Choice(
                index=index,
                content="",
                reasoning=reasoning,
                tool_calls=[],
                finish_reason="length",
                completion_tokens=tok.count_text(reasoning),
                reasoning_tokens=tok.count_text(reasoning),
            )
        calls: list[dict[str, Any]] = []
        call_tokens = 0
        for offset, call in enumerate(spec.tool_calls):
            entry = {
                "index": offset,
                "id": f"functions.{call.name}:{base_id + offset}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json()},
            }
            calls.append(entry)
            call_tokens += tok.count_text(call.name) + tok.count_text(call.arguments_json()) + 2
        content = spec.content or ""
        finish = spec.finish_reason or ("tool_calls" if calls else "stop")
        stop = _stop_list(self._body_stop)
        cut_at = min((i for i in (content.find(x) for x in stop if x) if i >= 0), default=-1)
        if cut_at >= 0:
            content = content[:cut_at]
        budget = validated.max_tokens - reasoning_tokens - call_tokens
        content_tokens = tok.count_text(content)
        if content_tokens > max(budget, 0):
            content = tok.truncate(content, max(budget, 0))
            content_tokens = tok.count_text(content)
            finish = spec.finish_reason or "length"
        return _Choice(
            index=index,
            content=content,
            reasoning=reasoning,
            tool_calls=calls,
            finish_reason=finish,
            completion_tokens=content_tokens + reasoning_tokens + call_tokens,
            reasoning_tokens=reasoning_tokens,
        )

    def _usage(
        self, validated: ValidatedChatRequest, choices: Sequence[_Choice], cached: int
    ) -> dict[str, Any]:
        completion = sum(c.completion_tokens for c in choices)
        reasoning = sum(c.reasoning_tokens for c in choices)
        usage: dict[str, Any] = {
            "prompt_tokens": validated.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": validated.prompt_tokens + completion,
            "cached_tokens": cached,
        }
        if self.emu.nested_cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        if validated.thinking:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        return usage

    def _bill_chat(
        self,
        key: str,
        validated: ValidatedChatRequest,
        usage: Mapping[str, Any],
        explicit_hit: ExplicitCache | None,
        seq: int,
    ) -> None:
        emu = self.emu
        now = emu.clock.now()
        pricing = validated.profile.pricing
        searches = web_search_echoes(validated.messages)
        if searches and pricing.web_search_call:
            # Each $web_search the client hands back is one billed search.
            emu._bill(
                key,
                LedgerEntry(
                    kind="web_search",
                    model=validated.profile.name,
                    cost=searches * pricing.web_search_call,
                    currency=pricing.currency,
                    time=now,
                    request_seq=seq,
                ),
                self._epoch,
            )
        prompt = int(usage["prompt_tokens"])
        cached = int(usage["cached_tokens"])
        output = int(usage["completion_tokens"])
        if explicit_hit is not None:
            cost = ((prompt - cached) * pricing.input_cache_miss + output * pricing.output) / 1e6
        else:
            cost = pricing.cost(prompt_tokens=prompt, cached_tokens=cached, output_tokens=output)
        reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0))
        emu._bill(
            key,
            LedgerEntry(
                kind="chat",
                model=validated.profile.name,
                cost=cost,
                currency=pricing.currency,
                time=now,
                request_seq=seq,
                prompt_tokens=prompt,
                cached_tokens=cached,
                completion_tokens=output,
                reasoning_tokens=reasoning,
                cache_id=explicit_hit.id if explicit_hit is not None else None,
            ),
            self._epoch,
        )
        if explicit_hit is not None:
            ep = emu._explicit_pricing(explicit_hit.model)
            emu._bill(
                key,
                LedgerEntry(
                    kind="cache_call",
                    model=explicit_hit.model,
                    cost=ep.per_hit_call,
                    currency=ep.currency,
                    time=now,
                    request_seq=seq,
                    cache_id=explicit_hit.id,
                ),
                self._epoch,
            )

    def _completion_json(
        self,
        validated: ValidatedChatRequest,
        choices: Sequence[_Choice],
        usage: Mapping[str, Any],
    ) -> dict[str, Any]:
        out_choices = []
        for choice in choices:
            message: dict[str, Any] = {"role": "assistant", "content": choice.content}
            if choice.reasoning is not None:
                message["reasoning_content"] = choice.reasoning
            if choice.tool_calls:
                message["tool_calls"] = choice.tool_calls
            out_choices.append(
                {"index": choice.index, "message": message, "finish_reason": choice.finish_reason}
            )
        return {
            "id": self._completion_id(),
            "object": "chat.completion",
            "created": int(self.emu.clock.now()),
            "model": validated.profile.name,
            "choices": out_choices,
            "usage": dict(usage),
        }

    def _completion_id(self) -> str:
        seed = f"{time.time_ns()}|{threading.get_ident()}".encode()
        return "chatcmpl-" + hashlib.sha256(seed).hexdigest()[:24]

    # ---------------------------------------------------------------- streaming
    def _stream(
        self,
        body: Mapping[str, Any],
        validated: ValidatedChatRequest,
        choices: Sequence[_Choice],
        usage: Mapping[str, Any],
        completion: Mapping[str, Any],
        cut_after: int | None,
        record: RequestRecord,
    ) -> None:
        emu = self.emu
        options = body.get("stream_options")
        include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
        mode = emu.stream_usage_mode
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {
            "id": completion["id"],
            "object": "chat.completion.chunk",
            "created": completion["created"],
            "model": completion["model"],
        }
        events = list(self._chunks(base, choices, usage, include_usage, mode))
        sent = 0
        for event in events:
            if cut_after is not None and sent >= cut_after:
                self.wfile.flush()
                raise _CutConnectionError
            self._write_chunk(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
            sent += 1
            if emu.stream_chunk_delay > 0:
                time.sleep(emu.stream_chunk_delay)
        if cut_after is not None and sent >= cut_after:
            raise _CutConnectionError
        # Log before the last bytes: once a client has the whole reply, it is in the log.
        emu._log_record(record, self._epoch)
        self._logged = True
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    def _pieces(self, text: str) -> Iterator[str]:
        size = self.emu.stream_chunk_chars
        for start in range(0, len(text), size):
            yield text[start : start + size]

    def _chunks(
        self,
        base: Mapping[str, Any],
        choices: Sequence[_Choice],
        usage: Mapping[str, Any],
        include_usage: bool,
        mode: StreamUsageMode,
    ) -> Iterator[dict[str, Any]]:
        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                **base,
                "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
            }

        for choice in choices:
            yield chunk(choice.index, {"role": "assistant", "content": ""})
            if choice.reasoning:
                for piece in self._pieces(choice.reasoning):
                    yield chunk(choice.index, {"reasoning_content": piece})
            elif choice.reasoning is not None:
                yield chunk(choice.index, {"reasoning_content": ""})  # reason-free turn
            for piece in self._pieces(choice.content):
                yield chunk(choice.index, {"content": piece})
            for call in choice.tool_calls:
                yield chunk(
                    choice.index,
                    {
                        "tool_calls": [
                            {
                                "index": call["index"],
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": ""},
                            }
                        ]
                    },
                )
                for piece in self._pieces(call["function"]["arguments"]):
                    yield chunk(
                        choice.index,
                        {
                            "tool_calls": [
                                {"index": call["index"], "function": {"arguments": piece}}
                            ]
                        },
                    )
            last = chunk(choice.index, {}, choice.finish_reason)
            if mode in ("in_choice", "both") and choice is choices[-1]:
                last["choices"][0]["usage"] = dict(usage)
            yield last
        if include_usage and mode in ("final_chunk", "both"):
            yield {**base, "choices": [], "usage": dict(usage)}

    # ---------------------------------------------------------------- admin
    def _admin(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        emu = self.emu
        try:
            body = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            self._send_json(
                400,
                {"error": {"type": "invalid_request_error", "message": "body is not valid JSON"}},
            )
            return
        try:
            if path == "/_emulator/health":
                self._send_json(200, {"status": "ok", "base_url": emu.base_url})
            elif path == "/_emulator/requests" and method == "GET":
                self._send_json(200, {"data": [r.to_dict() for r in emu.requests]})
            elif path == "/_emulator/ledger" and method == "GET":
                key = (query.get("api_key") or [""])[0]
                if key:
                    self._send_json(200, emu.ledger(key).to_dict())
                else:
                    self._send_json(
                        200, {"data": {h: a.to_dict() for h, a in emu.ledgers().items()}}
                    )
            elif path == "/_emulator/reset" and method == "POST":
                emu.reset()
                self._send_json(200, {"reset": True})
            elif path == "/_emulator/faults":
                if method == "POST":
                    specs = body if isinstance(body, list) else [body]
                    for spec in specs:
                        emu.faults.add_from_dict(spec)
                elif method == "DELETE":
                    emu.faults.clear()
                self._send_json(
                    200,
                    {
                        "data": [
                            {
                                **r.fault.to_dict(),
                                "at": sorted(r.at) if r.at is not None else None,
                                "rate": r.rate,
                                "endpoint": r.endpoint,
                                "fired": r.fired,
                            }
                            for r in emu.faults.rules
                        ]
                    },
                )
            elif path == "/_emulator/clock" and method == "POST":
                emu.advance_time(float(body.get("advance", 0)))
                self._send_json(200, {"now": emu.clock.now(), "offset": emu.clock.offset})
            else:
                self._send_json(
                    404,
                    {
                        "error": {
                            "type": "resource_not_found_error",
                            "message": f"Not found: {method} {path}",
                        }
                    },
                )
        except (ValueError, TypeError) as exc:
            self._send_json(400, {"error": {"type": "invalid_request_error", "message": str(exc)}})


def _stop_list(stop: Any) -> list[str]:
    """Return the request's ``stop`` as a list of strings (already validated)."""
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [x for x in stop if isinstance(x, str)]
    return []


# ====================================================================== caching API


class _CachingRoutes:
    """``/v1/caching`` endpoints (explicit Context Caching API)."""

    def __init__(self, handler: _Handler, key: str, record: RequestRecord) -> None:
        self.h = handler
        self.emu = handler.emu
        self.key = key
        self.record = record

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        fault = self.emu.faults.next_fault("caching")
        if fault is not None:
            self.record.fault = fault.kind
            if fault.delay > 0:
                time.sleep(fault.delay)
            err = fault.error()
            if err is not None:
                raise err
        rest = path[len("/v1/caching") :].strip("/")
        if rest.startswith("refs/tags"):
            self._tags(method, rest[len("refs/tags") :].strip("/"), body)
            return
        if not rest:
            if method == "POST":
                self._create(body)
            elif method == "GET":
                self._list(query)
            else:
                raise _method_not_allowed(method, path)
            return
        cache_id = unquote(rest)
        if method == "GET":
            self.h._ok(self.record, self._get(cache_id).to_json(self.emu.clock.now()))
        elif method == "PUT":
            self._update(cache_id, body)
        elif method == "DELETE":
            cache = self.emu.caches.get(self.key, cache_id)
            if cache is None:
                raise _cache_not_found(cache_id)
            self.emu._settle_storage(cache)
            self.emu.caches.delete(self.key, cache_id)
            self.h._ok(
                self.record,
                {"deleted": True, "id": cache_id, "object": "context_cache.object.deleted"},
            )
        else:
            raise _method_not_allowed(method, path)

    def _get(self, cache_id: str) -> ExplicitCache:
        cache = self.emu.caches.get(self.key, cache_id)
        if cache is None:
            raise _cache_not_found(cache_id)
        return cache

    def _create(self, body: Any) -> None:
        if not isinstance(body, Mapping):
            raise _bad("body must be a JSON object")
        model = body.get("model")
        families = {p.cache_family for p in self.emu.profiles.values() if p.cache_family}
        if model not in families:
            raise _bad(
                f"model must be a model family that supports context caching "
                f"({', '.join(sorted(families)) or 'none'}), got {model!r}"
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad("messages must be a non-empty list")
        for index, message in enumerate(messages):
            if not isinstance(message, Mapping) or message.get("role") not in (
                "system",
                "user",
                "assistant",
                "tool",
            ):
                raise _bad(f"unknown role in message at index {index}")
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise _bad("tools must be a list")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise _bad("metadata must be a map of strings to strings")
        now = self.emu.clock.now()
        ttl, expired_at = self._expiry(body, now)
        cache = self.emu.caches.create(
            api_key=self.key,
            model=str(model),
            messages=[dict(m) for m in messages],
            tools=[dict(t) for t in tools],
            now=now,
            ttl=ttl,
            expired_at=expired_at,
            name=body.get("name"),
            description=body.get("description"),
            metadata=metadata,
            ready_delay=self.emu.cache_ready_delay,
        )
        pricing = self.emu._explicit_pricing(cache.model)
        self.emu._bill(
            self.key,
            LedgerEntry(
                kind="cache_create",
                model=cache.model,
                cost=cache.tokens / 1e6 * pricing.creation_per_m,
                currency=pricing.currency,
                time=now,
                request_seq=self.record.seq,
                cache_id=cache.id,
                cache_tokens=cache.tokens,
            ),
            self.h._epoch,
        )
        self.h._ok(self.record, cache.to_json(now))

    @staticmethod
    def _expiry(body: Mapping[str, Any], now: float) -> tuple[float | None, float | None]:
        ttl = body.get("ttl")
        expired_at = body.get("expired_at")
        if ttl is not None and (not isinstance(ttl, int | float) or ttl <= 0):
            raise _bad("ttl must be a positive number of seconds")
        if expired_at is not None:
            if not isinstance(expired_at, int | float) or expired_at <= now:
                raise _bad("expired_at must be a unix time in the future")
            return None, float(expired_at)
        return (float(ttl) if ttl is not None else None), None

    def _list(self, query: dict[str, list[str]]) -> None:
        now = self.emu.clock.now()
        caches = self.emu.caches.for_key(self.key)
        for name, values in query.items():
            if name.startswith("metadata[") and name.endswith("]"):
                meta_key = name[len("metadata[") : -1]
                caches = [c for c in caches if c.metadata.get(meta_key) == values[0]]
        order = (query.get("order") or ["desc"])[0]
        caches.sort(key=lambda c: (c.created_at, c.id), reverse=order != "asc")
        ids = [c.id for c in caches]
        after = (query.get("after") or [""])[0]
        before = (query.get("before") or [""])[0]
        if after and after in ids:
            caches = caches[ids.index(after) + 1 :]
        elif before and before in ids:
            caches = caches[: ids.index(before)]
        try:
            limit = int((query.get("limit") or ["20"])[0])
        except ValueError as exc:
            raise _bad("limit must be an integer") from exc
        if not 1 <= limit <= 1000:
            raise _bad("limit must be in [1, 1000]")
        page = caches[:limit]
        self.h._ok(
            self.record,
            {
                "object": "list",
                "data": [c.to_json(now) for c in page],
                "has_more": len(caches) > limit,
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
            },
        )

    def _update(self, cache_id: str, body: Any) -> None:
        cache = self._get(cache_id)
        if not isinstance(body, Mapping):
            raise _bad("body must be a JSON object")
        now = self.emu.clock.now()
        self.emu._settle_storage(cache)
        if cache.status(now) == "inactive":
            raise _bad(f"cache {cache_id} is expired (status: inactive)")
        metadata = body.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
            ):
                raise _bad("metadata must be a map of strings to strings")
            cache.metadata = dict(metadata)
        ttl, expired_at = self._expiry(body, now)
        if expired_at is not None:
            cache.expired_at = expired_at
        elif ttl is not None:
            cache.expired_at = now + ttl
        self.h._ok(self.record, cache.to_json(now))

    def _tags(self, method: str, rest: str, body: Any) -> None:
        caches = self.emu.caches
        if not rest:
            if method == "POST":
                if not isinstance(body, Mapping) or not isinstance(body.get("tag"), str):
                    raise _bad("body must have tag and cache_id")
                cache_id = str(body.get("cache_id", ""))
                self._get(cache_id)
                caches.set_tag(self.key, body["tag"], cache_id)
                self.h._ok(
                    self.record,
                    {"tag": body["tag"], "cache_id": cache_id, "object": "cache_tag.object"},
                )
            elif method == "GET":
                self.h._ok(
                    self.record,
                    {
                        "object": "list",
                        "data": [
                            {"tag": t, "cache_id": c, "object": "cache_tag.object"}
                            for t, c in sorted(caches.tags(self.key).items())
                        ],
                    },
                )
            else:
                raise _method_not_allowed(method, "/v1/caching/refs/tags")
            return
        tag, _, tail = rest.partition("/")
        tag = unquote(tag)
        tagged = caches.tag(self.key, tag)
        if tagged is None:
            raise EmulatorAPIError(404, "resource_not_found_error", f"Not found the tag {tag}")
        cache_id = tagged
        if method == "GET" and tail == "content":
            self.h._ok(self.record, self._get(cache_id).to_json(self.emu.clock.now()))
        elif method == "GET" and not tail:
            self.h._ok(
                self.record, {"tag": tag, "cache_id": cache_id, "object": "cache_tag.object"}
            )
        elif method == "DELETE" and not tail:
            caches.delete_tag(self.key, tag)
            self.h._ok(
                self.record, {"deleted": True, "tag": tag, "object": "cache_tag.object.deleted"}
            )
        else:
            raise _method_not_allowed(method, f"/v1/caching/refs/tags/{rest}")


def _bad(message: str) -> EmulatorAPIError:
    return EmulatorAPIError(400, "invalid_request_error", f"Invalid request: {message}")


def _cache_not_found(cache_id: str) -> EmulatorAPIError:
    return EmulatorAPIError(404, "resource_not_found_error", f"Not found the cache {cache_id}")


def _method_not_allowed(method: str, path: str) -> EmulatorAPIError:
    return EmulatorAPIError(
        HTTPStatus.METHOD_NOT_ALLOWED.value,
        "invalid_request_error",
        f"Method {method} not allowed on {path}",
    )
