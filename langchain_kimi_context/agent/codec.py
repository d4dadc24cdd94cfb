"""Compressed checkpoint blobs: the ``zlibd1`` codec and the default serializer.

Checkpoint blobs go through LangGraph's
:class:`~langgraph.checkpoint.serde.encrypted.EncryptedSerializer`, which tags each blob
with the name of the codec that wrote it. :class:`ZlibCodec` writes ``zlibd1`` (zlib
against the preset dictionary of the package's checkpoint structure) for blobs of at
least ``min_bytes`` and ``raw`` below that; it reads ``zlibd1``, plain ``zlib`` and
``raw``, and blobs written without the wrapper load through the wrapped serializer. The
codec names are part of the storage format: a new encoding gets a new name.
"""

from __future__ import annotations

import zlib

from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from langchain_kimi_context.agent._zdict import ZDICT_V1

__all__ = ["ZlibCodec", "compressed_serde"]


def compressed_serde() -> EncryptedSerializer:
    """The default serializer of the SQLite saver: JSON-plus blobs through :class:`ZlibCodec`.

    Returns:
        ``EncryptedSerializer(ZlibCodec(), JsonPlusSerializer())``.
    """
    return EncryptedSerializer(ZlibCodec(), JsonPlusSerializer())


class ZlibCodec:
    """A ``CipherProtocol`` codec that zlib-compresses checkpoint payloads.

    Plugged into LangGraph's own
    :class:`~langgraph.checkpoint.serde.encrypted.EncryptedSerializer` (which tags each
    blob with the codec name), it compresses blobs of at least ``min_bytes`` against a
    preset dictionary of the package's checkpoint structure (codec ``zlibd1``; small
    blobs shrink 3x more than with plain zlib) and stores smaller ones as they are.
    Blobs written without it, or with plain ``zlib``, still load.

    Args:
        level: zlib level (1 = fastest).
        min_bytes: Smaller payloads are stored uncompressed.
    """

    def __init__(self, level: int = 1, min_bytes: int = 64) -> None:
        self.level = level
        self.min_bytes = min_bytes

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        """Compress ``plaintext`` (the serializer's "encrypt" hook).

        Args:
            plaintext: The serialised blob.

        Returns:
            ``("zlibd1", compressed)`` or ``("raw", plaintext)`` for small blobs.
        """
        if len(plaintext) < self.min_bytes:
            return "raw", plaintext
        comp = zlib.compressobj(self.level, zdict=ZDICT_V1)
        return "zlibd1", comp.compress(plaintext) + comp.flush()

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        """Decompress a blob written by :meth:`encrypt`.

        Args:
            ciphername: ``"zlibd1"``, ``"zlib"`` or ``"raw"``.
            ciphertext: The stored bytes.

        Returns:
            The serialised blob.

        Raises:
            ValueError: Unknown codec name.
        """
        if ciphername == "zlibd1":
            decomp = zlib.decompressobj(zdict=ZDICT_V1)
            return decomp.decompress(ciphertext) + decomp.flush()
        if ciphername == "zlib":
            return zlib.decompress(ciphertext)
        if ciphername == "raw":
            return ciphertext
        raise ValueError(
            f"Unknown checkpoint codec {ciphername!r} (expected 'zlibd1', 'zlib' or 'raw')"
        )
