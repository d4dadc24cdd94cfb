"""PostgreSQL for the tests: one database per test run, dropped at the end of the run.

``KIMI_TEST_POSTGRES_DSN`` names the server (default
``postgresql://postgres@127.0.0.1:5432/test``, the machine's own); it may be a URL or a
libpq keyword/value string. The first test that asks for Postgres creates a database
``kimi_test_<random>`` there, every fixture below works inside it, and it is dropped
(``WITH (FORCE)``) when the run ends, so runs sharing a server never see each other's
rows. A test that asks for Postgres skips when ``psycopg`` or
``langgraph-checkpoint-postgres`` is missing or the server cannot be reached.

* ``postgres_dsn``: the run's database (same form as the variable).
* ``new_postgres_schema``: a factory of fresh, empty schemas in it: each call returns a
  DSN whose ``search_path`` is the new schema (for savers that create their tables).
* ``postgres_schema``: one fresh schema for the test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

DSN_ENV_VAR = "KIMI_TEST_POSTGRES_DSN"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def server_dsn() -> str:
    """The DSN of the test server (``$KIMI_TEST_POSTGRES_DSN`` or the default)."""
    return os.environ.get(DSN_ENV_VAR) or DEFAULT_DSN


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointed at database ``name`` (a URL stays a URL)."""
    if "://" in dsn:
        return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, dbname=name)


def with_schema(dsn: str, schema: str) -> str:
    """``dsn`` whose connections use ``schema`` as their ``search_path``."""
    if "://" in dsn:
        sep = "&" if "?" in dsn else "?"
        return f"{dsn}{sep}options=-csearch_path%3D{schema}"
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, options=f"-csearch_path={schema}")


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The run's own database on the test server (skips without Postgres)."""
    psycopg = pytest.importorskip("psycopg")
    pytest.importorskip("langgraph.checkpoint.postgres")
    server = server_dsn()
    try:
        admin = psycopg.connect(server, autocommit=True, connect_timeout=3)
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"PostgreSQL not reachable at {server}: {exc}")
    name = f"kimi_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server, name)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def new_postgres_schema(postgres_dsn: str) -> Iterator[Callable[[], str]]:
    """Factory: a fresh schema in the run's database, as a DSN using it."""
    import psycopg

    conn = psycopg.connect(postgres_dsn, autocommit=True)

    def create() -> str:
        schema = f"kimi_{uuid.uuid4().hex[:12]}"
        conn.execute(f'CREATE SCHEMA "{schema}"')
        return with_schema(postgres_dsn, schema)

    try:
        yield create
    finally:
        conn.close()


@pytest.fixture
def postgres_schema(new_postgres_schema: Callable[[], str]) -> str:
    """A fresh schema for this test, as a DSN using it."""
    return new_postgres_schema()
