"""Repository-wide test setup (applies to tests/ and to the package's doctests).

Model profiles and windows learned from overflow errors are process-wide by design (a
window the server taught us should be used from then on). Tests must not leak them into
each other, so every test runs against a snapshot that is restored afterwards.

Doctests get a running emulator without setup lines: ``emulator`` (a :class:`KimiEmulator`
on 127.0.0.1, one per session, reset before every doctest), ``base_url`` and ``api_key``
(its address and key, ready for ``KimiChatModel(base_url=base_url, api_key=api_key)``).
The emulator starts on the first doctest that runs, never for tests/ alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from _pytest.doctest import DoctestItem

from langchain_kimi_context import profiles
from langchain_kimi_context.testing import KimiEmulator


@pytest.fixture(autouse=True)
def _isolate_process_wide_model_state() -> Iterator[None]:
    saved_registry = dict(profiles._registry)
    saved_learned = dict(profiles._learned)
    try:
        yield
    finally:
        with profiles._lock:
            profiles._registry.clear()
            profiles._registry.update(saved_registry)
            profiles._learned.clear()
            profiles._learned.update(saved_learned)


@pytest.fixture(scope="session")
def _doctest_emulator() -> Iterator[KimiEmulator]:
    with KimiEmulator() as emu:
        yield emu


@pytest.fixture(autouse=True)
def _doctest_globals(request: pytest.FixtureRequest, doctest_namespace: dict[str, Any]) -> None:
    """Give every doctest ``emulator``, ``base_url`` and ``api_key`` (emulator reset first)."""
    if not isinstance(request.node, DoctestItem):
        return
    emu: KimiEmulator = request.getfixturevalue("_doctest_emulator")
    emu.reset()
    doctest_namespace.update(emulator=emu, base_url=emu.base_url, api_key=emu.api_key)
