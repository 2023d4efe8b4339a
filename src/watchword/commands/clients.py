"""`watchword clients create|list|disable|enable|rotate-secret`: OAuth2 clients.

Machines (client credentials) and apps that sign people in (``--redirect-uri``, the
authorization-code grant, public or confidential). A secret is printed once and stored as
SHA-256; a public client has none. Disabling a client revokes its opaque tokens
and refuses new ones; running servers learn it from the control feed.
"""

from __future__ import annotations

import argparse
from typing import Any

from watchword.commands.output import emit
from watchword.services.clients import AppRegistration
from watchword.services.container import Container
from watchword.services.context import CLI

COLUMNS = ("client_id", "name", "client_type", "grant_types", "scopes", "created_at", "disabled")


async def clients_create(args: argparse.Namespace, c: Container) -> None:
    app = AppRegistration.parse(
        client_type=args.type,
        grant_types=args.grant_types,
        redirect_uris=args.redirect_uri or [],
        first_party=args.first_party,
        backchannel_logout_uri=args.backchannel_logout_uri,
        post_logout_redirect_uris=args.post_logout_redirect_uri or [],
        id_token_signed_response_alg=args.id_token_alg,
    )
    created = await c.clients.create(
        name=args.name,
        scopes=args.scopes,
        token_format="opaque" if args.opaque else "jwt",
        ctx=CLI,
        actor_id="cli",
        app=app,
    )
    shown = {**created.client.public(), "client_secret": created.secret or None}
    if app.signs_people_in:
        columns: tuple[str, ...] = (
            "client_id",
            "client_secret",
            "client_type",
            "grant_types",
            "redirect_uris",
            "scopes",
        )
    else:
        columns = ("client_id", "client_secret", "scopes", "token_format")
    emit(args, shown, columns)
    if not args.json and created.secret:
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
    group = sub.add_parser(
        "clients", help="OAuth2 clients: machines and apps that sign people in"
    ).add_subparsers(dest="sub", required=True)
    p = group.add_parser("create", parents=[common], help="register a client (secret shown once)")
    p.add_argument("--name", required=True)
    p.add_argument(
        "--scopes",
        help='space separated, e.g. "reports:read" (apps: default "openid profile email")',
    )
    p.add_argument("--opaque", action="store_true", help="issue opaque tokens instead of JWTs")
    p.add_argument(
        "--type",
        choices=("confidential", "public"),
        default="confidential",
        help="public: an app that cannot keep a secret (SPA, mobile); it uses PKCE alone",
    )
    p.add_argument(
        "--redirect-uri",
        action="append",
        metavar="URI",
        help="where the app receives its code (https, or http on loopback); repeatable",
    )
    p.add_argument(
        "--grant-types",
        help="comma separated: client_credentials (default without a redirect URI), "
        "authorization_code,refresh_token (default with one)",
    )
    p.add_argument(
        "--first-party", action="store_true", help="an app of yours: sign-in without a consent page"
    )
    p.add_argument(
        "--backchannel-logout-uri",
        metavar="URI",
        help="receives a signed logout token when a session that signed in to the app ends",
    )
    p.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        metavar="URI",
        help="where RP-initiated logout may send the browser back to; repeatable",
    )
    p.add_argument(
        "--id-token-alg",
        choices=("RS256", "ES256", "EdDSA"),
        help="how the app's ID tokens are signed (default RS256)",
    )
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
