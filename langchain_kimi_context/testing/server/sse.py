"""Server-sent events for streamed chat replies (chunked transfer encoding).

Contract: one role chunk per choice, then reasoning, content and tool-call argument
pieces of ``stream_chunk_chars`` characters, then the finish chunk; usage goes in the
last choice, in a final ``choices: []`` chunk, or both (``stream_usage_mode``); the
request is logged before ``data: [DONE]``; a ``cut`` fault drops the connection after N
events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_kimi_context.testing.ledger import RequestRecord
from langchain_kimi_context.testing.server.transport import _CutConnectionError, _HandlerBase
from langchain_kimi_context.testing.validation import ValidatedChatRequest

if TYPE_CHECKING:
    from langchain_kimi_context.testing.server.chat import _Choice
    from langchain_kimi_context.testing.server.emulator import StreamUsageMode


class _SSEMixin(_HandlerBase):
    """Writes a chat reply as an SSE stream."""

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
