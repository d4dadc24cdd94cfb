"""``ContextPolicy`` validation: bad values are typed errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from langchain_kimi_context import ContextPolicy, KimiConfigurationError


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"compact_trigger_ratio": 1.5}, r"compact_trigger_ratio must be in \(0, 1\]"),
        ({"context_window": -1}, "context_window must be >= 0"),
        # wrong types used to escape as TypeError("'<' not supported ...") or pass silently
        ({"context_window": "128k"}, r"context_window must be an integer or None \(got '128k'\)"),
        ({"compact_trigger_ratio": "0.8"}, "compact_trigger_ratio must be a number or None"),
        ({"compact_trigger_tokens": 1.5}, "compact_trigger_tokens must be an integer or None"),
        ({"history_limit": True}, "history_limit must be an integer or None"),
        ({"strip_old_reasoning": "no"}, "strip_old_reasoning must be True or False"),
        ({"bootstrap_user_text": 3}, "bootstrap_user_text must be a string"),
        # frozenset("read_file") would silently allow the tools "r", "e", "a", ...
        ({"allowed_tool_names": "read_file"}, r"allowed_tool_names must be a collection"),
        ({"debug_payload_keys": "raw"}, "debug_payload_keys must be a collection"),
    ],
)
def test_bad_values_are_clear_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(KimiConfigurationError, match=message) as info:
        ContextPolicy(**kwargs)
    assert str(info.value).startswith("Invalid ContextPolicy: ")
    assert isinstance(info.value, ValueError)


def test_valid_values_of_every_accepted_type_pass() -> None:
    policy = ContextPolicy(
        context_window=None,
        compact_trigger_ratio=None,
        compact_target_share=1,  # an int where a float is expected is fine
        compact_trigger_tokens=150_000,
        allowed_tool_names=["read_file", "run_tests"],
        debug_payload_keys=("raw",),
        strip_old_reasoning=False,
    )
    assert policy.allowed_tool_names == frozenset({"read_file", "run_tests"})
    assert policy.replace(context_window=64_000).context_window == 64_000
    with pytest.raises(KimiConfigurationError, match="context_window"):
        policy.replace(context_window="64k")
