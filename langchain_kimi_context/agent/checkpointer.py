"""Which checkpointer (and store) an agent gets from a ``checkpointer=`` argument.

``create_kimi_agent(checkpointer=...)`` accepts:

* ``None``: the default SQLite file (``db_path``, ``$KIMI_CONTEXT_DB`` or the default
  path), pruned per turn (:class:`~langchain_kimi_context.agent.storage.KimiSqliteSaver`);
* ``False``: no persistence;
* a ``BaseCheckpointSaver``: used as is;
* a string: ``"postgresql://..."`` / ``"postgres://..."`` opens LangGraph's
  ``PostgresSaver`` on a connection pool, with an ``AsyncPostgresSaver`` on an async pool
  for ``ainvoke``/``astream`` (:class:`PostgresCheckpointer` routes each call to the
  right one); ``"sqlite:///path"`` or a plain path opens the SQLite saver there.

:func:`open_postgres_store` gives the matching ``PostgresStore`` (registry and cache
registry of the package live in any LangGraph ``BaseStore``). Postgres needs the
``postgres`` extra (``pip install 'langchain-kimi-context[postgres]'``).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

from langchain_kimi_context.agent.sqlite_saver import open_sqlite_checkpointer
from langchain_kimi_context.agent.threaded_async import ThreadedAsyncMixin
from langchain_kimi_context.errors import KimiConfigurationError

__all__ = [
    "PostgresCheckpointer",
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

    Example:
        >>> is_postgres_url("postgresql://u@h/db"), is_postgres_url("/tmp/x.sqlite")
        (True, False)
        >>> is_postgres_url("host=127.0.0.1 dbname=test user=postgres")
        True
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


def _postgres_modules() -> tuple[Any, Any, Any]:
    try:
        import psycopg_pool
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        from langchain_kimi_context.agent.postgres_saver import KimiPostgresSaver
    except ImportError as exc:  # pragma: no cover - depends on the install
        msg = (
            "A postgresql:// checkpointer needs the postgres extra: pip install "
            "'langchain-kimi-context[postgres]' (langgraph-checkpoint-postgres, "
            f"psycopg[binary,pool]); missing: {exc.name}"
        )
        raise KimiConfigurationError(msg) from exc
    return psycopg_pool, KimiPostgresSaver, AsyncPostgresSaver


_CONN_KWARGS: Mapping[str, Any] = {"autocommit": True, "prepare_threshold": 0}


def _on_sync_saver(name: str) -> Any:
    """A method of :class:`PostgresCheckpointer` that calls the sync saver's ``name``."""

    def call(self: PostgresCheckpointer, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.sync, name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``{name}`` of the sync saver (``KimiPostgresSaver``)."
    return call


def _on_async_saver(name: str) -> Any:
    """A method of :class:`PostgresCheckpointer` that awaits the async saver's ``name``."""

    async def call(self: PostgresCheckpointer, *args: Any, **kwargs: Any) -> Any:
        return await getattr(await self._asaver(), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``{name}`` of the async saver (``AsyncPostgresSaver``)."
    return call


class PostgresCheckpointer(ThreadedAsyncMixin, BaseCheckpointSaver[str]):
    """LangGraph's Postgres savers behind one object: a sync pool and an async pool.

    Sync calls (``invoke``, ``get_state``) go to a
    :class:`~langchain_kimi_context.agent.postgres_saver.KimiPostgresSaver` (turn
    pruning, remembered histories) on a ``psycopg_pool.ConnectionPool``; async checkpoint
    reads and writes (``ainvoke``, ``astream``) go to an ``AsyncPostgresSaver`` on an
    ``AsyncConnectionPool`` opened on first async use (in the running event loop), and
    the other async calls (history reads, pruning, copies, deletes) to the first one in a
    worker thread (both see the same tables). Tables are created on first use.

    Args:
        url: ``postgresql://user@host:port/db`` (options such as ``?options=-csearch_path%3Dx``
            pass through to libpq).
        max_size: Connections per pool.

    Raises:
        KimiConfigurationError: The postgres extra is missing or the server cannot be
            reached (the message names the URL without its password).

    Example:
        >>> PostgresCheckpointer.__name__
        'PostgresCheckpointer'
    """

    def __init__(self, url: str, *, max_size: int = 8) -> None:
        pool_mod, pg_saver, _ = _postgres_modules()
        self.url = url
        self.max_size = max_size
        try:
            self._pool = pool_mod.ConnectionPool(
                url, min_size=1, max_size=max_size, kwargs=dict(_CONN_KWARGS), open=True
            )
            self._pool.wait(timeout=10)
        except Exception as exc:
            msg = (
                f"Cannot connect the Postgres checkpointer to {_redact(url)}: {exc}. Check "
                "the URL and that the server accepts connections."
            )
            raise KimiConfigurationError(msg) from exc
        self.sync: Any = pg_saver(self._pool)
        self.sync.setup()
        super().__init__(serde=self.sync.serde)
        self._async: Any = None
        self._apool: Any = None

    def __repr__(self) -> str:
        return f"PostgresCheckpointer({_redact(self.url)!r})"

    @property
    def prune_turns(self) -> bool:
        """Whether the agent prunes finished turns after each run (the sync saver's flag).

        Example:
            >>> PostgresCheckpointer.prune_turns.__doc__.split()[0]
            'Whether'
        """
        return bool(self.sync.prune_turns)

    async def _asaver(self) -> Any:
        if self._async is None:
            pool_mod, _, apg_saver = _postgres_modules()
            self._apool = pool_mod.AsyncConnectionPool(
                self.url, min_size=1, max_size=self.max_size, kwargs=dict(_CONN_KWARGS), open=False
            )
            await self._apool.open(wait=True, timeout=10)
            self._async = apg_saver(self._apool)
        return self._async

    def close(self) -> None:
        """Close the sync pool (the async pool closes with :meth:`aclose`).

        Example:
            >>> PostgresCheckpointer.close.__name__
            'close'
        """
        self._pool.close()

    async def aclose(self) -> None:
        """Close both pools.

        Example:
            >>> PostgresCheckpointer.aclose.__name__
            'aclose'
        """
        if self._apool is not None:
            await self._apool.close()
        self._pool.close()

    # --- sync calls and async history/pruning: the sync saver (KimiPostgresSaver) ----
    get_tuple = _on_sync_saver("get_tuple")
    list = _on_sync_saver("list")
    put = _on_sync_saver("put")
    put_writes = _on_sync_saver("put_writes")
    delete_thread = _on_sync_saver("delete_thread")
    copy_thread = _on_sync_saver("copy_thread")
    delete_for_runs = _on_sync_saver("delete_for_runs")
    prune = _on_sync_saver("prune")
    get_delta_channel_history = _on_sync_saver("get_delta_channel_history")
    get_next_version = _on_sync_saver("get_next_version")

    # --- async checkpoint reads and writes: AsyncPostgresSaver ---------------------------
    aget_tuple = _on_async_saver("aget_tuple")
    aput = _on_async_saver("aput")
    aput_writes = _on_async_saver("aput_writes")

    async def alist(self, *args: Any, **kwargs: Any) -> AsyncIterator[CheckpointTuple]:
        """``alist`` of the async saver (``AsyncPostgresSaver``)."""
        async for item in (await self._asaver()).alist(*args, **kwargs):
            yield item


def _redact(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.partition("://")
    if "@" not in tail:
        return url
    cred, _, host = tail.rpartition("@")
    user = cred.split(":", 1)[0]
    return f"{head}{sep}{user}:***@{host}" if ":" in cred else url


def open_postgres_store(url: str) -> Any:
    """A LangGraph ``PostgresStore`` on a connection pool, its tables created.

    Args:
        url: ``postgresql://...``.

    Returns:
        The store (a ``BaseStore``; ``store.conn`` is its pool, close it when done).

    Raises:
        KimiConfigurationError: The postgres extra is missing.

    Example:
        >>> open_postgres_store.__name__
        'open_postgres_store'
    """
    pool_mod, _, _ = _postgres_modules()
    from langgraph.store.postgres import PostgresStore

    pool = pool_mod.ConnectionPool(
        url, min_size=1, max_size=4, kwargs=dict(_CONN_KWARGS), open=True
    )
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

    Example:
        >>> import os, tempfile
        >>> type(resolve_checkpointer(os.path.join(tempfile.mkdtemp(), "a.db"))).__name__
        'KimiSqliteSaver'
        >>> resolve_checkpointer(False) is None
        True
    """
    if checkpointer is None:
        return open_sqlite_checkpointer(db_path)
    if checkpointer is False:
        return None
    if isinstance(checkpointer, BaseCheckpointSaver):
        return checkpointer
    if is_postgres_url(checkpointer):
        return PostgresCheckpointer(str(checkpointer))
    if isinstance(checkpointer, str | os.PathLike):
        path = os.fspath(checkpointer)
        return open_sqlite_checkpointer(path.removeprefix("sqlite:///") or None)
    msg = (
        f"checkpointer must be a BaseCheckpointSaver, a 'postgresql://...' URL, a SQLite "
        f"path ('sqlite:///path' or a file path), None (default SQLite file) or False (no "
        f"persistence), got {type(checkpointer).__name__}"
    )
    raise KimiConfigurationError(msg)
