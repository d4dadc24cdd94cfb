"""RollingSnapshotMemory's compress, run_subtask and achat against the emulator.

These were doctests on the methods (each started its own emulator).
"""

from __future__ import annotations

import os
import tempfile

from langchain_kimi_context import KimiChatModel, RollingSnapshotMemory
from langchain_kimi_context.testing import KimiEmulator


def _memory(emulator: KimiEmulator) -> RollingSnapshotMemory:
    model = KimiChatModel(model="kimi-k2.6", api_key=emulator.api_key, base_url=emulator.base_url)
    return RollingSnapshotMemory(model, db_path=os.path.join(tempfile.mkdtemp(), "m.db"))


def test_compress_replaces_old_turns_with_a_structured_summary(emulator: KimiEmulator) -> None:
    mem = _memory(emulator)
    sid = mem.create_session(system="You refactor code.")
    for i in range(5):
        mem.chat(sid, f"Refactor m{i}.py. TODO: tests.\n@reply 300")
    result = mem.compress(sid, ratio=4)
    view = mem.messages(sid)
    assert result.changed
    assert result.tokens_after < result.tokens_before
    assert "## Current Task" in str(view[1].content)


def test_run_subtask_brings_back_only_its_result(emulator: KimiEmulator) -> None:
    mem = _memory(emulator)
    main = mem.create_session(system="Main task.")
    sub = mem.run_subtask("@say a.py defines parse()", into=main)
    assert sub.result == "a.py defines parse()"
    assert str(mem.log(main)[-1].content).splitlines()[-1] == "a.py defines parse()"


async def test_achat_runs_one_round(emulator: KimiEmulator) -> None:
    mem = _memory(emulator)
    sid = mem.create_session()
    assert (await mem.achat(sid, "@say async done")).content == "async done"
