"""``kimi-context``: look at and manage stored Kimi sessions from the shell.

Commands (also ``python -m langchain_kimi_context``)::

    kimi-context threads list                      id, turns, messages, last update, cost
    kimi-context threads show ID [--full]          transcript, usage, compactions, snapshots
    kimi-context threads export ID --format jsonl|md [-o FILE]   every message of the log
    kimi-context threads rollback ID SNAPSHOT      new head at a snapshot/checkpoint
    kimi-context threads fork ID [SNAPSHOT] [--to NEW_ID]
    kimi-context threads prune [ID ...]            the saver's prune (redundant checkpoints)
    kimi-context threads vacuum                    reclaim free space
    kimi-context emulator [--port N]               the bundled Kimi API emulator

The database is ``--db PATH`` (or a ``postgresql://`` DSN), else ``$KIMI_CONTEXT_DB``,
else the package's default checkpoint file. ``--json`` prints JSON instead of tables.
Errors (an unknown id, a missing, locked or non-SQLite database) are one line on stderr
with exit code 2. The CLI never calls a model and never reads or prints an API key.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from langchain_kimi_context.agent.storage import DB_ENV_VAR
from langchain_kimi_context.cli import render
from langchain_kimi_context.cli.store import ThreadStore, ThreadStoreError, _first_line
from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.memory import KimiSessionError

__all__ = ["ThreadStore", "ThreadStoreError", "build_parser", "main"]

PROG = "kimi-context"
EXIT_ERROR = 2
DEBUG_ENV_VAR = "KIMI_CONTEXT_DEBUG"


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        metavar="PATH|DSN",
        help=f"SQLite file or postgresql:// DSN (default: ${DB_ENV_VAR}, else the default file)",
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    return common


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser.

    Returns:
        The parser.
    """
    common = _common()
    parser = argparse.ArgumentParser(
        prog=PROG,
        parents=[common],
        description="Look at and manage stored Kimi sessions (langchain-kimi-context).",
    )
    top = parser.add_subparsers(dest="group", required=True, metavar="{threads,emulator}")
    threads = top.add_parser("threads", help="list, show, export, rollback, fork, prune, vacuum")
    cmds = threads.add_subparsers(dest="command", required=True)

    cmds.add_parser("list", parents=[common], help="threads: id, turns, messages, update, cost")
    show = cmds.add_parser(
        "show", parents=[common], help="transcript, usage, compactions, snapshots"
    )
    show.add_argument("thread_id", metavar="ID")
    show.add_argument("--full", action="store_true", help="do not shorten long messages")

    export = cmds.add_parser("export", parents=[common], help="every message of the full log")
    export.add_argument("thread_id", metavar="ID")
    export.add_argument("--format", choices=["jsonl", "md"], default="jsonl")
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")

    rollback = cmds.add_parser("rollback", parents=[common], help="return a thread to a snapshot")
    rollback.add_argument("thread_id", metavar="ID")
    rollback.add_argument("snapshot", metavar="SNAPSHOT", help="snapshot id/name or checkpoint id")

    fork = cmds.add_parser("fork", parents=[common], help="copy a thread into a new one")
    fork.add_argument("thread_id", metavar="ID")
    fork.add_argument("snapshot", metavar="SNAPSHOT", nargs="?", help="default: the head")
    fork.add_argument("--to", metavar="NEW_ID", help="id of the new thread (default: generated)")

    prune = cmds.add_parser("prune", parents=[common], help="drop redundant checkpoints")
    prune.add_argument("thread_ids", metavar="ID", nargs="*", help="default: every thread")
    cmds.add_parser("vacuum", parents=[common], help="reclaim free space in the database")

    emulator = top.add_parser(
        "emulator", add_help=False, help="run the bundled Kimi API emulator (--help for options)"
    )
    emulator.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _echo(text: str, *, err: bool = False) -> None:
    (sys.stderr if err else sys.stdout).write(text + "\n")


