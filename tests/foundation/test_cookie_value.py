"""The session cookie is read from the Cookie header by Starlette's rules (pairs split on ';',
surrounding quotes dropped, the last pair of a repeated name wins), whichever way the header
is written: the fast reading of the usual header gives what parsing every pair gives."""

from __future__ import annotations

import random

from watchword.web.authn import cookie_value

NAME = "sid"


def by_pairs(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    """The rule, written plainly: every pair of every Cookie header, the last match wins."""
    value = None
    for header, raw in headers:
        if header == b"cookie":
            for pair in raw.decode("latin-1").split(";"):
                pair = pair.strip()
                if pair.startswith(name + "="):
                    value = pair[len(name) + 1 :].strip().strip('"')
    return value


def read(*cookie_headers: str) -> str | None:
    headers = [(b"host", b"example.com")]
    headers += [(b"cookie", raw.encode("latin-1")) for raw in cookie_headers]
    return cookie_value({"headers": headers}, f"{NAME}=".encode())


def test_the_usual_headers_are_read_as_the_rule_reads_them() -> None:
    assert read("sid=abc") == "abc"
    assert read("theme=dark; sid=abc; lang=en") == "abc"
    assert read("theme=dark;sid=abc") == "abc"
    assert read('sid="abc"') == "abc"
    assert read("sid=old; sid=new") == "new"
    assert read("sid=one", "sid=two") == "two"
    assert read("sid=one", "theme=dark") == "one"
    assert read("theme=dark") is None
    assert read() is None


def test_a_name_inside_another_cookie_is_not_the_session_cookie() -> None:
    assert read("xsid=forged") is None
    assert read("sid=real; xsid=forged") == "real"
    assert read("sid=real; note=a sid=forged") == "real"
    assert read("sid=real;  sid=spaced") == "spaced"
    assert read("note=x=sid=forged") is None


def test_any_header_is_read_as_the_rule_reads_it() -> None:
    pieces = ["sid", "xsid", "sid=", ";sid=", "; sid=", " ", ";", "; ", "=", "v", '"', "\t"]
    pieces += ["\xa0", 'q="a;sid=b"', "sid ", " sid"]
    rng = random.Random(20261207)
    for _ in range(20_000):
        headers = [
            "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
            for _ in range(rng.randint(1, 2))
        ]
        raw = [(b"cookie", h.encode("latin-1")) for h in headers]
        assert read(*headers) == by_pairs(raw, NAME), headers
