"""create_kimi_agent's arguments: wrong types are clear errors at build time."""

from __future__ import annotations

from typing import Any

import pytest

from langchain_kimi_context import (
    AgentSettings,
    ContextPolicy,
    KimiChatModel,
    KimiConfigurationError,
    create_kimi_agent,
)


def _model() -> KimiChatModel:
    return KimiChatModel(model="kimi-k2.6", api_key="sk-unit")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # both used to build fine and fail on the first invoke with
        # AttributeError: 'dict' object has no attribute 'context_window' (inside a node)
        (
            {"policy": {"context_window": 64_000}},
            r"create_kimi_agent\(policy=\.\.\.\) must be a ContextPolicy, got dict; "
            r"pass ContextPolicy\(\*\*\{'context_window': 64000\}\)",
        ),
        ({"policy": "strict"}, r"must be a ContextPolicy, got str"),
        (
            {"settings": {"max_steps_per_turn": 5}},
            r"create_kimi_agent\(settings=\.\.\.\) must be an AgentSettings, got dict",
        ),
    ],
)
def test_wrong_policy_or_settings_type_is_a_build_time_error(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(KimiConfigurationError, match=message):
        create_kimi_agent(_model(), checkpointer=False, **kwargs)


def test_the_right_types_build() -> None:
    agent = create_kimi_agent(
        _model(),
        checkpointer=False,
        policy=ContextPolicy(context_window=64_000),
        settings=AgentSettings(max_steps_per_turn=5),
    )
    assert "call_model" in agent.get_graph().nodes
