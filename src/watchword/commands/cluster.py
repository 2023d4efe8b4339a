"""`watchword cluster check`: each dependency's state and the nodes the cluster can see.

Runs with the same settings as `watchword serve`; it needs no running node, and lists the
running ones from their Redis heartbeats. Exit status 1 when a required dependency is down.
"""

from __future__ import annotations

import argparse
from typing import Any

from watchword.commands.output import CliError, emit
from watchword.services.cluster import agreement
from watchword.services.container import Container


async def cluster_check(args: argparse.Namespace, c: Container) -> None:
    deps: dict[str, dict[str, Any]] = {}
    try:
        await c.db.ping()
        deps["database"] = {"ok": True}
    except Exception as exc:
        deps["database"] = {"ok": False, "error": getattr(exc, "message", None) or str(exc)}
    deps["redis"] = await c.cluster.probe_redis()
    view = await c.cluster.view()
    nodes: list[dict[str, Any]] = view["nodes"]
    if c.cluster.enabled:
        deps["agreement"] = agreement(nodes, c.settings.issuer, c.cluster.key_fingerprint)
    ok = all(bool(d["ok"]) or not d.get("required", True) for d in deps.values())
    if args.json:
        emit(args, {"ok": ok, "dependencies": deps, "nodes": nodes})
    else:
        rows = [
            {
                "dependency": name,
                "state": "ok" if state["ok"] else "DOWN",
                "detail": _detail(name, state),
            }
            for name, state in deps.items()
        ]
        emit(args, rows, ("dependency", "state", "detail"))
        masters = deps["redis"].get("masters")
        if masters:
            # A Redis Cluster: which master serves which slots, and whether it answers.
            print()
            emit(
                args,
                [
                    {
                        "master": m["node"],
                        "state": "ok" if m["ok"] else "DOWN",
                        "slots": m["slots"],
                        "slot_count": m["slot_count"],
                    }
                    for m in masters
                ],
                ("master", "state", "slots", "slot_count"),
            )
        print()
        if c.cluster.enabled:
            emit(args, nodes, ("id", "address", "alive", "bus", "issuer", "seen_seconds_ago"))
        else:
            print("single node: no Redis configured (WATCHWORD_REDIS_URL), no cluster view")
        if "nodes_error" in view:
            print(f"nodes: {view['nodes_error']}")
    if not ok:
        raise CliError("a required dependency is down")


def _detail(name: str, state: dict[str, Any]) -> str:
    if not state["ok"]:
        return str(state.get("error") or "unreachable")
    if name == "agreement":
        return f"{state['nodes']} live nodes share the key and issuer {state['issuer']}"
    if name == "redis":
        if not state.get("configured", True):
            return "not configured (in-process bus, memory rate limits)"
        if state.get("mode") == "cluster":
            masters = len(state.get("masters", ()))
            return (
                f"cluster: {masters} masters serve {state['slots_served']} of 16384 slots, "
                f"fallback={state['fallback']}"
            )
        return f"fallback={state['fallback']}"
    return "-"


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    cluster = sub.add_parser("cluster", help="the cluster: dependencies and nodes")
    commands = cluster.add_subparsers(dest="sub", required=True)
    p = commands.add_parser(
        "check", parents=[common], help="each dependency's state and the live nodes"
    )
    p.set_defaults(run=cluster_check)
