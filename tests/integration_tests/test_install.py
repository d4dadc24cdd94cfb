"""The README's install section works: a wheel built from this tree, in a fresh venv.

Offline-friendly: the wheel is built without build isolation (hatchling comes with the
test extra), installed with ``--no-index --no-deps`` into a new virtual environment whose
dependencies come from the test environment's site-packages (a ``.pth`` line), and the
installed console script and package are run from outside the source tree, so the
import can only come from the wheel.
"""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.MULTILINE | re.DOTALL)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
        timeout=300,
        cwd=out,
    )
    (built,) = out.glob("langchain_kimi_context-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # the dependencies: the test environment's site-packages, after the venv's own
    (Path(purelib) / "_test_env_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-index",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        check=True,
        timeout=300,
        cwd=root,
    )
    return root


def test_wheel_metadata_matches_the_install_section(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(zf.read(meta_name))
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert meta["Name"] == "langchain-kimi-context"
    assert "langchain_kimi_context/py.typed" in names
    assert "langchain_kimi_context/testing/server/emulator.py" in names  # the emulator ships
    assert "kimi-context = langchain_kimi_context.cli:main" in entry_points
    install = _section("Install")
    assert "pip install langchain-kimi-context" in install
    extras = set(meta.get_all("Provides-Extra") or [])
    for extra in re.findall(r'pip install "langchain-kimi-context\[(\w+)\]"', install):
        assert extra in extras, f"README installs extra [{extra}] that the wheel does not define"
    assert {"postgres", "docs"} <= set(re.findall(r"langchain-kimi-context\[(\w+)\]", install))
    quickstart = _section("Quickstart (in a clone)")
    assert "make demo   # sets up .venv" in quickstart
    assert "make test   # sets up .venv" in quickstart


def test_console_script_from_the_wheel_in_a_fresh_venv(fresh_venv: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KIMI_CONTEXT_DB")}
    script = fresh_venv / "bin" / "kimi-context"
    assert script.exists()
    help_run = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert help_run.returncode == 0, help_run.stderr
    assert "usage: kimi-context" in help_run.stdout
    assert "threads" in help_run.stdout
    assert "emulator" in help_run.stdout
    where = subprocess.run(
        [
            str(fresh_venv / "bin" / "python"),
            "-c",
            "import langchain_kimi_context as m; print(m.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(fresh_venv)), where  # the wheel, not the source tree
    missing = subprocess.run(
        [str(script), "threads", "list", "--db", str(tmp_path / "none.sqlite")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("kimi-context: error: no checkpoint database")
