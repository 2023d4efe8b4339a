"""Who the client is, decided once: the TCP peer, unless that peer is a trusted proxy.

Rate limits, the audit trail, session device data, socket handshakes and the /api/v1 surface
all key on this address, so a client that could choose it could sign in forever and write what
it likes into the audit trail. Forwarding headers are therefore read only when the TCP peer is
in ``WATCHWORD_TRUSTED_PROXIES``, and then from the right: each trusted proxy appends the
address it saw, so the rightmost address that is not itself a trusted proxy is the client.
Anything further left was written by the client. RFC 7239 ``Forwarded`` is read the same way
and wins over ``X-Forwarded-For`` when both are present (it is the standard).

``watchword serve`` turns uvicorn's own proxy-header rewriting off: this is the only place.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

SCOPE_KEY = "watchword.client_address"
MAX_HOPS = 32  # a header longer than this is not from a real proxy chain


def _parse(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address in network for network in networks)


def forwarded_for(values: Iterable[str]) -> list[str]:
    """The ``for=`` nodes of RFC 7239 ``Forwarded`` header values, in order, as written:
    quotes, brackets around IPv6 and ports removed; obfuscated or ``unknown`` nodes kept as
    they are (they parse as no address)."""
    nodes: list[str] = []
    for value in values:
        for element in value.split(","):
            for pair in element.split(";"):
                name, _, raw = pair.strip().partition("=")
                if name.strip().lower() != "for":
                    continue
                node = raw.strip().strip('"')
                if node.startswith("["):  # "[2001:db8::1]:4711"
                    node = node[1:].partition("]")[0]
                elif node.count(":") == 1:  # "192.0.2.1:4711"
                    node = node.partition(":")[0]
                nodes.append(node)
    return nodes


def x_forwarded_for(values: Iterable[str]) -> list[str]:
    return [hop.strip() for value in values for hop in value.split(",") if hop.strip()]


def resolve(
    peer: str | None,
    hops: Sequence[str],
    networks: Sequence[Network],
    *,
    any_peer: bool = False,
) -> str | None:
    """The client's address, given the TCP ``peer`` and the forwarded ``hops`` (leftmost
    first). ``hops`` count only when the peer is a trusted proxy; ``any_peer`` (the deprecated
    WATCHWORD_TRUST_FORWARDED_FOR) trusts every peer, but no hop it did not add itself."""
    peer_address = _parse(peer) if peer else None
    if peer_address is None or not hops:
        return peer
    if not any_peer and not _trusted(peer_address, networks):
        return peer
    closest = peer
    for hop in reversed(hops[-MAX_HOPS:]):
        address = _parse(hop)
        if address is None:
            # "unknown" or an obfuscated node: the last proxy we trust is all we know.
            return closest
        if not _trusted(address, networks):
            return str(address)
        closest = str(address)
    return closest  # every hop is a trusted proxy: the leftmost one is the client


def client_address(
    conn: HTTPConnection, networks: Sequence[Network], *, any_peer: bool = False
) -> str | None:
    """The client's address for this request or socket (computed once per connection)."""
    scope = conn.scope
    cached = scope.get(SCOPE_KEY)
    if cached is not None:
        return str(cached) or None
    peer = conn.client.host if conn.client else None
    hops: list[str] = []
    if networks or any_peer:
        headers = conn.headers
        forwarded = headers.getlist("forwarded")
        hops = (
            forwarded_for(forwarded)
            if forwarded
            else x_forwarded_for(headers.getlist("x-forwarded-for"))
        )
    address = resolve(peer, hops, networks, any_peer=any_peer)
    if address is not None:
        address = address[:64]
    scope[SCOPE_KEY] = address or ""
    return address
