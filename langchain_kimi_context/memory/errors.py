"""The errors of :class:`~langchain_kimi_context.RollingSnapshotMemory`'s session API.

Contract:

* Every error derives from :class:`KimiSessionError`; lookups of unknown sessions and
  snapshots are also ``LookupError``, bad arguments also ``ValueError``.
* Each message says what went wrong and what to do next (the call or setting to change),
  and the values it names are kept as attributes.
* Nothing here does I/O or imports the rest of the memory package.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AppendTooLargeError",
    "KimiSessionError",
    "PreserveTooSmallError",
    "SessionClosedError",
    "SessionExistsError",
    "SessionLimitError",
    "SessionNotFoundError",
    "SessionTurnError",
    "SnapshotSessionMismatchError",
    "UnknownSnapshotError",
]


class KimiSessionError(Exception):
    """Base class of the session API's errors.

    Example:
        >>> issubclass(SessionNotFoundError, KimiSessionError)
        True
    """


class _SessionIdError(KimiSessionError):
    """An error about one session, its message built from the session id alone."""

    _message: ClassVar[str]

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(self._message.format(session_id=session_id))


class SessionNotFoundError(_SessionIdError, LookupError):
    """No session with this id exists in the memory's namespace.

    Example:
        >>> str(SessionNotFoundError("s1")).startswith("No session 's1'")
        True
    """

    _message = (
        "No session {session_id!r} in this memory: create it with "
        "create_session(session_id={session_id!r}) or check the id (live sessions: "
        "memory.sessions())."
    )


class SessionClosedError(_SessionIdError):
    """The session was closed with ``close_session``.

    Example:
        >>> "closed" in str(SessionClosedError("s1"))
        True
    """

    _message = (
        "Session {session_id!r} was closed. Its snapshots are still usable: "
        "share(snapshot_id) continues it as a new session."
    )


class SessionExistsError(_SessionIdError):
    """``create_session`` was given the id of an existing session.

    Example:
        >>> "already exists" in str(SessionExistsError("s1"))
        True
    """

    _message = (
        "Session {session_id!r} already exists; pick another session_id or pass "
        "session_id=None for a generated one."
    )


class SessionLimitError(KimiSessionError):
    """Creating the session would exceed the cap on live sessions.

    Attributes:
        limit: The cap (``max_sessions``).
        live: Live sessions now.

    Example:
        >>> SessionLimitError(limit=100, live=100).limit
        100
    """

    def __init__(self, *, limit: int, live: int) -> None:
        self.limit = limit
        self.live = live
        super().__init__(
            f"{live} live sessions already (max_sessions={limit}). Close finished ones with "
            f"memory.close_session(session_id) (add delete=True to drop their data), or "
            f"raise RollingSnapshotMemory(max_sessions=...)."
        )


class AppendTooLargeError(KimiSessionError, ValueError):
    """One appended message is larger than ``policy.max_append_tokens``.

    Attributes:
        tokens: Tokens of the message.
        limit: The per-append limit.

    Example:
        >>> err = AppendTooLargeError(tokens=20_000, limit=8_000)
        >>> err.parts, "Split it into" in str(err)
        (3, True)
    """

    def __init__(self, *, tokens: int, limit: int) -> None:
        self.tokens = tokens
        self.limit = limit
        self.parts = -(-tokens // limit)
        super().__init__(
            f"The message has about {tokens:,} tokens, over the per-append limit of "
            f"{limit:,} (ContextPolicy.max_append_tokens). Split it into at least "
            f"{self.parts} messages of at most {limit:,} tokens each (e.g. by file or "
            f"section) and append them one by one, or raise max_append_tokens."
        )


class PreserveTooSmallError(KimiSessionError, ValueError):
    """``truncate(preserve_len=...)`` asked to keep less than ``min_preserve_tokens``.

    Example:
        >>> "4,096" in str(PreserveTooSmallError(preserve_len=1000, minimum=4096))
        True
    """

    def __init__(self, *, preserve_len: int, minimum: int) -> None:
        self.preserve_len = preserve_len
        self.minimum = minimum
        super().__init__(
            f"preserve_len={preserve_len:,} is below the minimum of {minimum:,} tokens "
            f"(ContextPolicy.min_preserve_tokens): keeping less loses the working context. "
            f"Use preserve_len >= {minimum:,}, or compress() to summarise instead."
        )


class UnknownSnapshotError(KimiSessionError, LookupError):
    """The snapshot id is not known to this memory.

    Example:
        >>> "list_snapshots" in str(UnknownSnapshotError("snap-x"))
        True
    """

    def __init__(self, snapshot_id: str) -> None:
        self.snapshot_id = snapshot_id
        super().__init__(
            f"Unknown snapshot id {snapshot_id!r}: use an id returned by snapshot() or "
            f"listed by list_snapshots(session_id)."
        )


class SnapshotSessionMismatchError(KimiSessionError, ValueError):
    """The snapshot belongs to another session than the one named.

    Example:
        >>> err = SnapshotSessionMismatchError("snap-1", expected="a", actual="b")
        >>> err.actual, "share" in str(err)
        ('b', True)
    """

    def __init__(self, snapshot_id: str, *, expected: str, actual: str) -> None:
        self.snapshot_id = snapshot_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"Snapshot {snapshot_id!r} belongs to session {actual!r}, not {expected!r}. "
            f"Roll back {actual!r} instead, or use share({snapshot_id!r}) to continue it "
            f"as a new session."
        )


class SessionTurnError(KimiSessionError):
    """A ``chat`` turn failed; the session was rolled back to its state before the turn.

    Attributes:
        session_id: The session.
        snapshot_id: The snapshot the session was rolled back to (before the turn).
        failed_checkpoint_id: The last checkpoint of the failed attempt (recoverable from
            the checkpoint history).
        cause: The underlying error (also ``__cause__``), or ``None`` for an interrupt.

    Example:
        >>> err = SessionTurnError("s", "snap-1", None, RuntimeError("boom"))
        >>> "rolled back" in str(err), err.cause.args
        (True, ('boom',))
    """

    def __init__(
        self,
        session_id: str,
        snapshot_id: str,
        failed_checkpoint_id: str | None,
        cause: BaseException | None,
        detail: str = "",
    ) -> None:
        self.session_id = session_id
        self.snapshot_id = snapshot_id
        self.failed_checkpoint_id = failed_checkpoint_id
        self.cause = cause
        why = detail or f"{type(cause).__name__}: {cause}"
        super().__init__(
            f"The turn failed ({why}). Session {session_id!r} was rolled back to snapshot "
            f"{snapshot_id!r} (its state before the turn); no completed model call is "
            f"repeated by the rollback. Fix the cause and call chat() again."
        )


# ----------------------------------------------------------------------------- results
