"""`watchword sessions list|revoke`: live sessions, and ending them.

A revocation made here is in the control feed (and on the Redis bus when there is one): every
running server refuses the session, its tokens and its sockets within a poll.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from watchword.commands.output import CliError, emit
from watchword.domain.sessions import RevokeReason, Session
from watchword.services.container import Container
from watchword.services.context import CLI
from watchword.web.views import session_view

COLUMNS = ("id", "kind", "device", "last_seen_at")
WIDE_COLUMNS = ("id", "kind", "device", "ip", "created_at", "last_seen_at", "expires_at")


def _device(view: dict[str, Any]) -> str:
    """The name given at sign-in first, then what the browser says it is."""
    device = view["device"]
    name, label = device.get("name"), device.get("label")
    if name and label:
        return f"{name} ({label})"
    return str(name or label or "-")


def _rows(live: list[tuple[Session, datetime]], emails: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for session, seen in live:
        view = session_view(session, seen, current_id=None)
        view["device_shown"] = _device(view)
        if emails:
            view["email"] = emails.get(session.user_id, session.user_id)
        rows.append(view)
    return rows


def _shown(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.json:
        for row in rows:
            row.pop("device_shown", None)
        return rows
    return [{**row, "device": row["device_shown"]} for row in rows]


async def sessions_list(args: argparse.Namespace, c: Container) -> None:
    if args.email:
        user = await c.accounts.find_user(args.email)
        live = (await c.sessions.list_live(user.id))[: args.limit]
        emit(args, _shown(_rows(live, {}), args), COLUMNS, WIDE_COLUMNS)
        return
    live = await c.sessions.list_all_live(limit=args.limit)
    emails: dict[str, str] = {}
    for session, _ in live:
        if session.user_id not in emails:
            try:
                emails[session.user_id] = (await c.accounts.get_user(session.user_id)).email
            except Exception:  # deleted meanwhile: show the id
                emails[session.user_id] = session.user_id
    rows = _shown(_rows(live, emails), args)
    emit(args, rows, ("id", "email", "device", "last_seen_at"), ("email", *WIDE_COLUMNS))


async def sessions_revoke(args: argparse.Namespace, c: Container) -> None:
    if args.all:
        if args.session_id or not args.email:
            raise CliError("--all revokes every session of one account: give --email, no id")
        user = await c.accounts.find_user(args.email)
        ended = await c.sessions.revoke_all(user.id, RevokeReason.ADMIN, CLI, actor_id="cli")
        emit(
            args,
            {"email": user.email, "status": "revoked", "revoked_sessions": len(ended)},
            ("email", "status", "revoked_sessions"),
        )
        return
    if not args.session_id:
        raise CliError("name the session to revoke, or give --all --email EMAIL")
    if args.email:
        raise CliError("--email goes with --all; a session id names its account already")
    existing = await c.sessions.get(args.session_id)
    if existing is not None and existing.revoked_at is not None:
        emit(
            args,
            {"id": existing.id, "user_id": existing.user_id, "status": "already revoked"},
            ("id", "user_id", "status"),
        )
        return
    revoked = await c.sessions.revoke(args.session_id, RevokeReason.ADMIN, CLI, actor_id="cli")
    emit(
        args,
        {"id": revoked.id, "user_id": revoked.user_id, "status": "revoked"},
        ("id", "user_id", "status"),
    )


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    sessions = sub.add_parser("sessions", help="see and revoke sessions").add_subparsers(
        dest="sub", required=True
    )
    p = sessions.add_parser(
        "list", parents=[common], help="live sessions, newest first (of one account with --email)"
    )
    p.add_argument("--email", help="only this account's sessions")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.set_defaults(run=sessions_list)
    p = sessions.add_parser(
        "revoke", parents=[common], help="revoke a session by id, or --all of an account"
    )
    p.add_argument("session_id", nargs="?")
    p.add_argument("--all", action="store_true", help="every session of --email")
    p.add_argument("--email", help="with --all: the account")
    p.set_defaults(run=sessions_revoke)
