"""A new pipeline stage needs its module and one entry in the stage tuple, nothing else.

The stage below is written the way CONTRIBUTING.md says a stage is written (a pure
function over ``(messages, StageContext)`` returning its own report), then added to a
copy of :data:`PIPELINE_STAGES`. With no other edit, ``prepare_context`` runs it and
reports it under its name, ``run_stages`` folds it, and ``create_kimi_agent`` builds a
node for it, stores its report and sends what ``prepare_context`` returns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from langchain_kimi_context import (
    PIPELINE_STAGES,
    ContextPolicy,
    PipelineStage,
    StageContext,
    StageReport,
    create_kimi_agent,
    prepare_context,
    run_stages,
)
from langchain_kimi_context.errors import KimiConfigurationError
from tests.compaction_helpers import RecordingModel
from tests.unit_tests.test_pipeline_properties import COUNTER

# --- the new stage: what would be its module ---------------------------------------


@dataclass(frozen=True)
class StripReport:
    """What ``strip_trailing_spaces`` changed."""

    stripped: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.stripped)

    def to_dict(self) -> dict[str, Any]:
        return {"stripped": list(self.stripped)}


def _strip_trailing_spaces(
    messages: Sequence[BaseMessage], ctx: StageContext
) -> tuple[Sequence[BaseMessage], StripReport]:
    """Strip trailing whitespace from user text (returns its input when nothing changes)."""
    out: list[BaseMessage] = []
    stripped: list[str] = []
    for message in messages:
        text = message.content
        if isinstance(message, HumanMessage) and isinstance(text, str) and text != text.rstrip():
            message = message.model_copy(update={"content": text.rstrip()})
            stripped.append(str(message.id))
        out.append(message)
    return (out if stripped else messages), StripReport(tuple(stripped))


STRIP_STAGE = PipelineStage("strip_trailing_spaces", _strip_trailing_spaces)

# --- the one entry in the stage tuple (before the estimate, like a real stage) -------

STAGES = (*PIPELINE_STAGES[:-1], STRIP_STAGE, PIPELINE_STAGES[-1])
NAMES = [stage.name for stage in STAGES]

HISTORY: list[BaseMessage] = [
    HumanMessage("list the files   ", id="u1"),
    AIMessage("a.py b.py", id="a1"),
    HumanMessage("thanks\n\n", id="u2"),
]


def test_the_report_type_satisfies_the_stage_report_protocol() -> None:
    assert isinstance(StripReport(), StageReport)


def test_prepare_context_runs_the_new_stage_and_reports_it_by_name() -> None:
    out, report = prepare_context(HISTORY, ContextPolicy(), token_counter=COUNTER, stages=STAGES)
    assert [m.content for m in out] == ["list the files", "a.py b.py", "thanks"]
    assert list(report) == NAMES
    assert report["strip_trailing_spaces"] == StripReport(("u1", "u2"))
    assert report.strip_trailing_spaces is report["strip_trailing_spaces"]
    assert report.changed
    data = json.loads(json.dumps(report.to_dict()))
    assert data["strip_trailing_spaces"] == {"stripped": ["u1", "u2"]}
    # the stages that were there before keep their names, in the report and its dict
    assert report.sanitize is report["sanitize"]
    assert report.pairing is report["repair_pairing"]
    assert report.guard.fits
    assert {"guard", "sanitize", "pairing", "limit", "truncation"} <= set(data)
    # and it is idempotent like every stage
    again, second = prepare_context(out, ContextPolicy(), token_counter=COUNTER, stages=STAGES)
    assert again is out
    assert not second.changed


def test_run_stages_folds_it_like_prepare_context() -> None:
    expected, report = prepare_context(
        HISTORY, ContextPolicy(), token_counter=COUNTER, stages=STAGES
    )
    ctx = StageContext.build(ContextPolicy(), token_counter=COUNTER)
    out, _, reports = run_stages(HISTORY, ctx, STAGES)
    assert [m.content for m in out] == [m.content for m in expected]
    assert reports == dict(report)


def test_the_default_pipeline_is_untouched() -> None:
    assert "strip_trailing_spaces" not in [stage.name for stage in PIPELINE_STAGES]
    _, report = prepare_context(HISTORY, ContextPolicy(), token_counter=COUNTER)
    assert "strip_trailing_spaces" not in report
    with pytest.raises(AttributeError, match="strip_trailing_spaces"):
        _ = report.strip_trailing_spaces


def test_the_agent_builds_a_node_for_it_stores_its_report_and_sends_its_output() -> None:
    model = RecordingModel(replies=["done"])
    agent = create_kimi_agent(
        model, checkpointer=False, token_counter=COUNTER, stages=STAGES, sleep=lambda _: None
    )
    graph_nodes = [n for n in agent.get_graph().nodes if not n.startswith("__")]
    assert graph_nodes[: len(NAMES) + 2] == ["preflight", *NAMES, "call_model"]

    result = agent.invoke({"messages": HISTORY})

    expected, report = prepare_context(
        HISTORY, ContextPolicy(), token_counter=COUNTER, stages=STAGES
    )
    assert [m.content for m in model.calls[0]] == [m.content for m in expected]
    stored = result["reports"]["strip_trailing_spaces"]
    assert stored == {"stripped": ["u1", "u2"], "changed": True}
    assert stored == {**report["strip_trailing_spaces"].to_dict(), "changed": True}
    # the log keeps what the user typed; only the request was cleaned
    assert result["messages"][0].content == "list the files   "


def test_stage_names_must_not_clash_with_the_agents_other_nodes() -> None:
    clash = PipelineStage("tools", _strip_trailing_spaces)
    with pytest.raises(KimiConfigurationError, match="tools"):
        create_kimi_agent(RecordingModel(), checkpointer=False, stages=(*PIPELINE_STAGES, clash))
    with pytest.raises(KimiConfigurationError, match="sanitize"):
        create_kimi_agent(
            RecordingModel(), checkpointer=False, stages=(*PIPELINE_STAGES, PIPELINE_STAGES[0])
        )


def _only_when_asked(
    messages: Sequence[BaseMessage], ctx: StageContext
) -> tuple[Sequence[BaseMessage], StripReport | None]:
    """A stage that usually has nothing to do (it reports ``None`` then)."""
    return messages, None


def test_a_stage_with_nothing_to_do_stores_its_own_reason() -> None:
    quiet = PipelineStage("only_when_asked", _only_when_asked, skip_reason="nobody asked")
    stages = (*PIPELINE_STAGES[:-1], quiet, PIPELINE_STAGES[-1])
    agent = create_kimi_agent(
        RecordingModel(replies=["done"]),
        checkpointer=False,
        token_counter=COUNTER,
        stages=stages,
        sleep=lambda _: None,
    )
    reports = agent.invoke({"messages": HISTORY})["reports"]
    assert reports["only_when_asked"] == {"ran": False, "changed": False, "reason": "nobody asked"}
    # the stage after the turn limit keeps its own reason
    assert reports["repair_after_limit"]["reason"] == "the limit cut nothing"
