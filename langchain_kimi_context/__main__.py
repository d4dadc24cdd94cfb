"""``python -m langchain_kimi_context``: the ``kimi-context`` command line.

Example:
    >>> from langchain_kimi_context.cli import build_parser
    >>> build_parser().prog
    'kimi-context'
"""

from langchain_kimi_context.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
