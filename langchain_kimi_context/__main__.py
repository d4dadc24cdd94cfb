"""``python -m langchain_kimi_context``: the ``kimi-context`` command line."""

from langchain_kimi_context.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
