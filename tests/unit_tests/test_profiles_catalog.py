"""The model catalog is consistent data: lifecycle, replacements, thinking rules."""

from __future__ import annotations

import pytest

from langchain_kimi_context.profiles import (
    CURRENT_PROFILES,
    DEFAULT_MODEL,
    RETIRED_PROFILES,
    current_models,
    get_profile,
    retired_profile,
)
from langchain_kimi_context.thinking_rules import plan_tool_choice, plan_web_search

NAMED = {"type": "function", "function": {"name": "answer"}}
WEB = [{"type": "builtin_function", "function": {"name": "$web_search"}}]


def test_default_model_is_current() -> None:
    assert DEFAULT_MODEL in current_models()
    assert get_profile(DEFAULT_MODEL).lifecycle == "current"


@pytest.mark.parametrize("name", sorted(RETIRED_PROFILES))
def test_every_retired_model_says_when_and_names_a_current_replacement(name: str) -> None:
    profile = RETIRED_PROFILES[name]
    assert profile.retired_on in {"2026-05-25", "2026-08-31"}
    assert profile.replacement in CURRENT_PROFILES
    assert retired_profile(name) == profile
    notice = profile.retirement_notice()
    assert name in notice
    assert str(profile.retired_on) in notice
    assert str(profile.replacement) in notice


@pytest.mark.parametrize("name", sorted(CURRENT_PROFILES))
def test_every_current_model_has_consistent_thinking_rules(name: str) -> None:
    profile = CURRENT_PROFILES[name]
    assert profile.thinking in {"always", "default_on"}
    # only models with a switch get the `thinking` field; always-on ones never do
    assert profile.thinking_switch == (profile.thinking == "default_on")
    assert profile.default_max_tokens <= profile.max_output_tokens
    assert profile.default_max_tokens >= 32_768  # room for reasoning
    assert profile.pricing.web_search_call > 0
    assert {"temperature", "top_p", "n"} <= set(profile.fixed_params)
    # a forced tool choice is never sent as is when the model rejects it while thinking
    for choice, kind in (("required", "required"), (NAMED, "named")):
        plan = plan_tool_choice(choice, profile, None)
        if kind in profile.forced_tool_choice_with_thinking:
            assert plan.action == "send"
        else:
            assert plan.action in {"thinking_off", "narrow", "refuse"}
    # $web_search: switched off where possible, else refused
    assert plan_web_search(WEB, profile, None).action == (
        "thinking_off" if profile.thinking == "default_on" else "refuse"
    )


def test_unknown_ids_are_guesses_and_never_retired() -> None:
    guess = get_profile("kimi-k2.5-turbo-experimental")
    assert guess.is_guess
    assert guess.lifecycle == "unknown"
    assert guess.retired_on is None
    assert retired_profile("kimi-k2.5-turbo-experimental") is None
