"""Deterministic prose of an exact token count (the emulator's filler text).

Contract: :func:`deterministic_text` returns the same words for the same ``(n_tokens,
seed)`` and exactly ``n_tokens`` tokens of
:class:`~langchain_kimi_context.testing.tokenizer.EmulatorTokenizer`. Pure.
"""

from __future__ import annotations

import hashlib
import random

_WORDS = [
    "alpha",
    "bravo",
    "cedar",
    "delta",
    "ember",
    "fable",
    "grove",
    "harbor",
    "island",
    "jasper",
    "kettle",
    "lantern",
    "meadow",
    "nectar",
    "orbit",
    "pillar",
    "quartz",
    "river",
    "saddle",
    "timber",
    "umber",
    "valley",
    "willow",
    "yonder",
    "zephyr",
    "anchor",
    "basalt",
    "canyon",
    "drift",
    "echo",
    "falcon",
    "garnet",
    "hollow",
    "ivory",
    "juniper",
    "kindle",
    "lumen",
    "marble",
    "north",
    "opal",
    "prism",
    "quiver",
    "ridge",
    "stone",
    "tundra",
    "upland",
    "vapor",
    "wander",
    "yarrow",
    "zenith",
    "amber",
    "birch",
    "coral",
    "dune",
]


def deterministic_text(n_tokens: int, seed: str = "") -> str:
    """Return prose of exactly ``n_tokens`` tokens of the emulator's tokenizer.

    Args:
        n_tokens: Token count (0 gives ``""``).
        seed: Varies the words deterministically.

    Returns:
        The text.

    Example:
        >>> deterministic_text(4, "x")
        'prism saddle birch.'
        >>> from langchain_kimi_context.testing import EmulatorTokenizer
        >>> EmulatorTokenizer().count_text(deterministic_text(250, "seed"))
        250
    """
    if n_tokens <= 0:
        return ""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    words = rng.choices(_WORDS, k=n_tokens)
    if n_tokens == 1:
        return words[0]
    return " ".join(words[:-1]) + "."
