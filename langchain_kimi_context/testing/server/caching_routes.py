"""The explicit Context Caching API routes: ``/v1/caching[/{id}]`` and cache tags.

Contract: create, list, get, update and delete caches and tags per API key, with Kimi's
validation errors (400), ``Not found the cache <id>`` (404) and 405 for other methods;
the cache state itself lives in :mod:`langchain_kimi_context.testing.caching`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from langchain_kimi_context.testing.caching import ExplicitCache
from langchain_kimi_context.testing.ledger import (
    LedgerEntry,
    RequestRecord,
)
from langchain_kimi_context.testing.server.transport import _HandlerBase
from langchain_kimi_context.testing.validation import EmulatorAPIError


class _CachingRoutes:
    """``/v1/caching`` endpoints (explicit Context Caching API)."""

    def __init__(self, handler: _HandlerBase, key: str, record: RequestRecord) -> None:
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
