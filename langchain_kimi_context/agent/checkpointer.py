"""Which checkpointer (and store) an agent gets from a ``checkpointer=`` argument.

``create_kimi_agent(checkpointer=...)`` accepts:

* ``None``: the default SQLite file (``db_path``, ``$KIMI_CONTEXT_DB`` or the default
  path), pruned per turn (:class:`~langchain_kimi_context.agent.sqlite_saver.KimiSqliteSaver`);
* ``False``: no persistence;
* a ``BaseCheckpointSaver``: used as is;
* a string: ``"postgresql://..."`` / ``"postgres://..."`` opens a
  :class:`~langchain_kimi_context.agent.postgres_saver.PostgresCheckpointer` (the
  pruning Postgres saver on a connection pool, with an ``AsyncPostgresSaver`` on an
  async pool for ``ainvoke``/``astream``); ``"sqlite:///path"`` or a plain path opens
  the SQLite saver there.

:func:`open_postgres_store` gives the matching ``PostgresStore`` (registry and cache
registry of the package live in any LangGraph ``BaseStore``). Postgres needs the
``postgres`` extra (``pip install 'langchain-kimi-context[postgres]'``); this module
imports it only when asked for Postgres (``PostgresCheckpointer`` is re-exported here on
first access).
"""

from __future__ import annotations

import os
import re
from types import ModuleType
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from langchain_kimi_context.agent.sqlite_saver import open_sqlite_checkpointer
from langchain_kimi_context.errors import KimiConfigurationError

__all__ = [
    "PostgresCheckpointer",  # noqa: F822 - imported on first access (module __getattr__)
    "is_postgres_url",
    "open_postgres_store",
    "resolve_checkpointer",
]

_PG_SCHEMES = ("postgresql://", "postgres://")
_PG_CONNINFO_PAIR = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")
_PG_CONNINFO_KEYS = frozenset({"host", "hostaddr", "dbname", "user", "port", "service"})


def is_postgres_url(value: object) -> bool:
    """Whether ``value`` is a PostgreSQL connection string.

    Args:
        value: Anything.

    Returns:
        ``True`` for ``postgresql://...`` and ``postgres://...`` URLs and for libpq
        keyword/value strings (``"host=db1 dbname=app user=kimi"``): every word is
        ``key=value`` and one key is a connection key (host, hostaddr, dbname, user, port,
        service). Such a string is never a SQLite file name.
    """
    if not isinstance(value, str):
        return False
    if value.startswith(_PG_SCHEMES):
        return True
    pairs = _PG_CONNINFO_PAIR.findall(value)
    return (
        bool(pairs)
        and _PG_CONNINFO_PAIR.sub("", value).strip() == ""
        and any(key in _PG_CONNINFO_KEYS for key, _ in pairs)
    )


def _postgres() -> ModuleType:
    """The Postgres saver module; a clear error when the ``postgres`` extra is missing."""
    try:
        from langchain_kimi_context.agent import postgres_saver
    except ImportError as exc:  # pragma: no cover - depends on the install
        msg = (
            "A postgresql:// checkpointer needs the postgres extra: pip install "
            "'langchain-kimi-context[postgres]' (langgraph-checkpoint-postgres, "
            f"psycopg[binary,pool]); missing: {exc.name}"
        )
        raise KimiConfigurationError(msg) from exc
    return postgres_saver


def __getattr__(name: str) -> Any:
    if name == "PostgresCheckpointer":
        return _postgres().PostgresCheckpointer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_postgres_store(url: str) -> Any:
    """A LangGraph ``PostgresStore`` on a connection pool, its tables created.

    Args:
        url: ``postgresql://...``.

    Returns:
        The store (a ``BaseStore``; ``store.conn`` is its pool, close it when done).

    Raises:
        KimiConfigurationError: The postgres extra is missing.
    """
    pool = _postgres().connection_pool(url, max_size=4)
    from langgraph.store.postgres import PostgresStore

    store = PostgresStore(pool)
    store.setup()
    return store


def resolve_checkpointer(
    checkpointer: BaseCheckpointSaver[Any] | bool | str | os.PathLike[str] | None,
    db_path: str | os.PathLike[str] | None = None,
) -> BaseCheckpointSaver[Any] | None:
    """The saver an agent uses for a ``checkpointer=`` argument (see the module doc).

    Args:
        checkpointer: ``None``, ``False``, a saver, a ``postgresql://`` URL, a
            ``sqlite:///`` URL or a file path.
        db_path: SQLite file for ``checkpointer=None``.

    Returns:
        The saver, or ``None`` for no persistence.

    Raises:
        KimiConfigurationError: Anything else (the message lists what is accepted).
    """
    if checkpointer is None:
        return open_sqlite_checkpointer(db_path)
    if checkpointer is False:
        return None
    if isinstance(checkpointer, BaseCheckpointSaver):
        return checkpointer
    if is_postgres_url(checkpointer):
        return _postgres().PostgresCheckpointer(str(checkpointer))
    if isinstance(checkpointer, str | os.PathLike):
        path = os.fspath(checkpointer)
        return open_sqlite_checkpointer(path.removeprefix("sqlite:///") or None)
    msg = (
        f"checkpointer must be a BaseCheckpointSaver, a 'postgresql://...' URL, a SQLite "
        f"path ('sqlite:///path' or a file path), None (default SQLite file) or False (no "
        f"persistence), got {type(checkpointer).__name__}"
    )
    raise KimiConfigurationError(msg)
