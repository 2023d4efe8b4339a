"""`cluster check` flags nodes that cannot serve each other's users."""

from __future__ import annotations

from watchword.services.cluster import agreement

ISSUER = "https://auth.example.com"


def node(issuer: str = ISSUER, key: str = "k1", alive: bool = True) -> dict[str, object]:
    return {"issuer": issuer, "key": key, "alive": alive}


def test_nodes_sharing_key_and_issuer_agree() -> None:
    state = agreement([node(), node()], ISSUER, "k1")
    assert state == {"ok": True, "issuer": ISSUER, "nodes": 2}


def test_a_node_with_another_master_key_is_named() -> None:
    state = agreement([node(), node(key="k2")], ISSUER, "k1")
    assert state["ok"] is False and "master keys" in state["error"]


def test_nodes_with_their_own_issuers_are_told_to_share_the_public_url() -> None:
    state = agreement([node(issuer="http://10.0.0.2:8000")], ISSUER, "k1")
    assert state["ok"] is False and "WATCHWORD_PUBLIC_URL" in state["error"]


def test_nodes_gone_quiet_do_not_count() -> None:
    state = agreement([node(), node(key="old", alive=False)], ISSUER, "k1")
    assert state["ok"] is True and state["nodes"] == 1
