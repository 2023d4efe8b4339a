"""Redirect URIs an app may register (RFC 6749 section 3.1.2, RFC 9700 section 4.1).

Registered URIs are compared with the one a request names by exact string match, so what is
accepted here is what the browser will be sent to: https anywhere, http only on the loopback
interface (RFC 8252 section 7.3, native apps), never a fragment, a wildcard or credentials.
The same rule checks back-channel logout URIs and post-logout redirect URIs.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from watchword.domain.errors import InvalidInput

MAX_URI_LENGTH = 2048
MAX_URIS = 10
LOOPBACK_HOSTS = frozenset({"localhost"})


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_uri(uri: str, what: str = "redirect URI") -> str:
    """``uri`` when an app may register it, else ``InvalidInput`` saying why."""
    if not uri or len(uri) > MAX_URI_LENGTH:
        raise InvalidInput(f"A {what} is 1 to {MAX_URI_LENGTH} characters.")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in uri):
        raise InvalidInput(f"The {what} {uri!r} contains spaces, control characters or '\\'.")
    if "*" in uri:
        raise InvalidInput(f"The {what} {uri!r} has a wildcard: register each URI exactly.")
    if "#" in uri:
        raise InvalidInput(f"The {what} {uri!r} has a fragment, which RFC 6749 3.1.2 forbids.")
    try:
        parts = urlsplit(uri)
        port = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise InvalidInput(f"The {what} {uri!r} is not a valid URL.") from exc
    del port
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidInput(f"The {what} {uri!r} must be an absolute https URL.")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(f"The {what} {uri!r} carries credentials.")
    if parts.scheme == "http" and not _is_loopback(host):
        raise InvalidInput(
            f"The {what} {uri!r} uses http: only https, or http on the loopback interface "
            "(127.0.0.1, [::1], localhost), is allowed."
        )
    return uri


def check_uris(uris: list[str] | tuple[str, ...], what: str = "redirect URI") -> tuple[str, ...]:
    if len(uris) > MAX_URIS:
        raise InvalidInput(f"Register at most {MAX_URIS} of them ({what}).")
    checked: list[str] = []
    for uri in uris:
        if check_uri(uri, what) not in checked:
            checked.append(uri)
    return tuple(checked)


def origin_of(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"
