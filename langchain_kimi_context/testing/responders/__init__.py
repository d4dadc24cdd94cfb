"""Deterministic responders: what the emulated model "says".

A responder is any callable ``(ResponderRequest) -> ReplySpec``. The emulator validates
the request, asks the responder for a reply, then assigns Kimi-style tool-call ids
(``functions.<name>:<n>``), counts tokens, applies ``max_tokens`` and bills the call.

Default responder (:class:`DefaultResponder`): the :class:`CompactionResponder` when the
request has NO tools and its first system message contains "compact" or "summar"
(case-insensitive), else the :class:`ScriptedAgentResponder`.

Scripted agent grammar
======================

Directives are lines of the LAST user message that start with ``@`` (leading spaces
allowed); every other line is ordinary text. Arguments are separated by whitespace; a
JSON argument is the rest of the line.

Tool steps (a *step* is one assistant message; its calls run in parallel):

``@call <tool> [<json object>]``
    Add a call of ``<tool>`` with those arguments (default ``{}``) to the current
    step. Consecutive ``@call`` lines form ONE assistant message with parallel calls.
``@then``
    End the current step; following ``@call`` lines form the next assistant message.
``@calls <n> <tool> [<json object>]``
    Append ``n`` sequential steps, one call each (the text ``{i}`` in the JSON is
    replaced by the 1-based step number), e.g. ``@calls 30 read_file {"path": "f{i}.py"}``.

The agent is stateless: it counts the assistant tool-call messages after the last user
message to know how many steps are done, emits the next step, and after the last step
(when the last message is a tool result) gives the final reply. Calls are emitted even
for tools the request did not declare (to test hallucinated tool names), but never when
``tool_choice`` is ``"none"``.

Final reply:

``@say <text>``
    Exact text (several ``@say`` lines are joined with newlines).
``@reply <N>``
    Deterministic prose of exactly ``N`` tokens of the emulator's tokenizer (after
    ``@say`` text, if both are given).
``@empty``
    Empty content (no tool calls): tests of empty-reply handling.
``@finish <reason>``
    Force ``finish_reason`` (e.g. ``length``, ``content_filter``).
``@think <N>``
    Reasoning of exactly ``N`` tokens on every reply of the turn (thinking models
    only; without it thinking models reason briefly, a dozen tokens).
``@fail <fault> [args]``
    Make the emulator fail this request once (then succeed on the identical retry):
    ``rate_limit [T]``, ``overloaded``, ``quota``, ``server_error``, ``overflow``,
    ``content_filter``, ``permission_denied``, ``empty``, ``slow <seconds>``,
    ``cut <k>`` (stream closed after ``k`` chunks), or
    ``<fault> x<count>`` to fail ``count`` times, e.g. ``@fail server_error x2``.
``@<anything else> ...``
    A hint ignored by the agent (e.g. ``@tool_result_chars 50000`` for test tools, read
    with :func:`directive_values`).

Without a final-reply directive, the reply after tool results quotes them briefly
(``Tool results: read_file -> <first 60 chars>; ...``); with no directive at all the
reply is ``Reply to: <first words of the user text>``.

Tool choice and structured output:

* ``tool_choice`` ``"required"`` or a named function, with no scripted call at this
  point and a last message that is not a tool result (so forced loops end): the agent
  calls the forced (or first) tool with arguments synthesised from its JSON schema and
  the user text (quoted strings and numbers, in order).
* ``tool_choice`` auto and a user message with NO directive at all: the agent calls the
  offered tool whose name words (``get_weather`` -> "weather"; generic words such as
  "tool" ignored) occur in the user text, once, then answers
  (``ScriptedAgentResponder(auto_tool_calls=False)`` turns this off).
* ``response_format`` ``json_schema``: a JSON reply synthesised the same way;
  ``json_object``: an object whose keys are the quoted identifiers of the user text
  (e.g. ``'setup'`` and ``'punchline'``), else ``{"reply": ...}``.

The emulator (not the agent) applies ``stop`` sequences and ``max_tokens``.

Compaction responder
====================
Answers the transcript form (above) and the cache-friendly form: the conversation as
sent before, tools included, with a last user message starting "Compaction request:"
(that message is the instruction, not content; an earlier summary in the conversation, a
system message starting "Previous context has been compacted", is folded in item by
item). Returns a Markdown summary with the headings ``## Current Task``, ``## Errors &
Solutions``, ``## Code``, ``## System Context``, ``## Design Decisions`` and ``## TODO``,
built from the request text: the current task (the last real user request), lines
mentioning errors/tracebacks/exceptions, file paths, other system messages and
environment lines, ``Decision:`` lines and ``TODO:`` lines; sized to at most a quarter of
the request's prompt tokens (the headings are always present).

Modules
=======
Each states its contract in its docstring: :mod:`.protocol` (request, reply, the
:class:`Responder` protocol), :mod:`.directives` (``@`` lines), :mod:`.text`
(deterministic prose), :mod:`.synthesis` (tool arguments from schemas, JSON replies),
:mod:`.scripted` (the scripted agent), :mod:`.compaction` (the compaction responder) and
:mod:`.default` (the dispatcher).
"""

from __future__ import annotations

from langchain_kimi_context.testing.responders.compaction import (
    CompactionResponder,
    is_compaction_request,
)
from langchain_kimi_context.testing.responders.default import DefaultResponder
from langchain_kimi_context.testing.responders.directives import (
    Directive,
    directive_values,
    parse_directives,
)
from langchain_kimi_context.testing.responders.protocol import (
    ReplySpec,
    Responder,
    ResponderRequest,
    ToolCallSpec,
)
from langchain_kimi_context.testing.responders.scripted import ScriptedAgentResponder
from langchain_kimi_context.testing.responders.synthesis import synthesize_from_schema
from langchain_kimi_context.testing.responders.text import deterministic_text

__all__ = [
    "CompactionResponder",
    "DefaultResponder",
    "Directive",
    "ReplySpec",
    "Responder",
    "ResponderRequest",
    "ScriptedAgentResponder",
    "ToolCallSpec",
    "deterministic_text",
    "directive_values",
    "is_compaction_request",
    "parse_directives",
    "synthesize_from_schema",
]
