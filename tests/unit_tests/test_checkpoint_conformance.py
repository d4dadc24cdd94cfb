"""LangGraph's checkpointer conformance suite against the default saver.

``langgraph-checkpoint-conformance`` detects the capabilities a saver overrides and runs
their specs: the base ones (put, put_writes, get_tuple, list, delete_thread) and the
extended ones (copy_thread, delete_for_runs, prune). The default saver must implement
and pass all of them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import pytest

from langchain_kimi_context.agent.storage import KimiSqliteSaver

conformance = pytest.importorskip("langgraph.checkpoint.conformance")
capabilities = pytest.importorskip("langgraph.checkpoint.conformance.capabilities")


async def test_default_saver_passes_base_and_extended_conformance(tmp_path: Path) -> None:
    counter = iter(range(100))

    async def factory() -> AsyncGenerator[KimiSqliteSaver, None]:
        conn = sqlite3.connect(tmp_path / f"c{next(counter)}.sqlite", check_same_thread=False)
        saver = KimiSqliteSaver(conn)
        saver.setup()
        yield saver
        conn.close()

    registered = conformance.checkpointer_test(name="KimiSqliteSaver")(factory)
    report = await conformance.validate(registered)
    expected = {c.value for c in capabilities.ALL_CAPABILITIES}
    detected = {name for name, r in report.results.items() if r.detected}
    assert detected == expected, f"not implemented: {expected - detected}"
    failures = {name: r.failures for name, r in report.results.items() if not r.passed}
    assert not failures, failures
    assert all(r.tests_passed > 0 for r in report.results.values())


async def test_postgres_checkpointer_passes_base_and_extended_conformance(
    new_postgres_schema: Callable[[], str],
) -> None:
    from langchain_kimi_context.agent.checkpointer import PostgresCheckpointer

    async def factory() -> AsyncGenerator[PostgresCheckpointer, None]:
        saver = PostgresCheckpointer(new_postgres_schema(), max_size=2)
        yield saver
        await saver.aclose()

    registered = conformance.checkpointer_test(name="PostgresCheckpointer")(factory)
    report = await conformance.validate(registered)
    expected = {c.value for c in capabilities.ALL_CAPABILITIES}
    detected = {name for name, r in report.results.items() if r.detected}
    assert detected == expected, f"not implemented: {expected - detected}"
    failures = {name: r.failures for name, r in report.results.items() if not r.passed}
    assert not failures, failures
