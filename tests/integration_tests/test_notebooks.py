"""Execute every cookbook notebook top to bottom, offline, on the bundled emulator.

Each notebook runs in a fresh kernel of the *current* interpreter (a temporary kernel spec
pointing at ``sys.executable``, so the venv under test is the one used), in a temporary
working directory (no SQLite files land in the repo), with ``MOONSHOT_API_KEY`` removed
from the kernel's environment so the notebooks always take their emulator path.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")
jupyter_kernelspec = pytest.importorskip("jupyter_client.kernelspec")
jupyter_manager = pytest.importorskip("jupyter_client.manager")

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbook"
NOTEBOOKS = sorted(COOKBOOK.glob("*.ipynb"))
KERNEL_NAME = "kimi-cookbook-test"
CELL_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A kernel spec directory whose only kernel runs ``sys.executable``."""
    root = tmp_path_factory.mktemp("kernels")
    kernelspec.write_kernel_spec(root / KERNEL_NAME, overrides={"display_name": "cookbook"})
    return [str(root)]


def _kernel_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOONSHOT_")}
    env["PYTHONHASHSEED"] = "0"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


def test_cookbook_notebooks_are_stored_clean() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert names >= {
        "01_kimi_chat_model.ipynb",
        "02_context_pipeline.ipynb",
        "03_caching_and_cost.ipynb",
        "04_compaction_and_overflow.ipynb",
        "05_agent.ipynb",
        "06_sessions_and_dropins.ipynb",
    }
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[0].cell_type == "markdown", f"{path.name}: start with prose"
        stored = [c for c in nb.cells if c.cell_type == "code" and c.get("outputs")]
        assert not stored, f"{path.name}: store notebooks without outputs"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, kernel_dirs: list[str], tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    spec_manager = jupyter_kernelspec.KernelSpecManager(kernel_dirs=kernel_dirs)
    spec = spec_manager.get_kernel_spec(KERNEL_NAME)
    assert spec.argv[0] == sys.executable  # the venv under test, not a system kernel
    km: Any = jupyter_manager.KernelManager(
        kernel_name=KERNEL_NAME, kernel_spec_manager=spec_manager
    )
    client = nbclient.NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT_S,
        allow_errors=False,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    started = time.perf_counter()
    client.execute(env=_kernel_env())
    elapsed = time.perf_counter() - started
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert printed.strip(), f"{path.name} printed nothing"
    assert not list(tmp_path.glob("**/*.ipynb"))
    print(f"{path.name}: {elapsed:.1f}s")
