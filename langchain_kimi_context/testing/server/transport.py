"""Emulator transport: the HTTP server, request parsing, auth and the JSON/error replies.

Contract: :class:`_HandlerBase` reads the body (at most 64 MiB), answers ``/_emulator``
admin paths without auth, logs every API request as a
:class:`~langchain_kimi_context.testing.ledger.RequestRecord` (headers redacted), checks
the bearer key (401 otherwise) and hands the request to ``_route``. An
:class:`~langchain_kimi_context.testing.validation.EmulatorAPIError` becomes Kimi's JSON
error body; :class:`_CutConnectionError` drops the connection mid-response; a client that
hangs up is logged, never reported. Routes live in the sibling modules.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from langchain_kimi_context.testing.ledger import (
    RequestRecord,
    key_hint,
    redact_headers,
)
from langchain_kimi_context.testing.validation import EmulatorAPIError

if TYPE_CHECKING:
    from langchain_kimi_context.testing.server.emulator import KimiEmulator


_MAX_BODY = 64 * 1024 * 1024


class _CutConnectionError(Exception):
    """Raised inside the handler to drop the connection mid-response."""


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


class _HandlerBase(BaseHTTPRequestHandler):
    """HTTP plumbing shared by every route: parse, authenticate, log, reply."""

    protocol_version = "HTTP/1.1"
    server: _Server
    _body_stop: Any = None
    _epoch: int = 0
    _logged: bool = False
    server_version = "KimiEmulator/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

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
        """Serve an authenticated API request (implemented by the composed handler)."""
        raise NotImplementedError

    def _admin(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        """Serve an ``/_emulator`` admin request (implemented by the admin route)."""
        raise NotImplementedError
