"""The emulator's request handler: the API route table, models and token estimates.

Contract: :class:`_Handler` composes the transport, the chat route (with SSE) and the
admin route, and maps ``POST /v1/chat/completions``, ``GET /v1/models[/{id}]``,
``POST /v1/tokenizers/estimate-token-count`` and ``/v1/caching...`` to their handlers;
anything else is Kimi's 404 ``resource_not_found_error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from langchain_kimi_context.profiles import KimiModelProfile
from langchain_kimi_context.testing.ledger import RequestRecord
from langchain_kimi_context.testing.server.admin import _AdminRoute
from langchain_kimi_context.testing.server.caching_routes import _CachingRoutes
from langchain_kimi_context.testing.server.chat import _ChatRoute
from langchain_kimi_context.testing.validation import EmulatorAPIError


class _Handler(_ChatRoute, _AdminRoute):
    """One HTTP request to the emulator (a new instance per request)."""

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
