"""The agent served by ``langgraph dev`` (langgraph-cli[inmem]) and driven by langgraph-sdk.

The test starts the real server on 127.0.0.1 with ``langgraph.json`` from the repository
root, the model pointing at the Kimi emulator; the server's own checkpointer persists
the threads. Snapshot / rollback / share are the server's thread API: checkpoint ids of
``threads.get_history``, a run from a checkpoint, ``threads.copy``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from langchain_kimi_context.testing import KimiEmulator

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.subprocess, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, KimiEmulator]]:
    pytest.importorskip("langgraph_api")
    sdk = pytest.importorskip("langgraph_sdk")
    assert sdk
    cli = shutil.which("langgraph", path=str(Path(sys.executable).parent))
    if cli is None:
        pytest.skip("langgraph-cli is not installed (pip install 'langgraph-cli[inmem]')")
    with KimiEmulator() as emu:
        port = _free_port()
        env = {
            **os.environ,
            "MOONSHOT_API_KEY": emu.api_key,
            "MOONSHOT_BASE_URL": emu.base_url,
            "KIMI_MODEL": "kimi-k2.6",
            "LANGGRAPH_NO_VERSION_CHECK": "true",
            "LANGSMITH_TRACING": "false",
        }
        log = (Path(os.environ.get("TMPDIR", "/tmp")) / f"langgraph-dev-{port}.log").open("w")
        proc = subprocess.Popen(
            [cli, "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    pytest.fail(f"langgraph dev exited: {Path(log.name).read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            else:
                pytest.fail(f"langgraph dev did not start: {Path(log.name).read_text()[-2000:]}")
            yield url, emu
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def _texts(state: Any) -> list[str]:
    return [m["content"] for m in state["values"]["messages"]]


def test_turns_concurrent_runs_and_thread_api(server: tuple[str, KimiEmulator]) -> None:
    from langgraph_sdk import get_sync_client

    url, _emu = server
    client = get_sync_client(url=url)
    thread = client.threads.create()
    tid = thread["thread_id"]
    for text in ("one", "two", "three"):
        client.runs.wait(
            tid, "agent", input={"messages": [{"role": "user", "content": f"@say {text}"}]}
        )
    state = client.threads.get_state(tid)
    assert _texts(state) == ["@say one", "one", "@say two", "two", "@say three", "three"]

    # two concurrent runs on one thread, enqueued: both kept, in order
    first = client.runs.create(
        tid,
        "agent",
        input={"messages": [{"role": "user", "content": "@say four"}]},
        multitask_strategy="enqueue",
    )
    second = client.runs.create(
        tid,
        "agent",
        input={"messages": [{"role": "user", "content": "@say five"}]},
        multitask_strategy="enqueue",
    )
    client.runs.join(tid, first["run_id"])
    client.runs.join(tid, second["run_id"])
    assert _texts(client.threads.get_state(tid))[-4:] == ["@say four", "four", "@say five", "five"]

    # snapshot = a checkpoint id; rollback = run from it; share = threads.copy
    history = client.threads.get_history(tid, limit=200)
    snap = next(s for s in history if len(s["values"].get("messages", [])) == 2 and not s["next"])
    # a named snapshot index in the server's store: name -> checkpoint id
    index = ("kimi_context", "snapshots", tid)
    client.store.put_item(
        index, "after-first", {"checkpoint_id": snap["checkpoint"]["checkpoint_id"]}
    )
    named = client.store.get_item(index, "after-first")["value"]["checkpoint_id"]
    shared = client.threads.copy(tid)
    assert _texts(client.threads.get_state(shared["thread_id"])) == _texts(
        client.threads.get_state(tid)
    )
    client.runs.wait(
        tid,
        "agent",
        input={"messages": [{"role": "user", "content": "@say back"}]},
        checkpoint_id=named,
    )
    assert _texts(client.threads.get_state(tid)) == ["@say one", "one", "@say back", "back"]
    # the shared copy kept the whole session
    assert _texts(client.threads.get_state(shared["thread_id"]))[-2:] == ["@say five", "five"]


def test_deploy_graph_keeps_the_cache_registry_in_the_given_store(
    emulator: KimiEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langgraph.store.memory import InMemoryStore

    from examples.deploy.graph import build_agent, build_model

    monkeypatch.setenv("MOONSHOT_API_KEY", emulator.api_key)
    monkeypatch.setenv("MOONSHOT_BASE_URL", emulator.base_url)
    monkeypatch.setenv("KIMI_MODEL", "kimi-k2.6")
    store = InMemoryStore()
    model = build_model(store)
    assert model.cache_registry.store is store
    assert model.model_name == "kimi-k2.6"
    assert model.openai_api_base == emulator.base_url
    assert build_agent(store).checkpointer is None  # the server's checkpointer persists
