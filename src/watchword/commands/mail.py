"""`watchword mail list|show`: the outbox, for local development without SMTP and for
operators looking at what is queued, sent or failing."""

from __future__ import annotations

import argparse
from typing import Any

from watchword.services.container import Container

COLUMNS = ("id", "kind", "to", "subject", "created_at", "attempts", "sent_at", "last_error")


async def mail_list(args: argparse.Namespace, c: Container) -> None:
    from watchword.commands.output import emit

    mail = await c.lifecycle.outbox(limit=args.limit, unsent_only=args.unsent)
    emit(args, [m.summary() for m in mail], COLUMNS)


async def mail_show(args: argparse.Namespace, c: Container) -> None:
    mail = await c.lifecycle.mail(args.mail_id)
    if args.json:
        from watchword.commands.output import emit

        emit(args, {**mail.summary(), "text": mail.text, "html": mail.html})
        return
    print(f"Id:      {mail.id}")
    print(f"To:      {mail.to}")
    print(f"Subject: {mail.subject}")
    print(f"Queued:  {mail.created_at.isoformat()}")
    print(f"Sent:    {mail.sent_at.isoformat() if mail.sent_at else 'not yet'}")
    print()
    print(mail.text)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("mail", help="the mail outbox").add_subparsers(dest="sub", required=True)
    p = group.add_parser("list", parents=[common], help="queued and sent mail, newest first")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--unsent", action="store_true", help="only mail not sent yet")
    p.set_defaults(run=mail_list)
    p = group.add_parser("show", parents=[common], help="one message with its links")
    p.add_argument("mail_id", help="the id (or a unique prefix of 6+ characters)")
    p.set_defaults(run=mail_show)
