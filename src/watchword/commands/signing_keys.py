"""`watchword signing-keys create|list|revoke`: RFC 9421 request-signing keys of users.

An hmac-sha256 secret is printed once and kept sealed under the master key; an ed25519 key is
registered from its public key (PEM or base64url, from a file or standard input).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from watchword.commands.output import CliError, emit
from watchword.services.container import Container
from watchword.services.context import CLI

COLUMNS = ("key_id", "name", "algorithm", "scopes", "created_at", "last_used_at")


async def signing_keys_create(args: argparse.Namespace, c: Container) -> None:
    public_key = None
    if args.public_key_file:
        try:
            source = Path(args.public_key_file)
            public_key = (
                sys.stdin.read()
                if args.public_key_file == "-"
                else await asyncio.to_thread(source.read_text)
            )
        except OSError as exc:
            raise CliError(f"cannot read {args.public_key_file}: {exc}") from exc
    user = await c.accounts.find_user(args.email)
    created = await c.signing.create(
        user,
        name=args.name,
        algorithm=args.algorithm,
        scopes=args.scopes,
        grantable=c.scope_policy.scopes_for_roles(user.roles),
        public_key=public_key,
        ctx=CLI,
        actor_id="cli",
    )
    emit(args, {**created.key.public(), "secret": created.secret}, (*COLUMNS[:4], "secret"))
    if created.secret and not args.json:
        print("\nThe secret is shown only now: store it safely.")


async def signing_keys_list(args: argparse.Namespace, c: Container) -> None:
    user = await c.accounts.find_user(args.email)
    keys = await c.signing.list_for_user(user.id)
    emit(args, [key.public(used) for key, used in keys], COLUMNS)


async def signing_keys_revoke(args: argparse.Namespace, c: Container) -> None:
    existing = await c.signing.get(args.key_id)
    if existing is not None and existing.revoked_at is not None:
        emit(args, {"key_id": existing.id, "status": "already revoked"}, ("key_id", "status"))
        return
    revoked = await c.signing.revoke(args.key_id, CLI, actor_id="cli")
    emit(args, {"key_id": revoked.id, "status": "revoked"}, ("key_id", "status"))


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("signing-keys", help="request-signing keys (RFC 9421)").add_subparsers(
        dest="sub", required=True
    )
    p = group.add_parser("create", parents=[common], help="create a key (HMAC secret shown once)")
    p.add_argument("--email", required=True, help="the owner")
    p.add_argument("--scopes", required=True, help='space separated, e.g. "profile"')
    p.add_argument("--name", default="cli")
    p.add_argument("--algorithm", choices=["hmac-sha256", "ed25519"], default="hmac-sha256")
    p.add_argument("--public-key-file", help="ed25519: the public key file ('-' for stdin)")
    p.set_defaults(run=signing_keys_create)
    p = group.add_parser("list", parents=[common], help="keys of a user (never the secrets)")
    p.add_argument("--email", required=True)
    p.set_defaults(run=signing_keys_list)
    p = group.add_parser("revoke", parents=[common], help="revoke a key by key id")
    p.add_argument("key_id")
    p.set_defaults(run=signing_keys_revoke)
