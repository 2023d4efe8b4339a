"""`watchword api-keys create|list|revoke`: the same service as `POST/GET/DELETE /v1/api-keys`.

A revocation made here is in the control feed: running servers drop the key within a poll.
"""

from __future__ import annotations

import argparse
from typing import Any

from watchword.commands.output import emit
from watchword.services.container import Container
from watchword.services.context import CLI

COLUMNS = ("id", "name", "prefix", "scopes", "created_at", "last_used_at", "expires_at")


async def api_keys_create(args: argparse.Namespace, c: Container) -> None:
    user = await c.accounts.find_user(args.email)
    created = await c.api_keys.create(
        user,
        name=args.name,
        scopes=args.scopes,
        grantable=c.scope_policy.scopes_for_roles(user.roles),
        expires_in=args.expires_in,
        ctx=CLI,
        actor_id="cli",
    )
    emit(args, {**created.key.public(), "key": created.secret}, (*COLUMNS[:4], "key"))
    if not args.json:
        print("\nThe key is shown only now: store it safely.")


async def api_keys_list(args: argparse.Namespace, c: Container) -> None:
    user = await c.accounts.find_user(args.email)
    keys = await c.api_keys.list_for_user(user.id)
    emit(args, [key.public(used) for key, used in keys], COLUMNS)


async def api_keys_revoke(args: argparse.Namespace, c: Container) -> None:
    existing = await c.api_keys.get(args.key_id)
    if existing is not None and existing.revoked_at is not None:
        emit(
            args,
            {"id": existing.id, "user_id": existing.user_id, "status": "already revoked"},
            ("id", "user_id", "status"),
        )
        return
    revoked = await c.api_keys.revoke(args.key_id, CLI, actor_id="cli")
    body: dict[str, Any] = {"id": revoked.id, "user_id": revoked.user_id, "status": "revoked"}
    emit(args, body, ("id", "user_id", "status"))


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("api-keys", help="API keys of users").add_subparsers(
        dest="sub", required=True
    )
    p = group.add_parser("create", parents=[common], help="create a key (shown once)")
    p.add_argument("--email", required=True, help="the owner")
    p.add_argument("--scopes", required=True, help='space separated, e.g. "profile sessions"')
    p.add_argument("--name", default="cli", help="a label for the key")
    p.add_argument("--expires-in", type=int, default=None, help="lifetime in seconds")
    p.set_defaults(run=api_keys_create)
    p = group.add_parser("list", parents=[common], help="keys of a user (never the secrets)")
    p.add_argument("--email", required=True)
    p.set_defaults(run=api_keys_list)
    p = group.add_parser("revoke", parents=[common], help="revoke a key by id")
    p.add_argument("key_id")
    p.set_defaults(run=api_keys_revoke)
