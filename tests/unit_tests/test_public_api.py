"""The public surface: exported names resolve, and each class/function documents an example."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "langchain_kimi_context",
    "langchain_kimi_context.context",
    "langchain_kimi_context.testing",
]


def _exports() -> list[tuple[str, str]]:
    out = []
    for name in MODULES:
        module = importlib.import_module(name)
        out += [(name, export) for export in module.__all__ if not export.startswith("__")]
    return out


@pytest.mark.parametrize(("module_name", "export"), _exports())
def test_export_resolves_and_has_a_docstring_example(module_name: str, export: str) -> None:
    obj = getattr(importlib.import_module(module_name), export)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        doc = inspect.getdoc(obj) or ""
        assert "Example" in doc, f"{module_name}.{export} has no Example section"


def test_top_level_all_is_sorted_and_unique() -> None:
    module = importlib.import_module("langchain_kimi_context")
    assert list(module.__all__) == sorted(set(module.__all__))
