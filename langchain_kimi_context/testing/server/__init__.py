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

Modules (each states its contract in its docstring): :mod:`.emulator` (the
:class:`KimiEmulator` object: state, lifecycle, billing), :mod:`.transport` (HTTP server,
parsing, auth, JSON and error replies), :mod:`.routes` (the route table, models, token
estimates), :mod:`.chat` (chat completions), :mod:`.sse` (streamed replies),
:mod:`.admin` (``/_emulator`` endpoints) and :mod:`.caching_routes` (``/v1/caching``).

See :mod:`langchain_kimi_context.testing` for the overview and
:mod:`langchain_kimi_context.testing.responders` for the scripted-agent grammar.
"""

from __future__ import annotations

from langchain_kimi_context.testing.server.emulator import (
    DEFAULT_API_KEY,
    Catalog,
    KimiEmulator,
    StreamUsageMode,
)

__all__ = ["DEFAULT_API_KEY", "Catalog", "KimiEmulator", "StreamUsageMode"]
