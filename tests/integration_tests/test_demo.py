"""The README's main demo runs offline on the emulator and its numbers hold together."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from examples import demo


def test_demo_runs_offline_and_keeps_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOONSHOT_API_KEY", raising=False)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    numbers = demo.main(["--turns", "8", "--window", "24000", "--db", str(tmp_path / "d.db")])

    # Every turn = one tool call + one answer; nothing lost across the simulated crash
    # (the agent is rebuilt from the database halfway) and across compactions.
    assert numbers["model_calls"] == 2 * 8
    assert numbers["log_messages"] == 4 * 8
    assert numbers["tool_results"] == 8
    assert numbers["compactions"] >= 1
    # The provider's prefix cache keeps hitting, so the bill is well under the miss price.
    assert numbers["cached_share"] > 0.5
    assert numbers["cost"] < 0.6 * numbers["cost_uncached"]
    assert numbers["db_bytes"] > 0
    # with --db the demo leaves nothing behind (it used to create an empty kimi-demo-* dir)
    assert not any(p.name.startswith("kimi-demo-") for p in scratch.iterdir())
