"""The emulator's own deterministic tokenizer (deliberately not tiktoken).

The emulator must not share the client's token counter, or a bug in the client's
counting would be invisible in tests. This tokenizer is a small regex scanner:

* a run of ASCII letters is one token per started 8 letters,
* a run of digits is one token per started group of 3 digits,
* a run of CJK / kana / hangul characters is one token per started pair (Moonshot's docs:
  one token is about 1.5 to 2 Chinese characters),
* any other non-space character is one token; whitespace is free.

A chat request is serialised canonically (tools first, then each message as a role
marker, its fields and an end marker), and the resulting token sequence is what the
emulator counts for ``usage.prompt_tokens``, the window check and prefix caching.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "EmulatorTokenizer",
    "canonical_json",
    "message_text",
]

_TOKEN_RE = re.compile(
    r"[A-Za-z]{1,8}"
    r"|\d{1,3}"
    r"|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]{1,2}"
    r"|[^\sA-Za-z\d]",
)


def canonical_json(value: Any) -> str:
    """Serialise ``value`` as canonical JSON (sorted keys, no extra spaces).

    Args:
        value: Any JSON-compatible value.

    Returns:
        The canonical JSON text.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def message_text(content: Any) -> str:
    r"""Return the text of a message ``content`` (a string or a list of parts).

    Non-text parts are rendered as their canonical JSON so that they still count.

    Args:
        content: ``message["content"]`` as sent by a client.

    Returns:
        The text; ``""`` for ``None``.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                parts.append(part)
            else:
                parts.append(canonical_json(part))
        return "\n".join(parts)
    return canonical_json(content)


class EmulatorTokenizer:
    """Deterministic, fast regex tokenizer used by :class:`KimiEmulator`.

    Args:
        message_overhead: Marker tokens around every message (role marker + end marker
            are always 2; extra overhead is added on top).

    Example:
        >>> tok = EmulatorTokenizer()
        >>> tok.tokenize("Hello, world 12345")
        ['Hello', ',', 'world', '123', '45']
        >>> tok.count_text("你好")
        1
        >>> tok.count_messages([{"role": "user", "content": "hi"}])
        3
    """

    def __init__(self, *, message_overhead: int = 0) -> None:
        if message_overhead < 0:
            msg = "message_overhead must be >= 0"
            raise ValueError(msg)
        self.message_overhead = message_overhead

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens.

        Args:
            text: Any text.

        Returns:
            The tokens, in order.
        """
        return _TOKEN_RE.findall(text)

    def count_text(self, text: str) -> int:
        """Count the tokens of ``text``.

        Args:
            text: Any text.

        Returns:
            The token count.
        """
        return sum(1 for _ in _TOKEN_RE.finditer(text))

    def truncate(self, text: str, n_tokens: int) -> str:
        """Return the longest prefix of ``text`` that has at most ``n_tokens`` tokens.

        Args:
            text: Any text.
            n_tokens: Token budget.

        Returns:
            The prefix (ending right after its last whole token).
        """
        if n_tokens <= 0:
            return ""
        for count, match in enumerate(_TOKEN_RE.finditer(text), start=1):
            if count == n_tokens:
                return text[: match.end()]
        return text

    def serialize_tools(self, tools: Sequence[Mapping[str, Any]] | None) -> list[str]:
        """Return the token sequence of a ``tools`` list (canonical JSON).

        Args:
            tools: The request's ``tools`` (may be ``None``).

        Returns:
            Tokens, including a tools marker; empty when there are no tools.
        """
        if not tools:
            return []
        return ["<|tools|>", *self.tokenize(canonical_json(list(tools))), "<|/tools|>"]

    def serialize_message(self, message: Mapping[str, Any]) -> list[str]:
        """Return the token sequence of one chat message.

        The sequence is: a role marker, then the name, reasoning, content, tool calls
        and tool call id (those present), then an end marker.

        Args:
            message: An OpenAI-shaped chat message dict.

        Returns:
            Tokens.
        """
        role = str(message.get("role", ""))
        out = [f"<|{role}|>"]
        out.extend(["<|pad|>"] * self.message_overhead)
        name = message.get("name")
        if name:
            out.append(f"<|name:{name}|>")
        reasoning = message.get("reasoning_content")
        if reasoning:
            out.append("<|think|>")
            out.extend(self.tokenize(str(reasoning)))
        out.extend(self.tokenize(message_text(message.get("content"))))
        tool_calls = message.get("tool_calls")
        if tool_calls:
            for call in tool_calls:
                out.append("<|call|>")
                out.extend(self.tokenize(canonical_json(call)))
        tool_call_id = message.get("tool_call_id")
        if tool_call_id:
            out.append(f"<|id:{tool_call_id}|>")
        out.append("<|end|>")
        return out

    def serialize_request(
        self,
        messages: Iterable[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[str]:
        """Return the canonical token sequence of a chat request (tools, then messages).

        Args:
            messages: The chat messages.
            tools: The request's tools.

        Returns:
            Tokens; ``len()`` of it is the request's prompt token count.
        """
        out = self.serialize_tools(tools)
        for message in messages:
            out.extend(self.serialize_message(message))
        return out

    def count_messages(
        self,
        messages: Iterable[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> int:
        """Count the prompt tokens of a chat request.

        Args:
            messages: The chat messages.
            tools: The request's tools.

        Returns:
            The prompt token count.
        """
        return len(self.serialize_request(messages, tools))

    def block_hashes(self, tokens: Sequence[str], block_size: int) -> list[bytes]:
        """Return chained hashes of each complete ``block_size`` block of ``tokens``.

        Hash ``i`` covers tokens ``[0, (i + 1) * block_size)``, so two sequences share
        hash ``i`` exactly when they share that whole prefix (up to hash collisions).

        Args:
            tokens: A token sequence.
            block_size: Tokens per block (256 for Kimi's prefix cache).

        Returns:
            One digest per complete block.
        """
        digests: list[bytes] = []
        previous = b""
        for start in range(0, len(tokens) - block_size + 1, block_size):
            h = hashlib.blake2b(previous, digest_size=16)
            h.update("\x00".join(tokens[start : start + block_size]).encode("utf-8"))
            previous = h.digest()
            digests.append(previous)
        return digests
