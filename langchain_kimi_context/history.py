"""A ``BaseChatMessageHistory`` backed by a :class:`RollingSnapshotMemory` session.

Apps built on ``RunnableWithMessageHistory`` gain snapshots, compaction and the context
pipeline by changing one line: ``get_session_history=memory.history``.

* ``messages`` returns what the model would see next (records applied, pipeline run),
  so a long history reaches the prompt already compacted and well-formed;
* ``add_messages`` appends to the session's append-only log in one checkpoint write,
  then runs the session's end-of-turn check (snapshot + compaction or truncation when
  the trigger fires);
* ``clear`` rolls the session back to its state at creation (nothing is deleted: the
  earlier checkpoints and snapshots stay recoverable).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage

if TYPE_CHECKING:
    from langchain_kimi_context.memory import RollingSnapshotMemory

__all__ = ["KimiChatMessageHistory"]


class KimiChatMessageHistory(BaseChatMessageHistory):
    """Chat history of one :class:`~langchain_kimi_context.RollingSnapshotMemory` session.

    Args:
        memory: The memory holding the session.
        session_id: The session (created on first use when missing).
        system: System instructions used if the session is created here.
        auto_maintain: After each ``add_messages``, run ``memory.maintain`` (snapshot +
            compaction/truncation when the trigger fires).

    Example:
        >>> import os, tempfile
        >>> from langchain_kimi_context import RollingSnapshotMemory
        >>> memory = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
        ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
        >>> h = KimiChatMessageHistory(memory, "s1", system="Be terse.")
        >>> h.add_user_message("hi")
        >>> [m.type for m in h.messages]
        ['system', 'human']
    """

    def __init__(
        self,
        memory: RollingSnapshotMemory,
        session_id: str,
        *,
        system: str | None = None,
        auto_maintain: bool = True,
    ) -> None:
        from langchain_kimi_context.memory import SessionNotFoundError

        self.memory = memory
        self.session_id = session_id
        self.auto_maintain = auto_maintain
        try:
            memory.list_snapshots(session_id)
        except SessionNotFoundError:
            memory.create_session(system=system, session_id=session_id)

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """What the model would see next (compacted, sanitized, pairing repaired)."""
        return self.memory.messages(self.session_id)

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append messages (one checkpoint write), then run the end-of-turn check.

        Args:
            messages: The messages of the exchange.
        """
        self.memory.append_messages(self.session_id, list(messages), enforce_limit=False)
        if self.auto_maintain:
            self.memory.maintain(self.session_id)

    def clear(self) -> None:
        """Roll the session back to its creation snapshot (the record stays recoverable)."""
        created = [s for s in self.memory.list_snapshots(self.session_id) if s.reason == "created"]
        self.memory.rollback(self.session_id, created[0].snapshot_id)

    def snapshot(self, name: str | None = None) -> str:
        """Snapshot the session (see :meth:`RollingSnapshotMemory.snapshot`).

        Args:
            name: Optional label.

        Returns:
            The snapshot id.
        """
        return self.memory.snapshot(self.session_id, name=name)
