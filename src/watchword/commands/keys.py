"""`watchword keys list` and `watchword keys rotate`: the JWT signing keys.

A rotation made here is recorded in the control feed with the new key, so running servers
reload their keys within a poll interval (at once over the Redis bus).
"""

from __future__ import annotations

import argparse
from typing import Any

from watchword.commands.output import emit
from watchword.services.container import Container

KEY_COLUMNS = (
    "kid",
    "algorithm",
    "generation",
    "state",
    "created_at",
    "retired_at",
    "verify_until",
)


async def keys_list(args: argparse.Namespace, c: Container) -> None:
    emit(args, await c.keys.describe_all(), KEY_COLUMNS)


async def keys_rotate(args: argparse.Namespace, c: Container) -> None:
    kid = await c.keys.rotate()
    rows = await c.keys.describe_all()
    emit(args, next(row for row in rows if row["kid"] == kid), KEY_COLUMNS)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    keys = sub.add_parser("keys", help="JWT signing keys").add_subparsers(dest="sub", required=True)
    p = keys.add_parser("list", parents=[common], help="signing keys and their state")
    p.set_defaults(run=keys_list)
    p = keys.add_parser(
        "rotate",
        parents=[common],
        help="introduce a new signing key; the old one verifies until its tokens expire",
    )
    p.set_defaults(run=keys_rotate)
