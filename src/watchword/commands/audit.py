"""`watchword audit tail [-f]`: the latest audit events, and new ones as they come."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from watchword.commands.output import Table, emit
from watchword.services.container import Container

COLUMNS = ("id", "at", "type", "user_id", "details")
WIDE_COLUMNS = ("id", "at", "type", "user_id", "session_id", "ip", "details")
# Widths the first rows may not show yet, so that the rows -f prints later stay aligned.
LEAST = {"id": 6, "at": 19, "type": 22, "user_id": 36, "session_id": 36, "ip": 15}
FOLLOW_INTERVAL = 1.0


async def audit_tail(args: argparse.Namespace, c: Container) -> None:
    latest = [e.public() for e in await c.db.audit.tail(limit=args.limit)]
    last = latest[-1]["id"] if latest else None
    if args.json or not args.follow:
        emit(args, latest, COLUMNS, WIDE_COLUMNS)
        table = None
    else:
        table = Table(WIDE_COLUMNS if args.wide else COLUMNS, latest, wide=args.wide, least=LEAST)
        print(table.header())
        for row in latest:
            print(table.row(row))
    sys.stdout.flush()
    while args.follow:
        await asyncio.sleep(FOLLOW_INTERVAL)
        fresh = await c.db.audit.tail(limit=500, after_id=last)
        for event in fresh:
            public = event.public()
            last = public["id"]
            print(json.dumps(public, default=str) if table is None else table.row(public))
        sys.stdout.flush()


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="sub", required=True
    )
    p = audit.add_parser("tail", parents=[common], help="latest audit events")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    p.set_defaults(run=audit_tail)
