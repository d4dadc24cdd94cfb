"""Execute the cookbook notebooks on the emulator and store them with their outputs.

``make notebooks`` (or ``.venv/bin/python cookbook/run_notebooks.py [NAME ...]``) runs every
notebook top to bottom in a fresh kernel of the current interpreter, in a temporary
working directory, with ``MOONSHOT_*`` removed from the environment (so the emulator path
is taken) and ``PYTHONHASHSEED=0``; then writes it back with its outputs, no execution
timestamps, and sequential execution counts. Images of cells tagged
``{"metadata": {"kimi_img": "NAME.png"}}`` are also written to ``docs/img/NAME.png`` (the
README links them), byte-identical to the image stored in the notebook.

``tests/integration_tests/test_notebooks.py`` uses the same functions to re-execute each
notebook and compare its text outputs with the stored ones after :func:`normalise`.
"""

from __future__ import annotations

import base64
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from ipykernel import kernelspec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
COOKBOOK = ROOT / "cookbook"
IMG_DIR = ROOT / "docs" / "img"
KERNEL_NAME = "kimi-cookbook"
CELL_TIMEOUT_S = 180
NB_METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}

# What legitimately differs between two runs: wall-clock timings, the emulator's port,
# random ids (uuid4 message/run ids, snapshot ids, completion ids), and numbers a notebook
# marks as approximate with a leading "~" (e.g. database sizes).
_VOLATILE = [
    (re.compile(r"~\s*\d[\d,]*(?:\.\d+)?"), "~<n>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\b(snap|sess|msg|chatcmpl|cache)-[0-9a-f]{8,}"), r"\1-<id>"),
    (re.compile(r"\b[0-9a-f]{16,}\b"), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?\s?(?:ms|µs|s)\b"), "<time>"),
]


def normalise(text: str) -> str:
    """Replace what legitimately varies between runs (timings, ports, random ids).

    Example:
        >>> normalise("took 12.5 ms on 127.0.0.1:4411, id snap-0a1b2c3d4e5f6a7b")
        'took <time> on 127.0.0.1:<port>, id snap-<id>'
        >>> normalise("~1,163 KB (~ 4.2x), 12 turns")
        '~<n> KB (~<n>x), 12 turns'
    """
    for pattern, repl in _VOLATILE:
        text = pattern.sub(repl, text)
    return text


def text_outputs(nb: Any) -> list[list[str]]:
    """The text each code cell printed or returned (stdout and ``text/plain``), per cell.

    ``stderr`` (log lines: a retry, a reconnect) is left out: how many a cell writes
    depends on the machine's load, not on what the cell shows.
    """
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        texts: list[str] = []
        last_stream = None
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                name = out.get("name")
                if name == "stderr":
                    continue
                if name == last_stream:  # a stream arrives in arbitrary chunks
                    texts[-1] += out.get("text", "")
                else:
                    texts.append(f"[{name}] {out.get('text', '')}")
                last_stream = name
                continue
            last_stream = None
            if "data" in out and "text/plain" in out["data"]:
                texts.append(str(out["data"]["text/plain"]))
            elif out.get("output_type") == "error":
                texts.append(f"[error] {out.get('ename')}: {out.get('evalue')}")
        cells.append(texts)
    return cells


def images(nb: Any) -> dict[str, bytes]:
    """The PNG of every cell tagged with ``kimi_img`` (file name -> bytes)."""
    found = {}
    for cell in nb.cells:
        name = cell.get("metadata", {}).get("kimi_img")
        if not name:
            continue
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png:
                found[name] = base64.b64decode(png)
    return found


def kernel_env() -> dict[str, str]:
    """The kernel's environment: no real-API credentials or test-runner state, fixed seed."""
    # PYTEST_CURRENT_TEST would switch off ipykernel's fd capture (sys.stderr without a
    # fileno: subprocesses started by a notebook, e.g. stdio MCP servers, then fail)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOONSHOT_", "PYTEST_"))}
    env.pop("KIMI_CONTEXT_DB", None)
    env.pop("KIMI_TOKENIZER_PATH", None)
    env["PYTHONHASHSEED"] = "0"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    return env


def execute(path: Path, kernel_dir: Path, workdir: Path) -> Any:
    """Execute one notebook in a kernel of ``sys.executable``; return it with outputs."""
    nb = nbformat.read(path, as_version=4)
    spec_manager = KernelSpecManager(kernel_dirs=[str(kernel_dir)])
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=spec_manager)
    client = NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT_S,
        allow_errors=False,
        record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute(env=kernel_env())
    return nb


def write_kernel_spec(root: Path) -> Path:
    """A kernel spec directory whose only kernel runs ``sys.executable``."""
    kernelspec.write_kernel_spec(root / KERNEL_NAME, overrides={"display_name": "cookbook"})
    return root


def clean(nb: Any) -> Any:
    """Sequential counts, one output per stream, fixed notebook metadata, no run metadata."""
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        count += 1
        cell.execution_count = count
        merged: list[Any] = []
        for out in cell.get("outputs", []):  # a stream arrives in arbitrary chunks: store one
            prev = merged[-1] if merged else None
            if (
                prev is not None
                and out.get("output_type") == "stream"
                and prev.get("output_type") == "stream"
                and prev.get("name") == out.get("name")
            ):
                prev["text"] = prev.get("text", "") + out.get("text", "")
            else:
                merged.append(out)
        cell.outputs = merged
        for out in cell.get("outputs", []):
            if "execution_count" in out:
                out["execution_count"] = count
        cell.metadata.pop("execution", None)
    nb.metadata = nbformat.from_dict(NB_METADATA)
    return nb


def run(names: list[str]) -> int:
    """Execute and store the named notebooks (all when empty); write the tagged images."""
    paths = sorted(COOKBOOK.glob("*.ipynb"))
    if names:
        paths = [p for p in paths if any(p.name.startswith(n) for n in names)]
    IMG_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        kernels = write_kernel_spec(Path(tmp) / "kernels")
        for path in paths:
            workdir = Path(tmp) / path.stem
            workdir.mkdir()
            started = time.perf_counter()
            try:
                nb = clean(execute(path, kernels, workdir))
            except CellExecutionError as exc:
                ename, evalue = exc.ename, exc.evalue
                print(f"{path.name}: FAILED {ename}: {evalue}", file=sys.stderr)
                return 1
            nbformat.write(nb, path)
            for name, data in images(nb).items():
                (IMG_DIR / name).write_bytes(data)
            print(f"{path.name}: {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
