"""LangChain standard unit tests (``langchain-tests``) for ``KimiChatModel``."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.unit_tests import ChatModelUnitTests
from syrupy.assertion import SnapshotAssertion

from langchain_kimi_context import KimiChatModel


class TestKimiChatModelStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[KimiChatModel]:
        return KimiChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # The current default model (kimi-k2.6): no model argument.
        return {"api_key": "test-key"}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # Current Kimi models lock temperature (kimi-k2.6: 1.0 thinking, 0.6 without) and
        # refuse other values locally, so the suite's temperature=0 is left out.
        params = dict(super().standard_chat_model_params)
        params.pop("temperature", None)
        return params

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {
                "MOONSHOT_API_KEY": "api_key_from_env",
                "MOONSHOT_BASE_URL": "https://api.moonshot.ai/v1",
            },
            {"model": "kimi-k3"},
            {
                "openai_api_key": "api_key_from_env",
                "openai_api_base": "https://api.moonshot.ai/v1",
            },
        )

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supported_usage_metadata_details(self) -> dict[str, list[str]]:  # type: ignore[override]
        return {
            "invoke": ["cache_read_input", "reasoning_output"],
            "stream": ["cache_read_input", "reasoning_output"],
        }

    @pytest.mark.xfail(
        reason=(
            "langchain-tests' test_serdes loads with allowed_objects='all', which only "
            "admits classes in langchain_core.load.mapping (in-tree partners); an "
            "out-of-tree package cannot be listed there. The same round trip with "
            "allowed_objects=[KimiChatModel] is tested in "
            "test_chat_models.py::test_serialisation_round_trip_without_key."
        ),
        raises=ValueError,
        strict=True,
    )
    def test_serdes(self, model: BaseChatModel, snapshot: SnapshotAssertion) -> None:
        super().test_serdes(model, snapshot)
