"""The cookbook notebooks: stored with outputs, and those outputs are not stale.

Each notebook is re-executed (``cookbook/run_notebooks.py``: a fresh kernel of the
*current* interpreter, a temporary working directory, no ``MOONSHOT_*`` variables, so the
emulator path is taken) and its text outputs are compared, cell by cell, with the stored
ones after normalising what legitimately varies (timings, ports, random ids). A mismatch
means the code changed what a reader sees: run ``make notebooks`` and commit the result.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[2]
COOKBOOK = ROOT / "cookbook"
NOTEBOOKS = sorted(COOKBOOK.glob("*.ipynb"))
EXPECTED = {
    "01_kimi_chat_model.ipynb",
    "02_context_pipeline.ipynb",
    "03_caching_and_cost.ipynb",
    "04_compaction_and_overflow.ipynb",
    "05_agent.ipynb",
    "06_sessions_and_dropins.ipynb",
    "07_cost_analysis.ipynb",
    "08_mcp.ipynb",
}


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_notebooks", COOKBOOK / "run_notebooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


runner = _runner()


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return runner.write_kernel_spec(tmp_path_factory.mktemp("kernels"))


def _code_cells(nb: object) -> list[object]:
    return [c for c in nb.cells if c.cell_type == "code"]  # type: ignore[attr-defined]


def test_every_notebook_is_stored_with_outputs_and_no_machine_details() -> None:
    assert {p.name for p in NOTEBOOKS} >= EXPECTED
    machine = re.compile(r"/tmp/|/home/|/root/|/work/|\b0x[0-9a-f]{6,}\b|Traceback")
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[0].cell_type == "markdown", f"{path.name}: start with prose"
        cells = _code_cells(nb)
        # every cell shows something, except the setup (first) and the emulator's stop (last)
        empty = [c.source.splitlines()[0] for c in cells[1:-1] if not c.get("outputs")]
        assert not empty, f"{path.name}: cells without output: {empty}"
        assert len(cells) >= 3
        for cell in cells:
            assert "execution" not in cell.metadata, f"{path.name}: run timestamps stored"
        texts = "\n".join(t for cell in runner.text_outputs(nb) for t in cell)
        assert not machine.findall(texts), f"{path.name}: {machine.findall(texts)}"
        assert "TokenizerFallbackWarning" not in texts


def test_plots_are_stored_and_are_the_readme_images() -> None:
    with_plots = {}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        images = runner.images(nb)
        if images:
            with_plots[path.name] = images
    assert len(with_plots) >= 3
    assert {
        "03_cache_per_turn.png",
        "04_context_per_turn.png",
        "05_db_size_per_turn.png",
        "07_cost_per_session.png",
    } <= {name for images in with_plots.values() for name in images}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for images in with_plots.values():
        for name, data in images.items():
            assert data.startswith(b"\x89PNG")
            stored = ROOT / "docs" / "img" / name
            assert stored.read_bytes() == data, f"docs/img/{name} differs: run make notebooks"
            assert f"docs/img/{name}" in readme, f"README does not link docs/img/{name}"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_outputs_are_not_stale(path: Path, kernel_dir: Path, tmp_path: Path) -> None:
    stored = nbformat.read(path, as_version=4)
    fresh = runner.execute(path, kernel_dir, tmp_path)
    assert not list(tmp_path.glob("**/*.ipynb"))
    want = [[runner.normalise(t) for t in cell] for cell in runner.text_outputs(stored)]
    got = [[runner.normalise(t) for t in cell] for cell in runner.text_outputs(fresh)]
    sources = [c.source.splitlines()[0] if c.source else "" for c in _code_cells(stored)]
    for source, old, new in zip(sources, want, got, strict=True):
        assert new == old, (
            f"{path.name}: the outputs of the cell starting {source!r} changed; "
            "run `make notebooks` and commit the notebooks"
        )
    assert runner.images(fresh).keys() == runner.images(stored).keys()


def test_normalise_keeps_what_matters() -> None:
    assert runner.normalise("12 passed in 0.8s") == "12 passed in <time>"
    assert runner.normalise("cost 0.0123 USD, 4 compactions") == "cost 0.0123 USD, 4 compactions"
    assert runner.normalise("2,341 tokens") == "2,341 tokens"
    assert runner.normalise("~1,163 KB (~10.1x)") == "~<n> KB (~<n>x)"
