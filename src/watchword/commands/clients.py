"""`watchword clients create|list|disable|enable|rotate-secret`: OAuth2 confidential clients.

The secret is printed once and stored as SHA-256. Disabling a client revokes its opaque tokens
and refuses new ones; running servers learn it from the control feed.
"""

from __future__ import annotations

import argparse
from typing import Any

from watchword.commands.output import emit
from watchword.services.container import Container
from watchword.services.context import CLI

COLUMNS = ("client_id", "name", "scopes", "token_format", "created_at", "disabled")


async def clients_create(args: argparse.Namespace, c: Container) -> None:
    created = await c.clients.create(
        name=args.name,
        scopes=args.scopes,
        token_format="opaque" if args.opaque else "jwt",
        ctx=CLI,
        actor_id="cli",
    )
    emit(
        args,
        {**created.client.public(), "client_secret": created.secret},
        ("client_id", "client_secret", "scopes", "token_format"),
    )
    if not args.json:
        print("\nThe secret is shown only now: store it safely.")


async def clients_list(args: argparse.Namespace, c: Container) -> None:
    clients = await c.clients.list_clients(limit=args.limit, offset=args.offset)
    emit(args, [client.public() for client in clients], COLUMNS)


async def clients_disable(args: argparse.Namespace, c: Container) -> None:
    existing = await c.clients.get(args.client_id)
    if existing is not None and existing.disabled == (not args.enable):
        state = "already disabled" if existing.disabled else "already enabled"
        emit(args, {**existing.public(), "status": state}, ("client_id", "name", "status"))
        return
    client = await c.clients.set_disabled(args.client_id, not args.enable, CLI, actor_id="cli")
    emit(args, client.public(), COLUMNS)


async def clients_rotate_secret(args: argparse.Namespace, c: Container) -> None:
    rotated = await c.clients.rotate_secret(args.client_id, CLI, actor_id="cli")
    emit(
        args,
        {**rotated.client.public(), "client_secret": rotated.secret},
        ("client_id", "client_secret"),
    )
    if not args.json:
        print("\nThe new secret is shown only now: the old one no longer works.")


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("clients", help="OAuth2 clients (client credentials)").add_subparsers(
        dest="sub", required=True
    )
    p = group.add_parser("create", parents=[common], help="register a client (secret shown once)")
    p.add_argument("--name", required=True)
    p.add_argument("--scopes", required=True, help='space separated, e.g. "reports:read"')
    p.add_argument("--opaque", action="store_true", help="issue opaque tokens instead of JWTs")
    p.set_defaults(run=clients_create)
    p = group.add_parser("list", parents=[common], help="registered clients")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(run=clients_list)
    p = group.add_parser("disable", parents=[common], help="disable a client, revoke its tokens")
    p.add_argument("client_id")
    p.set_defaults(run=clients_disable, enable=False)
    p = group.add_parser("enable", parents=[common], help="enable a disabled client")
    p.add_argument("client_id")
    p.set_defaults(run=clients_disable, enable=True)
    p = group.add_parser(
        "rotate-secret", parents=[common], help="a new secret (shown once); the old one stops"
    )
    p.add_argument("client_id")
    p.set_defaults(run=clients_rotate_secret)
