"""CONTRIBUTING.md: each documented change touches at most three files, all of which exist.

The numbered steps of "A new pipeline stage", "A new compaction strategy" and "A new
model" name every file to touch (a ``<name>`` part is the new module). The worked
example of the compaction strategy is
``tests/integration_tests/test_compaction_strategy_faces.py``: a strategy defined in one
module and passed to all three faces, with no other file changed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "langchain_kimi_context"
GUIDE = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
CHANGES = ("A new pipeline stage", "A new compaction strategy", "A new model")
_PATH = re.compile(r"`([\w<>./-]+(?:\.py|/))`")


def _steps(title: str) -> str:
    """The numbered steps of one section (up to the first line that is not a step)."""
    section = GUIDE.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines: list[str] = []
    for line in section.strip().splitlines():
        if not (re.match(r"\d+\. ", line) or (lines and line.startswith("   "))):
            break
        lines.append(line)
    return "\n".join(lines)


def _files(title: str) -> set[str]:
    return set(_PATH.findall(_steps(title)))


@pytest.mark.parametrize("title", CHANGES)
def test_each_change_touches_at_most_three_files(title: str) -> None:
    files = _files(title)
    assert 1 <= len(files) <= 3, (title, sorted(files))


@pytest.mark.parametrize("title", CHANGES)
def test_the_files_named_exist(title: str) -> None:
    for name in _files(title):
        path = PACKAGE / name.split("<", 1)[0]  # a new module: its folder exists
        if "<" in name:
            path = path if name.split("<", 1)[0].endswith("/") else path.parent
        assert path.exists(), (title, name)


def test_a_new_strategy_is_its_module_and_its_export() -> None:
    assert _files("A new compaction strategy") == {
        "context/compaction/<strategy>.py",
        "context/compaction/__init__.py",
    }
