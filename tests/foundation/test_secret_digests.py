"""Opaque secrets are stored as their SHA-256: whichever implementation hashes a secret of a
given length (CPython's own for a short secret, OpenSSL's for a longer one), the digest is the
standard one, so a secret stored by one is found by the other."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from watchword.domain.clock import SHORT_SECRET, sha256_digest, sha256_hex


def test_every_length_around_the_short_secret_limit_hashes_to_the_standard_digest() -> None:
    lengths = (0, 1, 43, 55, 56, 64, 68, SHORT_SECRET - 1, SHORT_SECRET, SHORT_SECRET + 1, 700)
    for length in lengths:
        data = bytes(range(256))[:length] if length <= 256 else b"x" * length
        assert sha256_digest(data) == hashlib.sha256(data).digest(), length
        text = "s" * length
        assert sha256_hex(text) == hashlib.sha256(text.encode()).hexdigest(), length


def test_a_python_without_its_own_sha256_hashes_with_openssl() -> None:
    # In a fresh interpreter where CPython's SHA-256 module cannot be imported.
    program = (
        "import sys; sys.modules['_sha256'] = sys.modules['_sha2'] = None\n"
        "import hashlib\n"
        "from watchword.domain import clock\n"
        "assert clock._cpython_sha256 is hashlib.sha256\n"
        "print(clock.sha256_hex('abc'))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == hashlib.sha256(b"abc").hexdigest()
