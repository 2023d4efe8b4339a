"""Opaque secrets are stored as their SHA-256: whichever implementation hashes a secret of a
given length (CPython's own for one block, OpenSSL's for longer), the digest is the standard
one, so a secret stored by one is found by the other."""

from __future__ import annotations

import hashlib

from watchword.domain.clock import ONE_BLOCK, sha256_digest, sha256_hex


def test_every_length_around_one_block_hashes_to_the_standard_digest() -> None:
    for length in (0, 1, 43, ONE_BLOCK - 1, ONE_BLOCK, ONE_BLOCK + 1, 64, 65, 700):
        data = bytes(range(256))[:length] if length <= 256 else b"x" * length
        assert sha256_digest(data) == hashlib.sha256(data).digest(), length
        text = "s" * length
        assert sha256_hex(text) == hashlib.sha256(text.encode()).hexdigest(), length
