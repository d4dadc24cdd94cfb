"""One run per thread at a time: per-thread serialisation in this process and across processes.

Contract:

* A run (an agent ``invoke``/``stream``/``ainvoke``/``astream``, a memory ``chat`` or
  write) holds its thread id for its whole duration. A second run on the same thread id
  either waits (``multitask_strategy="enqueue"``, the default, up to ``busy_timeout_s``)
  or is refused at once (``"reject"``) with
  :class:`~langchain_kimi_context.errors.ThreadBusyError`; a refused run wrote nothing.
  With ``"interrupt"`` it asks the running one to stop at its next step boundary.
  So every turn is kept exactly once, in order, or refused: never lost.
* Different thread ids never wait for each other.
* The lock has two levels: a ``threading.Lock`` per (store, thread id) in this process,
  and a lock the store itself carries, so processes sharing the store exclude each other:

  - SQLite: an open-file-description byte-range lock (``F_OFD_SETLK``, Linux) at an
    offset hashed from the thread id, in the lock file ``<db>.kimi-lock`` next to the
    database (like its ``-wal`` and ``-shm`` files). The kernel drops it when the holder
    dies, so a crashed process never leaves a thread locked. (Other POSIX systems use
    ``lockf`` ranges on one descriptor per process.)
  - Postgres: a session-level ``pg_try_advisory_lock`` on a 64-bit hash of the thread
    id, on one connection per process (released by the server if the process dies).
  - Any other saver (memory, custom): this process only.
* ``multitask_strategy="interrupt"``: the waiting run raises a request (an in-process
  counter plus a store-visible shared lock: a second byte of the SQLite lock file, a
  second Postgres advisory key); the holder checks :meth:`Holding.interrupt_requested`
  after each step and stops (``ThreadInterruptedError``), then the waiting run takes
  the thread.
* Re-entrant within one call chain (a ``contextvars`` map of held threads): the memory
  API holds a session while it runs the agent graph on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import os
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Protocol, cast

from langchain_kimi_context.errors import ThreadBusyError

__all__ = [
    "Holding",
    "MultitaskStrategy",
    "ThreadGuard",
    "strategy_problems",
    "thread_guard",
]

logger = logging.getLogger(__name__)

MultitaskStrategy = Literal["enqueue", "reject", "interrupt"]
STRATEGIES: tuple[str, ...] = ("enqueue", "reject", "interrupt")
_POLL_S = (0.005, 0.05)  # first and longest wait between two tries of the store lock


def strategy_problems(strategy: object, timeout_s: object) -> list[str]:
    """What is wrong with a multitask strategy and busy timeout (empty when valid).

    Args:
        strategy: The ``multitask_strategy`` value.
        timeout_s: The ``busy_timeout_s`` value.

    Returns:
        Problem descriptions.
    """
    problems = []
    if strategy not in STRATEGIES:
        problems.append(
            f"multitask_strategy must be 'enqueue', 'reject' or 'interrupt' (got "
            f"{strategy!r}); 'rollback' (delete the interrupted run's steps) is not offered: "
            "use 'interrupt' (the memory API rolls an interrupted turn back itself)"
        )
    if not isinstance(timeout_s, int | float) or isinstance(timeout_s, bool) or timeout_s <= 0:
        problems.append(f"busy_timeout_s must be > 0 seconds (got {timeout_s!r})")
    return problems


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


# ----------------------------------------------------------------------------- store locks
class StoreLock(Protocol):
    """The cross-process half of a thread lock (``None`` handle = not acquired)."""

    key: str

    def try_acquire(self, thread_id: str) -> object | None:
        """Take the lock without waiting; a handle for :meth:`release`, or ``None``."""

    def release(self, handle: object) -> None:
        """Release a lock taken by :meth:`try_acquire`."""

    def request(self, thread_id: str) -> object | None:
        """Ask the holder of ``thread_id`` to stop (``None``: not visible to others)."""

    def release_request(self, handle: object) -> None:
        """Withdraw a request made by :meth:`request`."""

    def requested(self, thread_id: str) -> bool:
        """Whether another process asked the holder of ``thread_id`` to stop."""


class _LocalOnly:
    """Savers without a shared store lock: this process only."""

    def __init__(self, key: str) -> None:
        self.key = key

    def try_acquire(self, thread_id: str) -> object | None:
        return True

    def release(self, handle: object) -> None:
        return None

    def request(self, thread_id: str) -> object | None:
        return None

    def release_request(self, handle: object) -> None:
        return None

    def requested(self, thread_id: str) -> bool:
        return False


try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows: this process only
    _fcntl = None  # type: ignore[assignment]
_OFD = sys.platform.startswith("linux") and hasattr(_fcntl, "F_OFD_SETLK")
_FLOCK = "hhxxxxqqixxxx"  # struct flock on 64-bit Linux (l_pid must be 0 for OFD locks)
_REQUEST_OFFSET = 1 << 62  # interrupt-request bytes live above the thread bytes


class SqliteFileLock:
    """Byte-range locks in ``<db>.kimi-lock``, one byte per thread id (see the module doc)."""

    def __init__(self, db_path: str) -> None:
        self.path = db_path + ".kimi-lock"
        self.key = "sqlite:" + db_path
        self._fd: int | None = None  # non-OFD systems: one descriptor per process

    @staticmethod
    def _offset(thread_id: str) -> int:
        return _hash64(thread_id) >> 2  # < 2**62: a valid off_t

    def try_acquire(self, thread_id: str) -> object | None:
        import fcntl

        offset = self._offset(thread_id)
        if _OFD:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.fcntl(
                    fd, fcntl.F_OFD_SETLK, struct.pack(_FLOCK, fcntl.F_WRLCK, 0, offset, 1, 0)
                )
            except OSError:
                os.close(fd)
                return None
            return (fd, offset)
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError:
            return None
        return (self._fd, offset)

    def release(self, handle: object) -> None:
        import fcntl

        assert isinstance(handle, tuple)
        fd, offset = cast(tuple[int, int], handle)
        if _OFD:
            try:
                fcntl.fcntl(
                    fd, fcntl.F_OFD_SETLK, struct.pack(_FLOCK, fcntl.F_UNLCK, 0, offset, 1, 0)
                )
            finally:
                os.close(fd)
        else:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)

    # interrupt requests: a shared lock on a second byte; the holder tests it (GETLK)
    def request(self, thread_id: str) -> object | None:
        import fcntl

        if not _OFD:
            return None
        offset = self._offset(thread_id) + _REQUEST_OFFSET
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack(_FLOCK, fcntl.F_RDLCK, 0, offset, 1, 0))
        except OSError:
            os.close(fd)
            return None
        return (fd, offset)

    def release_request(self, handle: object) -> None:
        self.release(handle)

    def requested(self, thread_id: str) -> bool:
        import fcntl

        if not _OFD:
            return False
        offset = self._offset(thread_id) + _REQUEST_OFFSET
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            probe = struct.pack(_FLOCK, fcntl.F_WRLCK, 0, offset, 1, 0)
            found = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, probe)
        finally:
            os.close(fd)
        return bool(struct.unpack(_FLOCK, found)[0] != fcntl.F_UNLCK)


class PostgresAdvisoryLock:
    """``pg_try_advisory_lock`` on a hash of the thread id, on a connection of its own."""

    def __init__(self, key: str, connect: Any) -> None:
        self.key = key
        self._connect = connect
        self._conn: Any = None
        self._mutex = threading.Lock()

    @staticmethod
    def _lock_id(thread_id: str) -> int:
        value = _hash64("kimi-thread:" + thread_id)
        return value - (1 << 64) if value >= 1 << 63 else value  # a signed bigint

    def _query(self, sql: str, lock_id: int) -> bool:
        with self._mutex:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = self._connect()
                    row = self._conn.execute(sql, (lock_id,)).fetchone()
                    return bool(row[0] if not isinstance(row, dict) else next(iter(row.values())))
                except Exception:
                    if attempt == 2 or sql.startswith("SELECT pg_advisory_unlock"):
                        raise
                    self._conn = None  # a dropped connection: reconnect once
            raise AssertionError("unreachable")  # pragma: no cover

    def try_acquire(self, thread_id: str) -> object | None:
        lock_id = self._lock_id(thread_id)
        return lock_id if self._query("SELECT pg_try_advisory_lock(%s)", lock_id) else None

    def release(self, handle: object) -> None:
        try:
            self._query("SELECT pg_advisory_unlock(%s)", int(handle))  # type: ignore[call-overload]
        except Exception:  # the server released it with the session
            logger.warning("could not release the Postgres advisory lock %s", handle)
            with self._mutex:
                self._conn = None

    # interrupt requests: a shared advisory lock on a second key the holder probes
    def request(self, thread_id: str) -> object | None:
        lock_id = self._lock_id("interrupt:" + thread_id)
        return lock_id if self._query("SELECT pg_try_advisory_lock_shared(%s)", lock_id) else None

    def release_request(self, handle: object) -> None:
        with contextlib.suppress(Exception):
            self._query("SELECT pg_advisory_unlock_shared(%s)", int(handle))  # type: ignore[call-overload]

    def requested(self, thread_id: str) -> bool:
        lock_id = self._lock_id("interrupt:" + thread_id)
        if not self._query("SELECT pg_try_advisory_lock(%s)", lock_id):
            return True
        self._query("SELECT pg_advisory_unlock(%s)", lock_id)
        return False


def _sqlite_path(conn: sqlite3.Connection, lock: Any) -> str | None:
    with lock or contextlib.nullcontext():
        rows = conn.execute("PRAGMA database_list").fetchall()
    path = next((r[2] for r in rows if r[1] == "main"), "")
    return os.path.realpath(path) if path else None


def _postgres_lock(conn: Any) -> PostgresAdvisoryLock | None:
    import psycopg

    if hasattr(conn, "conninfo"):  # a psycopg_pool pool
        conninfo, kwargs = str(conn.conninfo), dict(getattr(conn, "kwargs", None) or {})
    elif hasattr(conn, "info"):
        conninfo, kwargs = conn.info.dsn, {}
        if conn.info.password:
            kwargs["password"] = conn.info.password
    else:
        return None
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    key = f"postgres:{params.get('host')}:{params.get('port')}/{params.get('dbname')}"
    kwargs = {k: v for k, v in kwargs.items() if k not in ("row_factory", "autocommit")}

    def connect() -> Any:
        return psycopg.connect(conninfo, autocommit=True, **kwargs)

    return PostgresAdvisoryLock(key, connect)


def store_lock_for(checkpointer: Any) -> StoreLock:
    """The store lock for a checkpointer (SQLite file, Postgres, or this process only).

    Args:
        checkpointer: A LangGraph checkpoint saver (or ``None``).

    Returns:
        The shared lock object of that store.
    """
    conn = getattr(checkpointer, "conn", None)
    if conn is None:  # a wrapper over a sync saver (the 'postgresql://...' checkpointer)
        conn = getattr(getattr(checkpointer, "sync", None), "conn", None)
    lock: StoreLock | None = None
    if isinstance(conn, sqlite3.Connection) and _fcntl is not None:
        path = _sqlite_path(conn, getattr(checkpointer, "lock", None))
        if path:
            lock = SqliteFileLock(path)
    elif type(conn).__module__.startswith(("psycopg", "psycopg_pool")):
        lock = _postgres_lock(conn)
    if lock is None:
        lock = _LocalOnly(f"local:{id(checkpointer)}")
    with _registry_mutex:  # one lock object (one Postgres connection) per store
        return _store_locks.setdefault(lock.key, lock)


_registry_mutex = threading.Lock()
_store_locks: dict[str, StoreLock] = {}


# ----------------------------------------------------------------------------- guard
@dataclass
class _Slot:
    lock: threading.Lock
    users: int = 0
    requests: int = 0  # in-process interrupt requests waiting for this thread


class Holding:
    """A held thread: lets the run see whether a newer run asked it to stop."""

    def __init__(self, store: StoreLock, slot: _Slot, thread_id: str) -> None:
        self._store = store
        self._slot = slot
        self.thread_id = thread_id

    def interrupt_requested(self) -> bool:
        """Whether a run with ``multitask_strategy="interrupt"`` waits for this thread.

        Returns:
            ``True`` when the holder should stop at the next step boundary.
        """
        return self._slot.requests > 0 or self._store.requested(self.thread_id)


_slots: dict[tuple[str, str], _Slot] = {}
_held: contextvars.ContextVar[Mapping[tuple[str, str], Holding]] = contextvars.ContextVar(
    "kimi_held_threads", default=MappingProxyType({})
)


class ThreadGuard:
    """Serialises runs per thread id on one store (see the module docstring).

    Args:
        store: The store's cross-process lock (:func:`store_lock_for`).
    """

    def __init__(self, store: StoreLock) -> None:
        self.store = store

    @contextlib.contextmanager
    def _slot(self, key: tuple[str, str]) -> Iterator[_Slot]:
        """The in-process slot of ``key``, kept while someone uses or waits for it."""
        with _registry_mutex:
            slot = _slots.setdefault(key, _Slot(threading.Lock()))
            slot.users += 1
        try:
            yield slot
        finally:
            with _registry_mutex:
                slot.users -= 1
                if slot.users <= 0:
                    _slots.pop(key, None)

    @contextlib.contextmanager
    def _holding(
        self, key: tuple[str, str], handle: object, slot: _Slot, thread_id: str
    ) -> Iterator[Holding]:
        """Mark ``key`` held in this call chain; release the store lock afterwards."""
        holding = Holding(self.store, slot, thread_id)
        token = _held.set(MappingProxyType({**_held.get(), key: holding}))
        try:
            yield holding
        finally:
            with contextlib.suppress(ValueError):  # finalised in another context
                _held.reset(token)
            self.store.release(handle)

    def _ask(self, slot: _Slot, thread_id: str, strategy: str) -> tuple[object | None] | None:
        """Register an interrupt request (``"interrupt"`` only) until the thread is ours."""
        if strategy != "interrupt":
            return None
        with _registry_mutex:
            slot.requests += 1
        return (self.store.request(thread_id),)

    def _withdraw(self, slot: _Slot, ask: tuple[object | None] | None) -> None:
        if ask is None:
            return
        with _registry_mutex:
            slot.requests -= 1
        if ask[0] is not None:
            self.store.release_request(ask[0])

    def _busy(self, thread_id: str, strategy: str, started: float) -> ThreadBusyError:
        waited = time.monotonic() - started
        logger.info("thread %r busy after %.2f s (%s)", thread_id, waited, strategy)
        return ThreadBusyError(thread_id, strategy=strategy, waited_s=waited)

    def _acquire(
        self, slot: _Slot, thread_id: str, strategy: str, timeout_s: float
    ) -> Generator[float, None, object]:
        """Take the in-process lock, then the store's; yields the waits between tries.

        The sync and async :meth:`hold` drive this one generator (sleeping or awaiting
        each wait); it returns the store lock's handle with ``slot.lock`` held.
        """
        started = time.monotonic()
        deadline = started + (0.0 if strategy == "reject" else timeout_s)
        ask = self._ask(slot, thread_id, strategy)
        wait = _POLL_S[0]
        try:
            while not slot.lock.acquire(blocking=False):
                if time.monotonic() >= deadline:
                    raise self._busy(thread_id, strategy, started)
                yield min(wait, max(deadline - time.monotonic(), 0.0))
                wait = min(wait * 2, _POLL_S[1])
            try:
                while (handle := self.store.try_acquire(thread_id)) is None:
                    if time.monotonic() >= deadline:
                        raise self._busy(thread_id, strategy, started)
                    yield min(wait, max(deadline - time.monotonic(), 0.0))
                    wait = min(wait * 2, _POLL_S[1])
            except BaseException:
                slot.lock.release()
                raise
            return handle
        finally:
            self._withdraw(slot, ask)

    @contextlib.contextmanager
    def hold(self, thread_id: str, strategy: str, timeout_s: float) -> Iterator[Holding]:
        """Hold ``thread_id`` for the block (wait, raise or interrupt per ``strategy``).

        Args:
            thread_id: The thread (session) id.
            strategy: ``"enqueue"``, ``"reject"`` or ``"interrupt"`` (ask the holder to
                stop at its next step, then wait like ``"enqueue"``).
            timeout_s: Longest wait with ``"enqueue"`` and ``"interrupt"``.

        Yields:
            The :class:`Holding` (the thread is held inside the block).

        Raises:
            ThreadBusyError: Refused (``"reject"``) or waited too long.
        """
        key = (self.store.key, thread_id)
        if (held := _held.get().get(key)) is not None:
            yield held
            return
        with self._slot(key) as slot:
            steps = self._acquire(slot, thread_id, strategy, timeout_s)
            try:
                while True:
                    time.sleep(next(steps))
            except StopIteration as done:
                handle = done.value
            finally:
                steps.close()  # interrupted while waiting: releases what it took
            try:
                with self._holding(key, handle, slot, thread_id) as holding:
                    yield holding
            finally:
                slot.lock.release()

    @contextlib.asynccontextmanager
    async def ahold(
        self, thread_id: str, strategy: str, timeout_s: float
    ) -> AsyncIterator[Holding]:
        """Async :meth:`hold`: waits with ``asyncio.sleep``, never blocking the loop.

        Args:
            thread_id: The thread (session) id.
            strategy: ``"enqueue"``, ``"reject"`` or ``"interrupt"``.
            timeout_s: Longest wait with ``"enqueue"`` and ``"interrupt"``.

        Yields:
            The :class:`Holding` (the thread is held inside the block).

        Raises:
            ThreadBusyError: Refused (``"reject"``) or waited too long.
        """
        key = (self.store.key, thread_id)
        if (held := _held.get().get(key)) is not None:
            yield held
            return
        with self._slot(key) as slot:
            steps = self._acquire(slot, thread_id, strategy, timeout_s)
            try:
                while True:
                    await asyncio.sleep(next(steps))
            except StopIteration as done:
                handle = done.value
            finally:
                steps.close()  # interrupted while waiting: releases what it took
            try:
                with self._holding(key, handle, slot, thread_id) as holding:
                    yield holding
            finally:
                slot.lock.release()


def thread_guard(checkpointer: Any) -> ThreadGuard:
    """The :class:`ThreadGuard` of a checkpointer's store.

    Args:
        checkpointer: A LangGraph checkpoint saver.

    Returns:
        A guard sharing its locks with every other guard on the same store.
    """
    return ThreadGuard(store_lock_for(checkpointer))
