"""Docstring share of the package: lines inside docstrings, ``>>>`` examples, doctests.

Usage: ``python benchmarks/docstring_share.py [PACKAGE_DIR]`` (default: the package).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

_DOC_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def measure(root: Path) -> dict[str, int]:
    """Count total lines, docstring lines, ``>>>`` lines and docstrings with examples."""
    total = doc_lines = examples = with_examples = 0
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        total += len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, _DOC_OWNERS) or not node.body:
                continue
            first = node.body[0]
            if not (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                continue
            doc_lines += (first.end_lineno or first.lineno) - first.lineno + 1
            prompts = sum(
                1 for line in first.value.value.splitlines() if line.lstrip().startswith(">>>")
            )
            examples += prompts
            with_examples += prompts > 0
    return {
        "total_lines": total,
        "docstring_lines": doc_lines,
        "examples": examples,
        "docstrings_with_examples": with_examples,
    }


def main() -> int:
    """Print the counts of the package (or the folder given)."""
    root = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).parents[1] / "langchain_kimi_context"
    )
    m = measure(root)
    share = 100 * m["docstring_lines"] / max(m["total_lines"], 1)
    print(
        f"{root}: {m['docstring_lines']:,} docstring lines of {m['total_lines']:,} ({share:.1f}%), "
        f"{m['examples']:,} '>>>' lines in {m['docstrings_with_examples']:,} docstrings"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
