"""Smoke test of examples/rolling_snapshot.py (small arguments, real emulator)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rolling_snapshot.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rolling_snapshot_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_runs_and_management_pays_off(capsys: pytest.CaptureFixture[str]) -> None:
    results = _load().main(
        [
            "--turns",
            "10",
            "--window",
            "32000",
            "--threshold",
            "12000",
            "--preserve-len",
            "4096",
            "--reply-tokens",
            "80",
        ]
    )
    out = capsys.readouterr().out
    assert "snapshots" in out
    assert "seed loop" in out
    base = results["no management"]
    assert base["snapshots"] == 0
    for way in ("seed loop", "compact"):
        managed = results[way]
        assert managed["snapshots"] >= 1, way
        assert managed["compactions"] >= 1, way
        assert managed["retries"] == 0
        assert managed["prompt_tokens"] < base["prompt_tokens"], way
        assert managed["log_messages"] == base["final_messages"], way  # full log kept
    assert results["seed loop"]["cost"] < base["cost"]
