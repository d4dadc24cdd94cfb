"""The agent's steps around the pipeline, shared by every face that runs them.

Nothing here transforms messages itself: each function calls the context layer
(:mod:`langchain_kimi_context.context`) and turns its report into a small dict for the
graph state. The agent's nodes, ``RollingSnapshotMemory`` and ``KimiContextMiddleware``
apply stored compaction records and resolve a model's profile with these functions, so
every face does it the same way; compaction itself goes through
:class:`~langchain_kimi_context.context.compaction.CompactionService`. The pipeline
stages themselves run straight from
:data:`~langchain_kimi_context.context.pipeline.PIPELINE_STAGES` (see ``nodes.py``);
:func:`stage_report` only formats their reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AnyMessage, BaseMessage

from langchain_kimi_context.context.compaction import (
    CompactionRecord,
    apply_compactions,
)
from langchain_kimi_context.context.pipeline import StageReport
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.reports import RequestTruncationReport
from langchain_kimi_context.context.stage import NOTHING_TO_DO
from langchain_kimi_context.profiles import DEFAULT_MODEL, KimiModelProfile, get_profile
from langchain_kimi_context.tokens import TokenCounter

__all__ = [
    "apply_records",
    "guard",
    "load_records",
    "model_profile",
    "stage_report",
]


STORED_LIST_ITEMS = 8
"""Items a stored report keeps of a list field (the newest); ``<field>_count`` has the total.

Reports are stored at every node of every turn; a list that names every older message
(e.g. each assistant message whose reasoning was stripped) would make each turn's
checkpoint grow with the session.
"""


def model_profile(model: Any, model_name: str | None = None) -> KimiModelProfile:
    """The profile of the model a face calls, read NOW (every face uses this one rule).

    A :class:`~langchain_kimi_context.KimiChatModel` answers with its own profile
    (overrides and learned windows included); another chat model with the registered
    profile of ``model_name`` or its ``model_name``. Read at each use, never cached, so
    a window learned from a server error applies at once in the agent, the memory API
    and the middleware; :func:`~langchain_kimi_context.context.resolve_context_window`
    then applies the policy.

    Args:
        model: The chat model.
        model_name: Profile name for a non-Kimi model (default: its ``model_name``).

    Returns:
        The profile.
    """
    from langchain_kimi_context.chat_models import KimiChatModel

    if isinstance(model, KimiChatModel):
        return model.model_profile
    return get_profile(model_name or str(getattr(model, "model_name", "") or DEFAULT_MODEL))


def _small(report: Any) -> dict[str, Any]:
    data: dict[str, Any] = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    changed = getattr(report, "changed", None)
    if isinstance(changed, bool):
        data["changed"] = changed
    for key, value in list(data.items()):
        if isinstance(value, list) and len(value) > STORED_LIST_ITEMS:
            data[key] = value[-STORED_LIST_ITEMS:]
            data[f"{key}_count"] = len(value)
    return data


def guard(
    view: Sequence[BaseMessage],
    policy: ContextPolicy,
    *,
    profile: KimiModelProfile,
    token_counter: TokenCounter,
    tools: Sequence[Any],
    estimated_tokens: int | None = None,
) -> dict[str, Any]:
    """Run the preflight guard (window check + estimate + route) on ``view``.

    Args:
        view: The messages about to be prepared.
        policy: Thresholds.
        profile: Model profile.
        token_counter: Counter.
        tools: Tool schemas.
        estimated_tokens: Unused here (the node records the calibrated size).

    Returns:
        The guard report as a dict.

    Raises:
        ContextWindowTooSmallError: The window is below the hard minimum.
    """
    from langchain_kimi_context.context import preflight_guard

    _, report = preflight_guard(
        view, policy, profile=profile, token_counter=token_counter, tools=list(tools) or None
    )
    return _small(report)


def stage_report(report: StageReport | None, *, skip_reason: str = NOTHING_TO_DO) -> dict[str, Any]:
    """The small dict a pipeline node stores for its stage's report.

    Args:
        report: What the stage returned (``None``: it had nothing to do, e.g.
            ``repair_after_limit`` when the limit cut nothing).
        skip_reason: The stage's reason for a ``None`` report
            (:attr:`~langchain_kimi_context.context.stage.PipelineStage.skip_reason`).

    Returns:
        The report as plain JSON types, with ``changed``. The truncation stage's report
        is flattened: ``applied``, ``mode``, ``route``, the final estimate's size and fit,
        and the truncation report's fields when it ran.
    """
    if report is None:
        return {"ran": False, "changed": False, "reason": skip_reason}
    if isinstance(report, RequestTruncationReport):
        data: dict[str, Any] = {
            "applied": report.applied,
            "mode": report.mode,
            "route": report.route,
            "estimated_tokens": report.guard.estimated_tokens,
            "required_tokens": report.guard.required_tokens,
            "fits": report.guard.fits,
        }
        if report.truncation is not None:
            data.update(report.truncation.to_dict())
        data["changed"] = report.changed
        return data
    return _small(report)


def load_records(records: Sequence[Any] | None) -> list[CompactionRecord]:
    """Compaction records from the state (stored as plain dicts).

    Args:
        records: ``CompactionRecord.to_dict()`` values (or records).

    Returns:
        The records.
    """
    return [
        r if isinstance(r, CompactionRecord) else CompactionRecord.from_dict(r)
        for r in records or []
    ]


def apply_records(log: list[AnyMessage], records: Sequence[Any] | None) -> list[AnyMessage]:
    """The model's view of ``log`` after the compaction records (``apply_compactions``).

    Args:
        log: The full message log.
        records: Compaction records (dicts), oldest first.

    Returns:
        The view (a new list).
    """
    if not records:
        return list(log)
    return list(apply_compactions(log, load_records(records)))  # type: ignore[arg-type]