def _print_json(value: Any) -> None:
    _echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _list(store: ThreadStore, args: argparse.Namespace) -> None:
    rows = store.list_threads()
    if args.json:
        _print_json([asdict(r) for r in rows])
    else:
        _echo(render.thread_table(rows))


def _show(store: ThreadStore, args: argparse.Namespace) -> None:
    detail = store.show(args.thread_id)
    if args.json:
        _print_json(render.detail_json(detail))
    else:
        _echo(render.transcript(detail, width=None if args.full else 240))


def _export(store: ThreadStore, args: argparse.Namespace) -> None:
    messages = store.messages(args.thread_id)
    if args.format == "md":
        text = render.markdown(args.thread_id, messages)
    else:
        text = render.jsonl(messages)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ThreadStoreError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
        _echo(f"wrote {len(messages)} messages to {args.output}", err=True)
    else:
        sys.stdout.write(text)


def _rollback(store: ThreadStore, args: argparse.Namespace) -> None:
    head = store.rollback(args.thread_id, args.snapshot)
    result = {"thread_id": args.thread_id, "rolled_back_to": args.snapshot, "head": head}
    if args.json:
        _print_json(result)
    else:
        _echo(f"{args.thread_id}: rolled back to {args.snapshot} (new head {head})")


def _fork(store: ThreadStore, args: argparse.Namespace) -> None:
    new = store.fork(args.thread_id, args.snapshot, new_id=args.to)
    at = args.snapshot or "head"
    if args.json:
        _print_json({"thread_id": args.thread_id, "at": at, "fork": new})
    else:
        _echo(f"{args.thread_id} ({at}) forked into {new}")


def _prune(store: ThreadStore, args: argparse.Namespace) -> None:
    before = store.size_bytes()
    pruned = store.prune(args.thread_ids)
    if args.json:
        _print_json({"pruned": pruned, "bytes_before": before, "bytes_after": store.size_bytes()})
    else:
        _echo(f"pruned {len(pruned)} thread(s); run `{PROG} threads vacuum` to shrink the file")


def _vacuum(store: ThreadStore, args: argparse.Namespace) -> None:
    before, after = store.vacuum()
    if args.json:
        _print_json({"bytes_before": before, "bytes_after": after})
    else:
        _echo(f"vacuumed: {before:,} -> {after:,} bytes")


_COMMANDS: dict[str, Callable[[ThreadStore, argparse.Namespace], None]] = {
    "list": _list,
    "show": _show,
    "export": _export,
    "rollback": _rollback,
    "fork": _fork,
    "prune": _prune,
    "vacuum": _vacuum,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0, or 2 for a usage or database error (one line on stderr).

    Example:
        >>> main(["threads", "list", "--db", "/nonexistent/checkpoints.sqlite"])
        2
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.group == "emulator":
        from langchain_kimi_context.testing.__main__ import main as emulator_main

        return emulator_main([*extra, *args.args])
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.json = getattr(args, "json", False)
    try:
        with ThreadStore(getattr(args, "db", None)) as store:
            _COMMANDS[args.command](store, args)
    except (ThreadStoreError, KimiSessionError, KimiConfigurationError) as exc:
        _echo(f"{PROG}: error: {_first_line(exc)}", err=True)
        return EXIT_ERROR
    except sqlite3.Error as exc:
        _echo(f"{PROG}: error: database error: {_first_line(exc)}", err=True)
        return EXIT_ERROR
    except BrokenPipeError:  # `kimi-context threads export ID | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except Exception as exc:
        if os.environ.get(DEBUG_ENV_VAR):
            raise
        _echo(
            f"{PROG}: error: {type(exc).__name__}: {_first_line(exc)} "
            f"(set {DEBUG_ENV_VAR}=1 for the traceback)",
            err=True,
        )
        return EXIT_ERROR
    return 0
