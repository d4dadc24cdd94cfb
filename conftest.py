"""Repository-wide test isolation (applies to tests/ and to the package's doctests).

Model profiles and windows learned from overflow errors are process-wide by design (a
window the server taught us should be used from then on). Tests must not leak them into
each other, so every test runs against a snapshot that is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from langchain_kimi_context import profiles


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
