"""The client's address cannot be forged: forwarding headers count only from trusted proxies."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import ClientFactory
from tests.helpers import TEST_SECRET_KEY, WATCHWORD, free_port, wait_until_serving
from watchword.web.client_address import forwarded_for, resolve

TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


def test_headers_from_an_untrusted_peer_are_ignored() -> None:
    assert resolve("198.51.100.7", ["1.2.3.4"], TRUSTED) == "198.51.100.7"
    assert resolve("127.0.0.1", ["1.2.3.4"], []) == "127.0.0.1"


def test_the_rightmost_address_that_is_not_a_trusted_proxy_is_the_client() -> None:
    # The client wrote 6.6.6.6 itself; 1.2.3.4 is what our first proxy saw.
    assert resolve("127.0.0.1", ["6.6.6.6", "1.2.3.4", "10.1.2.3"], TRUSTED) == "1.2.3.4"
    assert resolve("127.0.0.1", ["10.9.9.9", "10.1.2.3"], TRUSTED) == "10.9.9.9"


def test_a_hop_that_is_no_address_stops_the_walk_at_the_last_trusted_proxy() -> None:
    assert resolve("127.0.0.1", ["1.2.3.4", "unknown", "10.1.2.3"], TRUSTED) == "10.1.2.3"
    assert resolve("127.0.0.1", ["1.2.3.4", "garbage"], TRUSTED) == "127.0.0.1"


def test_the_deprecated_alias_trusts_the_peer_but_no_hop_it_did_not_add() -> None:
    assert resolve("203.0.113.5", ["6.6.6.6", "1.2.3.4"], [], any_peer=True) == "1.2.3.4"


def test_forwarded_for_nodes_are_read_as_rfc_7239_writes_them() -> None:
    header = 'for=192.0.2.43:4711;proto=https, for="[2001:db8:cafe::17]:4711", for=unknown'
    assert forwarded_for([header]) == ["192.0.2.43", "2001:db8:cafe::17", "unknown"]
    assert forwarded_for(["by=10.0.0.1;For=198.51.100.17"]) == ["198.51.100.17"]


async def test_a_trusted_proxys_forwarded_header_names_the_client_in_the_audit_trail(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(trusted_proxies="127.0.0.1,10.0.0.0/8")
    await client.post(
        "/v1/auth/login",
        json={"email": "nobody@example.com", "password": "whatever1"},
        headers={"Forwarded": "for=6.6.6.6, for=198.51.100.17, for=10.0.0.2"},
    )
    events = await client.container.db.audit.tail(limit=1)
    assert events[0].ip == "198.51.100.17"


async def test_an_untrusted_peer_cannot_name_itself(client_factory: ClientFactory) -> None:
    client = await client_factory(trusted_proxies="10.0.0.0/8")  # the test peer is 127.0.0.1
    await client.post(
        "/v1/auth/login",
        json={"email": "nobody@example.com", "password": "whatever1"},
        headers={"X-Forwarded-For": "198.51.100.17", "Forwarded": "for=198.51.100.18"},
    )
    events = await client.container.db.audit.tail(limit=1)
    assert events[0].ip == "127.0.0.1"


def test_a_bad_trusted_proxy_is_a_configuration_error() -> None:
    from pydantic import ValidationError

    from watchword.config import Settings

    with pytest.raises(ValidationError, match="not an IP address or network"):
        Settings(trusted_proxies="10.0.0.0/8,proxy.example.com")


@pytest.mark.e2e
def test_forged_forwarded_for_does_not_escape_the_limit_of_a_served_node(tmp_path: Path) -> None:
    """The repro: 70 failed logins from 127.0.0.1, each naming another address, against
    `watchword serve` with no trusted proxy."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHWORD_", "API_"))}
    env.update(
        WATCHWORD_SECRET_KEY=TEST_SECRET_KEY,
        WATCHWORD_SECRET_KEY_FILE=str(tmp_path / "watchword.secret"),
        WATCHWORD_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/watchword.db",
    )
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [WATCHWORD, "serve", "--port", str(port)], cwd=tmp_path, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, url, output=lambda: (tmp_path / "serve.log").read_text())
        statuses = []
        with httpx.Client(base_url=url, timeout=30) as client:
            for n in range(70):
                response = client.post(
                    "/v1/auth/login",
                    json={"email": f"victim{n}@example.com", "password": "wrong-password"},
                    headers={"X-Forwarded-For": f"198.51.100.{n}"},
                )
                statuses.append(response.status_code)
        assert 429 in statuses, statuses
        assert statuses.index(429) <= 60  # the default 60/minute per address
        out = subprocess.run(
            [WATCHWORD, "audit", "tail", "--limit", "70", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout.decode()
        assert "198.51.100." not in out
        assert "127.0.0.1" in out
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def test_the_deprecated_alias_and_a_clear_text_public_url_are_warned_about_at_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from watchword.cli import _warn_about_edges
    from watchword.config import Settings

    _warn_about_edges(Settings(trust_forwarded_for=True), "127.0.0.1")
    assert "WATCHWORD_TRUSTED_PROXIES" in capsys.readouterr().err
    _warn_about_edges(Settings(public_url="http://auth.example.com"), "0.0.0.0")
    assert "https://" in capsys.readouterr().err
    _warn_about_edges(Settings(public_url="http://127.0.0.1:8000"), "127.0.0.1")
    _warn_about_edges(Settings(public_url="https://auth.example.com"), "0.0.0.0")
    assert capsys.readouterr().err == ""
