"""Shared fixtures: the Kimi emulator (owned by the emulator helper).

* ``emulator``: one :class:`KimiEmulator` per test session; its state (request log,
  ledgers, caches, faults, clock offset) is reset before every test that uses it, so
  tests stay independent while paying the start-up cost once.
* ``fresh_emulator``: a new emulator per test (for tests that need non-default options
  pass them via ``make_emulator``).
* ``make_emulator``: a factory ``make_emulator(**options) -> KimiEmulator`` whose servers
  are stopped after the test.
* Every test starts and ends with no learned context window (they are process-wide).
* ``legacy_emulator``: like ``emulator`` with ``catalog="legacy"`` (the retired 2025
  catalog: moonshot-v1 and the explicit Context Caching API, ``Retry-After`` headers,
  prefix cache partitioned by ``prompt_cache_key``), for tests of the explicit cache.

PostgreSQL fixtures (``postgres_dsn``, ``new_postgres_schema``, ``postgres_schema``: one
database per run, skipped without a server) live in ``tests/postgres_fixtures.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from langchain_kimi_context.profiles import forget_learned_windows
from langchain_kimi_context.testing import KimiEmulator
from tests.postgres_fixtures import new_postgres_schema, postgres_dsn, postgres_schema

__all__ = ["new_postgres_schema", "postgres_dsn", "postgres_schema"]


@pytest.fixture(autouse=True)
def _forget_learned_windows() -> Iterator[None]:
    """Learned context windows are process-wide: no test sees another test's."""
    forget_learned_windows()
    yield
    forget_learned_windows()


@pytest.fixture(scope="session")
def _session_emulator() -> Iterator[KimiEmulator]:
    with KimiEmulator() as emu:
        yield emu


@pytest.fixture
def emulator(_session_emulator: KimiEmulator) -> KimiEmulator:
    """The session's emulator, reset for this test."""
    _session_emulator.reset()
    return _session_emulator


@pytest.fixture(scope="session")
def _session_legacy_emulator() -> Iterator[KimiEmulator]:
    with KimiEmulator(catalog="legacy") as emu:
        yield emu


@pytest.fixture
def legacy_emulator(_session_legacy_emulator: KimiEmulator) -> KimiEmulator:
    """The session's legacy-catalog emulator (explicit Context Caching), reset."""
    _session_legacy_emulator.reset()
    return _session_legacy_emulator


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., KimiEmulator]]:
    """Factory of started emulators with custom options, stopped after the test."""
    started: list[KimiEmulator] = []

    def factory(**options: Any) -> KimiEmulator:
        emu = KimiEmulator(**options).start()
        started.append(emu)
        return emu

    yield factory
    for emu in started:
        emu.stop()


@pytest.fixture
def fresh_emulator(make_emulator: Callable[..., KimiEmulator]) -> KimiEmulator:
    """A new emulator with default options, for this test only."""
    return make_emulator()
