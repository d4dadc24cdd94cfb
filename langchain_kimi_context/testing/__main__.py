"""Run the Kimi emulator from the shell: ``python -m langchain_kimi_context.testing``.

Prints the base URL and API key, then serves until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from langchain_kimi_context.testing.server import DEFAULT_API_KEY, KimiEmulator


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="python -m langchain_kimi_context.testing",
        description="Offline Kimi (Moonshot) API emulator on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="accepted API key")
    parser.add_argument(
        "--accept-any-key", action="store_true", help="accept any non-empty API key"
    )
    parser.add_argument(
        "--stream-usage-mode",
        choices=["final_chunk", "in_choice", "both"],
        default="final_chunk",
        help="where streamed replies carry usage",
    )
    parser.add_argument(
        "--catalog",
        choices=["current", "legacy"],
        default="current",
        help="today's models and rules (default) or the retired 2025 catalog (moonshot-v1)",
    )
    parser.add_argument(
        "--nested-cached-tokens",
        action="store_true",
        help="also send usage.prompt_tokens_details.cached_tokens",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Start the emulator and block until interrupted.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.

    Example:
        >>> main(["--help"])  # doctest: +SKIP
    """
    args = build_parser().parse_args(argv)
    emu = KimiEmulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        accept_any_key=args.accept_any_key,
        stream_usage_mode=args.stream_usage_mode,
        nested_cached_tokens=args.nested_cached_tokens,
        catalog=args.catalog,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    emu.start()
    sys.stdout.write(emu.base_url + "\n")
    sys.stdout.flush()
    sys.stderr.write(f"MOONSHOT_BASE_URL={emu.base_url}\nMOONSHOT_API_KEY={emu.api_key}\n")
    sys.stderr.flush()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
