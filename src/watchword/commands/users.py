"""`watchword users create|list|disable|enable|set-roles|set-password|delete|send-reset|
reset-mfa`.

Whatever ends a user's sessions here (disable, a new password, deletion) reaches running
servers through the control feed they poll, and at once over the Redis bus when there is one.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from typing import Any

from watchword.commands.output import CliError, emit
from watchword.domain.scopes import IMPLICIT_ROLE
from watchword.services.container import Container
from watchword.services.context import CLI

COLUMNS = ("id", "email", "roles", "disabled", "created_at")


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def read_password(args: argparse.Namespace, *, prompt: str = "Password") -> str:
    """From standard input with ``--password-stdin``; asked twice on a terminal otherwise."""
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CliError("no password on standard input")
        return line.rstrip("\r\n")
    if not stdin_is_terminal():
        raise CliError("give the password on standard input with --password-stdin")
    first = getpass.getpass(f"{prompt}: ")
    second = getpass.getpass(f"{prompt} (again): ")
    if first != second:
        raise CliError("the two passwords differ: nothing was changed")
    return first


def checked_roles(c: Container, roles: Sequence[str]) -> list[str]:
    """Only roles the settings define (``WATCHWORD_ROLE_SCOPES`` or the roles file)."""
    known = set(c.settings.role_scopes) | {IMPLICIT_ROLE}
    unknown = [role for role in roles if role not in known]
    if unknown:
        raise CliError(
            f"unknown role {', '.join(map(repr, unknown))}: "
            f"the configured roles are {', '.join(sorted(known))}"
        )
    return list(roles)


async def users_create(args: argparse.Namespace, c: Container) -> None:
    roles = checked_roles(c, args.role or [])
    user = await c.accounts.register(
        email=args.email,
        password=read_password(args),
        first_name=args.first_name,
        last_name=args.last_name,
        roles=roles,
        ctx=CLI,
        self_service=False,
    )
    emit(args, user.public(), COLUMNS)


async def users_list(args: argparse.Namespace, c: Container) -> None:
    users = await c.accounts.list_users(limit=args.limit, offset=args.offset)
    emit(args, [u.public() for u in users], COLUMNS)


async def users_disable(args: argparse.Namespace, c: Container) -> None:
    user = await c.accounts.find_user(args.email)
    user, revoked = await c.accounts.set_disabled(user.id, not args.enable, CLI, actor_id="cli")
    emit(args, {**user.public(), "revoked_sessions": len(revoked)}, (*COLUMNS, "revoked_sessions"))


async def users_set_roles(args: argparse.Namespace, c: Container) -> None:
    if not args.roles and not args.none:
        raise CliError("name the roles to set, or give --none to remove every role")
    if args.roles and args.none:
        raise CliError("give roles or --none, not both")
    roles = checked_roles(c, args.roles)
    user = await c.accounts.find_user(args.email)
    user = await c.accounts.set_roles(user.id, roles, CLI, actor_id="cli")
    emit(args, user.public(), COLUMNS)


async def users_set_password(args: argparse.Namespace, c: Container) -> None:
    user = await c.accounts.find_user(args.email)
    revoked = await c.accounts.set_password(
        user.id, read_password(args, prompt="New password"), CLI, actor_id="cli"
    )
    emit(
        args,
        {"email": user.email, "status": "password set", "revoked_sessions": len(revoked)},
        ("email", "status", "revoked_sessions"),
    )


async def users_delete(args: argparse.Namespace, c: Container) -> None:
    if not args.yes:
        raise CliError(f"deleting {args.email} cannot be undone: confirm with --yes")
    user = await c.accounts.find_user(args.email)
    # Everything the account opened ends first, each revocation pushed to every node.
    keys = await c.api_keys.revoke_all_for_user(user.id, CLI, actor_id="cli")
    signing = await c.signing.revoke_all_for_user(user.id, CLI, actor_id="cli")
    sessions = await c.accounts.delete_user(
        user.id, CLI, actor_id="cli", api_keys=len(keys), signing_keys=len(signing)
    )
    emit(
        args,
        {
            "email": user.email,
            "status": "deleted",
            "revoked_sessions": len(sessions),
            "revoked_api_keys": len(keys),
            "revoked_signing_keys": len(signing),
        },
        ("email", "status", "revoked_sessions", "revoked_api_keys", "revoked_signing_keys"),
    )


async def users_send_reset(args: argparse.Namespace, c: Container) -> None:
    mail = await c.lifecycle.send_reset(args.email, CLI, actor_id="cli")
    emit(args, mail.summary(), ("id", "to", "subject", "created_at"))
    if not args.json and c.mail_sender.target is None:
        print(f"\nNo SMTP server is set: see the link with `watchword mail show {mail.id}`.")


async def users_reset_mfa(args: argparse.Namespace, c: Container) -> None:
    user = await c.accounts.find_user(args.email)
    # One transaction: factors, sessions, the audit line and the notice, or none of them.
    done, mail = await c.factor_reset.reset(user, CLI, actor_id="cli")
    emit(
        args,
        {
            "email": user.email,
            "status": "second factors removed",
            "totp_removed": done.totp,
            "passkeys_removed": done.passkeys,
            "revoked_sessions": len(done.sessions),
            "mail_id": mail.id,
        },
        ("email", "status", "totp_removed", "passkeys_removed", "revoked_sessions", "mail_id"),
    )


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    users = sub.add_parser("users", help="manage accounts").add_subparsers(
        dest="sub", required=True
    )
    p = users.add_parser("create", parents=[common], help="create an account")
    p.add_argument("--email", required=True)
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (otherwise asked twice on a terminal)",
    )
    p.add_argument("--first-name")
    p.add_argument("--last-name")
    p.add_argument("--role", action="append", help="a configured role to grant (repeatable)")
    p.set_defaults(run=users_create)
    p = users.add_parser("list", parents=[common], help="list accounts")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(run=users_list)
    p = users.add_parser("disable", parents=[common], help="disable an account (signs it out)")
    p.add_argument("email")
    p.set_defaults(run=users_disable, enable=False)
    p = users.add_parser("enable", parents=[common], help="enable a disabled account")
    p.add_argument("email")
    p.set_defaults(run=users_disable, enable=True)
    p = users.add_parser("set-roles", parents=[common], help="replace an account's roles")
    p.add_argument("email")
    p.add_argument("roles", nargs="*", help="configured roles; none at all needs --none")
    p.add_argument("--none", action="store_true", help="remove every role")
    p.set_defaults(run=users_set_roles)
    p = users.add_parser(
        "set-password", parents=[common], help="set an account's password (ends every session)"
    )
    p.add_argument("email")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (otherwise asked twice on a terminal)",
    )
    p.set_defaults(run=users_set_password)
    p = users.add_parser(
        "delete",
        parents=[common],
        help="delete an account after revoking its sessions and keys",
    )
    p.add_argument("email")
    p.add_argument("--yes", action="store_true", help="confirm: deletion cannot be undone")
    p.set_defaults(run=users_delete)
    p = users.add_parser("send-reset", parents=[common], help="mail a password-reset link")
    p.add_argument("email")
    p.set_defaults(run=users_send_reset)
    p = users.add_parser(
        "reset-mfa",
        parents=[common],
        help="remove a user's TOTP, recovery codes and passkeys (a lost factor); "
        "ends every session and mails the user",
    )
    p.add_argument("email")
    p.set_defaults(run=users_reset_mfa)
