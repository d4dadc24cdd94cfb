"""Tokenizer vocabularies: Kimi's ``tiktoken.model`` files and named tiktoken encodings.

Contract: :func:`load_kimi_encoding` builds a ``tiktoken.Encoding`` from a Kimi vocabulary
file with Kimi's split pattern (:data:`KIMI_PAT_STR`) and special tokens, cached per file
content; a missing or malformed file raises
:class:`~langchain_kimi_context.errors.KimiConfigurationError`. Named encodings load
through tiktoken's registry (offline cache first); a failure is remembered per name, so
an offline machine does not retry the download on every counter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_kimi_context.errors import KimiConfigurationError

if TYPE_CHECKING:
    import tiktoken


logger = logging.getLogger("langchain_kimi_context.tokens")

#: Environment variable naming a Kimi ``tiktoken.model`` vocabulary file.
KIMI_TOKENIZER_PATH_ENV = "KIMI_TOKENIZER_PATH"

#: The pre-tokenisation split pattern of Kimi's tiktoken tokenizer (``tokenization_kimi.py``
#: in the MoonshotAI Kimi-K2 model repositories). Han runs are split from other letters.
KIMI_PAT_STR = "|".join(
    [
        r"""[\p{Han}]+""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*"""
        r"""[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+"""
        r"""[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

#: Kimi reserves this many special-token ids after the mergeable ranks (plus two).
_KIMI_NUM_RESERVED_SPECIAL = 256


_named_lock = threading.Lock()
_named_failures: dict[str, str] = {}


def _load_named_encoding(name: str, timeout: float) -> tiktoken.Encoding:
    import tiktoken
    import tiktoken.registry

    loaded = tiktoken.registry.ENCODINGS.get(name)
    if loaded is not None:
        return loaded
    with _named_lock:
        if name in _named_failures:
            raise LookupError(_named_failures[name])
    result: dict[str, Any] = {}

    def load() -> None:
        try:
            result["encoding"] = tiktoken.get_encoding(name)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=load, name=f"tiktoken-load-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if "encoding" in result:
        encoding: tiktoken.Encoding = result["encoding"]
        return encoding
    if thread.is_alive():
        reason = (
            f"tiktoken encoding {name!r} is not cached and could not be downloaded within "
            f"{timeout:g}s (offline?)"
        )
    else:
        error = result.get("error")
        reason = f"tiktoken encoding {name!r} could not be loaded ({type(error).__name__})"
    with _named_lock:
        _named_failures[name] = reason
    raise LookupError(reason)


_kimi_lock = threading.Lock()
_kimi_encodings: dict[tuple[str, str], tiktoken.Encoding] = {}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _kimi_special_token_names(vocab: Path) -> dict[int, str]:
    """Read ``added_tokens_decoder`` from a ``tokenizer_config.json`` next to ``vocab``."""
    config = vocab.with_name("tokenizer_config.json")
    if not config.is_file():
        return {}
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        decoder = data.get("added_tokens_decoder") or {}
        return {int(i): str(tok["content"]) for i, tok in decoder.items() if "content" in tok}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        logger.warning("ignoring unreadable %s: %s", config, exc)
        return {}


def load_kimi_encoding(path: str | os.PathLike[str]) -> tiktoken.Encoding:
    """Load a Kimi ``tiktoken.model`` vocabulary as a ``tiktoken.Encoding``.

    The file has one ``<base64 token> <rank>`` per line (as shipped in the MoonshotAI
    Kimi-K2 model repositories). It is parsed with ``tiktoken.load.load_tiktoken_bpe``;
    the split pattern is Kimi's (:data:`KIMI_PAT_STR`) and the 258 special-token ids
    after the ranks are named from a ``tokenizer_config.json`` in the same folder when
    present (reserved names otherwise), like Kimi's own tokenizer does. Loaded
    encodings are kept per (path, file hash), so a replaced file is reloaded.

    Args:
        path: Path of the ``tiktoken.model`` file.

    Returns:
        The encoding.

    Raises:
        KimiConfigurationError: The file does not exist or is not a tiktoken vocabulary.
    """
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    vocab = Path(path).expanduser()
    if not vocab.is_file():
        raise KimiConfigurationError(
            f"Kimi tokenizer vocabulary not found at {str(vocab)!r}: point vocab_path (or "
            f"{KIMI_TOKENIZER_PATH_ENV}) at the tiktoken.model file of a Kimi model "
            f"repository (e.g. moonshotai/Kimi-K2-Instruct)."
        )
    digest = _sha256_file(vocab)
    cache_key = (str(vocab.resolve()), digest)
    with _kimi_lock:
        cached = _kimi_encodings.get(cache_key)
    if cached is not None:
        return cached
    try:
        # The expected hash makes tiktoken's path-keyed cache notice a replaced file.
        ranks = load_tiktoken_bpe(str(vocab), expected_hash=digest)
    except ValueError as exc:
        raise KimiConfigurationError(
            f"{str(vocab)!r} is not a tiktoken vocabulary (expected lines of "
            f"'<base64 token> <rank>'): {exc}"
        ) from exc
    if not ranks:
        raise KimiConfigurationError(f"Kimi tokenizer vocabulary {str(vocab)!r} is empty.")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise KimiConfigurationError(
            f"{str(vocab)!r} lacks {len(missing)} single-byte tokens (e.g. byte {missing[0]}); "
            f"a byte-level BPE vocabulary needs all 256."
        )
    base = max(ranks.values()) + 1
    names = _kimi_special_token_names(vocab)
    specials = {
        names.get(i, f"<|reserved_token_{i}|>"): i
        for i in range(base, base + _KIMI_NUM_RESERVED_SPECIAL + 2)
    }
    encoding = tiktoken.Encoding(
        name=vocab.name, pat_str=KIMI_PAT_STR, mergeable_ranks=ranks, special_tokens=specials
    )
    with _kimi_lock:
        _kimi_encodings[cache_key] = encoding
    return encoding
