"""The chat route: ``POST /v1/chat/completions`` (JSON replies; streams go to SSE).

Contract: a request is validated like Kimi does (profile rules, thinking rules, tool-call
pairing), scripted faults fire first, the responder builds each choice, the prefix cache
and the explicit cache decide the cached tokens, the key's ledger is billed and the reply
goes out as JSON or, with ``stream: true``, as SSE (:mod:`.sse`).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_kimi_context.testing.caching import (
    ExplicitCache,
    messages_digest,
)
from langchain_kimi_context.testing.ledger import (
    LedgerEntry,
    RequestRecord,
)
from langchain_kimi_context.testing.responders import (
    ReplySpec,
    ResponderRequest,
    deterministic_text,
)
from langchain_kimi_context.testing.server.sse import _SSEMixin
from langchain_kimi_context.testing.server.transport import _CutConnectionError
from langchain_kimi_context.testing.tokenizer import message_text
from langchain_kimi_context.testing.validation import (
    EmulatorAPIError,
    ValidatedChatRequest,
    validate_chat_request,
)
from langchain_kimi_context.thinking_rules import web_search_echoes


@dataclass
class _Choice:
    index: int
    content: str
    reasoning: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    completion_tokens: int
    reasoning_tokens: int


class _ChatRoute(_SSEMixin):
    """``POST /v1/chat/completions``."""

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


def _stop_list(stop: Any) -> list[str]:
    """Return the request's ``stop`` as a list of strings (already validated)."""
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [x for x in stop if isinstance(x, str)]
    return []
