"""LangGraph's checkpointer conformance suite against the default saver.

``langgraph-checkpoint-conformance`` detects the capabilities a saver overrides and runs
their specs: the base ones (put, put_writes, get_tuple, list, delete_thread) and the
extended ones (copy_thread, delete_for_runs, prune). The default saver must implement
and pass all of them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncGenerator
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


async def test_postgres_checkpointer_passes_base_and_extended_conformance() -> None:
    import os
    import uuid

    psycopg = pytest.importorskip("psycopg")
    pytest.importorskip("langgraph.checkpoint.postgres")
    from langchain_kimi_context.agent.checkpointer import PostgresCheckpointer

    dsn = os.environ.get("KIMI_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=3)
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"PostgreSQL not reachable at {dsn}: {exc}")
    schemas: list[str] = []

    async def factory() -> AsyncGenerator[PostgresCheckpointer, None]:
        schema = f"kimi_conf_{uuid.uuid4().hex[:10]}"
        schemas.append(schema)
        admin.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in dsn else "?"
        saver = PostgresCheckpointer(f"{dsn}{sep}options=-csearch_path%3D{schema}", max_size=2)
        yield saver
        await saver.aclose()

    try:
        registered = conformance.checkpointer_test(name="PostgresCheckpointer")(factory)
        report = await conformance.validate(registered)
    finally:
        for schema in schemas:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()
    expected = {c.value for c in capabilities.ALL_CAPABILITIES}
    detected = {name for name, r in report.results.items() if r.detected}
    assert detected == expected, f"not implemented: {expected - detected}"
    failures = {name: r.failures for name, r in report.results.items() if not r.passed}
    assert not failures, failures
