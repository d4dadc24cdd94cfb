"""Offline Kimi (Moonshot) API emulator for tests, examples, notebooks and benchmarks.

``KimiEmulator`` is a real HTTP server on 127.0.0.1 that is strict where Kimi is strict
(:func:`validate_chat_request`), counts tokens with its own tokenizer, reports
``usage.cached_tokens`` from automatic prefix caching and the explicit Context Caching
API, bills every API key in a ledger, logs requests, injects faults deterministically
and replies deterministically through a pluggable responder.

By default the emulator follows today's API (``catalog="current"``): only the current
models are served (retired ids get Moonshot's 404), the thinking rules are enforced with
the API's error texts (forced ``tool_choice``, ``reasoning_content`` replay, locked
sampling parameters, ``reasoning_effort``, ``$web_search``), some thinking tool-call turns
carry empty reasoning, 429s carry their delay only in the message, and the prefix cache is
keyed by content alone. ``KimiEmulator(catalog="legacy")`` serves the retired 2025 catalog
(moonshot-v1 and its explicit Context Caching API). The public evidence of each rule is
listed in ``docs/kimi-api-rules.md``.

In-process::

    with KimiEmulator() as emu:
        model = KimiChatModel(base_url=emu.base_url, api_key=emu.api_key)
        emu.faults.rate_limit(at=1, retry_after=1)   # the next chat request gets a 429
        ...
        emu.ledger().cached_tokens, emu.requests[-1].usage

From the shell: ``python -m langchain_kimi_context.testing --port 8765`` (prints the
base URL, serves until Ctrl-C).

The default responder is a scripted agent driven by ``@`` directives in the last user
message (``@call <tool> {json}``, ``@then``, ``@say <text>``, ``@reply <N>``, ``@think
<N>``, ``@fail <kind>``...; full grammar in
:mod:`langchain_kimi_context.testing.responders`); compaction requests (no tools, first
system message mentions "compact"/"summar") get a structured summary of at most a
quarter of the prompt tokens.

Example:
    >>> from openai import OpenAI
    >>> client = OpenAI(base_url=emulator.base_url, api_key=emulator.api_key)
    >>> reply = client.chat.completions.create(model="kimi-k2.6",
    ...     messages=[{"role": "user", "content": '@call get_weather {"city": "Paris"}'}])
    >>> reply.choices[0].message.tool_calls[0].id
    'functions.get_weather:0'
"""

from langchain_kimi_context.testing.caching import EmulatorClock, ExplicitCache, PrefixCache
from langchain_kimi_context.testing.faults import (
    Fault,
    FaultInjector,
    FaultKind,
    FaultRule,
    parse_fault_directive,
)
from langchain_kimi_context.testing.ledger import LedgerAccount, LedgerEntry, RequestRecord
from langchain_kimi_context.testing.responders import (
    CompactionResponder,
    DefaultResponder,
    Directive,
    ReplySpec,
    Responder,
    ResponderRequest,
    ScriptedAgentResponder,
    ToolCallSpec,
    deterministic_text,
    directive_values,
    is_compaction_request,
    parse_directives,
    synthesize_from_schema,
)
from langchain_kimi_context.testing.server import (
    DEFAULT_API_KEY,
    Catalog,
    KimiEmulator,
    StreamUsageMode,
)
from langchain_kimi_context.testing.tokenizer import EmulatorTokenizer
from langchain_kimi_context.testing.validation import (
    SERVER_DEFAULT_MAX_TOKENS,
    EmulatorAPIError,
    ValidatedChatRequest,
    chat_request_error,
    thinking_enabled,
    validate_chat_request,
)

__all__ = [
    "DEFAULT_API_KEY",
    "SERVER_DEFAULT_MAX_TOKENS",
    "Catalog",
    "CompactionResponder",
    "DefaultResponder",
    "Directive",
    "EmulatorAPIError",
    "EmulatorClock",
    "EmulatorTokenizer",
    "ExplicitCache",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "FaultRule",
    "KimiEmulator",
    "LedgerAccount",
    "LedgerEntry",
    "PrefixCache",
    "ReplySpec",
    "RequestRecord",
    "Responder",
    "ResponderRequest",
    "ScriptedAgentResponder",
    "StreamUsageMode",
    "ToolCallSpec",
    "ValidatedChatRequest",
    "chat_request_error",
    "deterministic_text",
    "directive_values",
    "is_compaction_request",
    "parse_directives",
    "parse_fault_directive",
    "synthesize_from_schema",
    "thinking_enabled",
    "validate_chat_request",
]
