"""Admin endpoints under ``/_emulator`` (no auth): log, ledger, reset, faults, clock.

Contract: ``GET /_emulator/health|requests|ledger[?api_key=]``, ``POST /_emulator/reset``,
``GET|POST|DELETE /_emulator/faults`` and ``POST /_emulator/clock`` (``{"advance": s}``)
answer JSON; a bad body or value is a 400, an unknown path a 404. Admin requests are
never logged or billed.
"""

from __future__ import annotations

import json

from langchain_kimi_context.testing.server.transport import _HandlerBase


class _AdminRoute(_HandlerBase):
    """``/_emulator/...``."""

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
