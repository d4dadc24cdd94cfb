"""The approximate tokenizer backend: no vocabulary, CJK-aware, calibratable.

Contract: :class:`ApproximateBackend` counts about one token per Han / Kana / Hangul
character and about four characters per token for Latin text, in one pass over byte
class tables; it is deterministic, never needs the network and is the fallback when no
vocabulary is configured (a ``TokenCalibrator`` corrects its bias).
"""

from __future__ import annotations

from dataclasses import dataclass

from langchain_kimi_context.errors import KimiConfigurationError


def _class_tables() -> tuple[bytes, bytes, dict[bytes, bytes]]:
    """Byte tables of the approximate backend.

    The text is UTF-8 encoded and every character mapped to one class byte (UTF-8
    continuation bytes are deleted): ``a`` ASCII letter or ``_``, ``0`` digit, ``p``
    ASCII punctuation, ``s`` space/tab, ``n`` line break, ``o`` a 2-byte character
    (accented Latin, Greek, Cyrillic, Hebrew, Arabic), ``C`` a 3-byte character (Han,
    Kana, Hangul, CJK and full-width punctuation, other BMP symbols), ``E`` a 4-byte
    character (emoji, rare Han). Per class, a mask table gives 0/1 bytes whose
    big-endian integer lets runs be counted with shifts and ``int.bit_count`` at C speed
    (``bits & ~(bits >> 8)`` keeps the first character of each run).
    """
    table = bytearray(256)
    for b in range(256):
        ch = chr(b)
        if b < 128:
            if ch.isalpha() or ch == "_":
                table[b] = ord("a")
            elif ch.isdigit():
                table[b] = ord("0")
            elif ch in "\r\n":
                table[b] = ord("n")
            elif ch.isspace():
                table[b] = ord("s")
            else:
                table[b] = ord("p")
        elif b < 0xC0:
            table[b] = ord("x")  # continuation byte: deleted
        elif b < 0xE0:
            table[b] = ord("o")
        elif b < 0xF0:
            table[b] = ord("C")
        else:
            table[b] = ord("E")
    masks = {}
    for cls in (b"a", b"0", b"p", b"s", b"n", b"o"):
        mask = bytearray(256)
        mask[cls[0]] = 1
        masks[cls] = bytes(mask)
    return bytes(table), bytes(range(0x80, 0xC0)), masks


_CLASS_TABLE, _CONTINUATION, _CLASS_MASKS = _class_tables()


@dataclass(frozen=True)
class ApproximateBackend:
    r"""Vocabulary-free token estimate that handles CJK text and code sensibly.

    Counts, per text: one token per Han / Kana / Hangul / full-width character (any
    3-byte UTF-8 character); one per run of ASCII letters (and ``_``), plus one per
    ``ascii_chars_per_token`` letters beyond the fifth (long words split); digit runs
    in groups of three (as BPE tokenizers split them); punctuation runs, runs of
    2-byte characters (Cyrillic, Greek, accented Latin), line breaks and indentation
    similarly. Single spaces between words are free (BPE merges them into the next
    word). All of it runs at C speed (one UTF-8 encode, byte translations and big-int
    bit counts), so a 1 MB history costs a few milliseconds. Every rate is a field, and
    a :class:`TokenCalibrator` corrects the remaining per-session bias.

    Attributes:
        cjk_tokens_per_char: Tokens per 3-byte character (Han, Kana, Hangul, ...);
            0.6 follows Moonshot's "one token is about 1.5 to 2 Chinese characters".
        ascii_chars_per_token: Letters per extra token beyond the 5th letter of a word.
        digits_per_token: Digits per token inside a digit run.
        punct_chars_per_token: Extra characters per token inside a punctuation run.
        other_chars_per_token: Extra characters per token in runs of 2-byte characters.
        spaces_per_token: Characters per token in runs of two or more spaces/tabs.
        astral_tokens_per_char: Tokens per 4-byte character (emoji, rare Han).

    Example:
        >>> backend = ApproximateBackend()
        >>> backend.count("你好世界"), backend.count("hello world")
        (2, 2)
        >>> backend.count("def f(x):\n    return x + 1\n")
        12
    """

    cjk_tokens_per_char: float = 0.6
    ascii_chars_per_token: float = 4.0
    digits_per_token: float = 3.0
    punct_chars_per_token: float = 3.0
    other_chars_per_token: float = 3.0
    spaces_per_token: float = 8.0
    astral_tokens_per_char: float = 2.0

    def __post_init__(self) -> None:
        for label in (
            "ascii_chars_per_token",
            "digits_per_token",
            "punct_chars_per_token",
            "other_chars_per_token",
            "spaces_per_token",
        ):
            if not getattr(self, label) > 0:
                raise KimiConfigurationError(
                    f"ApproximateBackend: {label} must be > 0, got {getattr(self, label)}."
                )
        for label in ("cjk_tokens_per_char", "astral_tokens_per_char"):
            if not getattr(self, label) >= 0:
                raise KimiConfigurationError(
                    f"ApproximateBackend: {label} must be >= 0, got {getattr(self, label)}."
                )

    @property
    def name(self) -> str:
        """Backend description."""
        return "approximate"

    @property
    def exact(self) -> bool:
        """Always ``False``: counts are estimates."""
        return False

    def count(self, text: str) -> int:
        """Return the estimated number of tokens of ``text``.

        Args:
            text: Any string.

        Returns:
            The estimate (at least 1 for non-empty text).
        """
        if not text:
            return 0
        classes = text.encode("utf-8", "surrogatepass").translate(_CLASS_TABLE, _CONTINUATION)
        count = classes.count
        masks = _CLASS_MASKS
        from_bytes = int.from_bytes
        total = 0.0
        letters = count(b"a")
        if letters:
            bits = from_bytes(classes.translate(masks[b"a"]), "big")
            total += (bits & ~(bits >> 8)).bit_count()  # runs
            if letters >= 6:
                # Sum of max(0, L - 5) over runs = positions that end 6 letters in a row.
                two = bits & (bits >> 8)
                six = two & (two >> 16) & (two >> 32)
                total += six.bit_count() / self.ascii_chars_per_token
        chars = count(b"0")
        if chars:
            bits = from_bytes(classes.translate(masks[b"0"]), "big")
            runs = (bits & ~(bits >> 8)).bit_count()
            total += runs + (chars - runs) / self.digits_per_token
        chars = count(b"p")
        if chars:
            bits = from_bytes(classes.translate(masks[b"p"]), "big")
            runs = (bits & ~(bits >> 8)).bit_count()
            total += runs + (chars - runs) / self.punct_chars_per_token
        chars = count(b"o")
        if chars:
            bits = from_bytes(classes.translate(masks[b"o"]), "big")
            runs = (bits & ~(bits >> 8)).bit_count()
            total += runs + (chars - runs) / self.other_chars_per_token
        chars = count(b"n")
        if chars:
            bits = from_bytes(classes.translate(masks[b"n"]), "big")
            total += (bits & ~(bits >> 8)).bit_count()
        if count(b"s") > 1:
            bits = from_bytes(classes.translate(masks[b"s"]), "big")
            pairs = bits & (bits >> 8)  # spaces that follow a space
            if pairs:
                runs = (pairs & ~(pairs >> 8)).bit_count()
                total += pairs.bit_count() / self.spaces_per_token + 0.5 * runs
        total += count(b"C") * self.cjk_tokens_per_char
        total += count(b"E") * self.astral_tokens_per_char
        return max(1, round(total))
