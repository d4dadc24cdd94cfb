"""Run every benchmark script in turn (``make bench``); each prints its own tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = [
    ["bench_tokens.py"],
    ["bench_pipeline.py"],
    ["bench_caching.py", "--explicit"],
    ["bench_compaction.py"],
    ["bench_budget.py"],
    ["bench_storage.py"],
    ["bench_memory.py"],
    ["bench_recall.py", "--quick"],
    ["bench_mcp.py"],
]


def main() -> int:
    """Run the benchmarks; return non-zero if any failed."""
    here = Path(__file__).parent
    failed = 0
    for script, *args in SCRIPTS:
        print(f"\n===== {script} {' '.join(args)}", flush=True)
        failed += subprocess.call([sys.executable, str(here / script), *args]) != 0
    print(f"\n{len(SCRIPTS) - failed} benchmarks ran, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
