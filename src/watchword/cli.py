"""The ``watchword`` command: serve, and administer the same stores the servers use.

Thin on purpose: it builds the services from the same settings as ``serve`` and calls them.
Revocations made here reach running servers through the control feed they poll.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import ipaddress
import json
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from watchword.bus.workers import WorkerBroker
from watchword.config import Settings
from watchword.domain.errors import WatchwordError
from watchword.domain.sessions import RevokeReason
from watchword.services.container import Container
from watchword.services.context import CLI
from watchword.services.secrets_file import MasterKeyMissing
from watchword.web import logs

COMMAND_MODULES: tuple[str, ...] = (
    "watchword.commands.keys",  # tokens (issue 3)
    "watchword.commands.cluster",
    # machines (issue 4)
    "watchword.commands.apikeys",
    "watchword.commands.clients",
    "watchword.commands.signing_keys",
    "watchword.commands.mail",  # account lifecycle: the outbox
)

Handler = Callable[[argparse.Namespace, Container], Awaitable[Any]]


class CliError(Exception):
    """A one-line error for the operator; exit status 1."""


def _print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    print("  ".join(col.upper().ljust(widths[i]) for i, col in enumerate(columns)).rstrip())
    for r in cells:
        print("  ".join(r[i].ljust(widths[i]) for i in range(len(columns))).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return value.get("label") or json.dumps(value)
    return str(value)


def emit(args: argparse.Namespace, data: Any, columns: Sequence[str] | None = None) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    elif columns is not None and isinstance(data, list):
        _print_table(data, columns)
    elif isinstance(data, dict) and columns is not None:
        _print_table([data], columns)
    else:
        print(data)


# -- users ------------------------------------------------------------------------------------


def _read_password(args: argparse.Namespace) -> str:
    if not args.password_stdin:
        raise CliError("give the password on standard input with --password-stdin")
    line = sys.stdin.readline()
    if not line:
        raise CliError("no password on standard input")
    return line.rstrip("\r\n")


USER_COLUMNS = ("id", "email", "roles", "disabled", "created_at")


async def users_create(args: argparse.Namespace, c: Container) -> None:
    user = await c.accounts.register(
        email=args.email,
        password=_read_password(args),
        first_name=args.first_name,
        last_name=args.last_name,
        roles=args.role or [],
        ctx=CLI,
        self_service=False,
    )
    emit(args, user.public(), USER_COLUMNS)


async def users_list(args: argparse.Namespace, c: Container) -> None:
    users = await c.accounts.list_users(limit=args.limit, offset=args.offset)
    emit(args, [u.public() for u in users], USER_COLUMNS)


async def users_disable(args: argparse.Namespace, c: Container) -> None:
    user = await c.accounts.find_user(args.email)
    user, revoked = await c.accounts.set_disabled(user.id, not args.enable, CLI, actor_id="cli")
    emit(
        args,
        {**user.public(), "revoked_sessions": len(revoked)},
        (*USER_COLUMNS, "revoked_sessions"),
    )


async def users_set_roles(args: argparse.Namespace, c: Container) -> None:
    user = await c.accounts.find_user(args.email)
    user = await c.accounts.set_roles(user.id, args.roles, CLI, actor_id="cli")
    emit(args, user.public(), USER_COLUMNS)


async def users_send_reset(args: argparse.Namespace, c: Container) -> None:
    mail = await c.lifecycle.send_reset(args.email, CLI, actor_id="cli")
    emit(args, mail.summary(), ("id", "to", "subject", "created_at"))
    if not args.json and c.mail_sender.target is None:
        print(f"\nNo SMTP server is set: see the link with `watchword mail show {mail.id}`.")


# -- sessions ---------------------------------------------------------------------------------

SESSION_COLUMNS = ("id", "kind", "device", "ip", "created_at", "last_seen_at", "expires_at")


async def sessions_list(args: argparse.Namespace, c: Container) -> None:
    from watchword.web.views import session_view

    user = await c.accounts.find_user(args.email)
    live = await c.sessions.list_live(user.id)
    emit(args, [session_view(s, seen, current_id=None) for s, seen in live], SESSION_COLUMNS)


async def sessions_revoke(args: argparse.Namespace, c: Container) -> None:
    revoked = await c.sessions.revoke(args.session_id, RevokeReason.ADMIN, CLI, actor_id="cli")
    emit(
        args,
        {"id": revoked.id, "user_id": revoked.user_id, "status": "revoked"},
        ("id", "user_id", "status"),
    )


# -- audit, db --------------------------------------------------------------------------------

AUDIT_COLUMNS = ("id", "at", "type", "user_id", "session_id", "ip", "details")


async def audit_tail(args: argparse.Namespace, c: Container) -> None:
    events = await c.db.audit.tail(limit=args.limit)
    last = events[-1].id if events else None
    emit(args, [e.public() for e in events], AUDIT_COLUMNS)
    while args.follow:
        await asyncio.sleep(1.0)
        events = await c.db.audit.tail(limit=500, after_id=last)
        if events:
            last = events[-1].id
            for event in events:
                print(
                    json.dumps(event.public(), default=str)
                    if args.json
                    else _audit_line(event.public())
                )
            sys.stdout.flush()


def _audit_line(event: dict[str, Any]) -> str:
    return "  ".join(_cell(event.get(col)) for col in AUDIT_COLUMNS)


async def db_upgrade(args: argparse.Namespace, c: Container) -> None:
    upgrade = getattr(c.db, "upgrade", None)
    if upgrade is None:
        raise CliError("this database has no migrations")
    await upgrade()
    emit(
        args,
        {"status": "upgraded", "database": _redact_url(c.settings.database_url)},
        ("status", "database"),
    )


def _redact_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


# -- serve ------------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    host = (
        args.host or os.environ.get("API_HOST") or os.environ.get("WATCHWORD_HOST") or "127.0.0.1"
    )
    raw_port = os.environ.get("API_PORT") or os.environ.get("WATCHWORD_PORT") or "8000"
    if args.port is not None:
        port = args.port  # --port 0: any free port, printed once bound
    elif raw_port.isdigit():
        port = int(raw_port)
    else:
        raise CliError(f"the port must be a number, not {raw_port!r}")
    if not 0 <= port <= 65535:
        raise CliError(f"the port must be between 0 and 65535, not {port}")
    os.environ["WATCHWORD_HOST"] = host
    os.environ["WATCHWORD_PORT"] = str(port)
    # The options reach every worker through the environment, like the rest of the settings.
    if args.log_level is not None:
        os.environ["WATCHWORD_LOG_LEVEL"] = args.log_level
    if args.log_format is not None:
        os.environ["WATCHWORD_LOG_FORMAT"] = args.log_format
    if args.access_log is False:
        os.environ["WATCHWORD_ACCESS_LOG"] = "false"
    settings = Settings()
    logs.configure(
        level=settings.log_level,
        json_format=settings.log_format == "json",
        access=settings.access_log,
    )
    container = Container(settings)  # resolves (and on first start creates) the master key

    async def prepare() -> None:
        try:
            if settings.is_sqlite:
                await container.db.upgrade()  # type: ignore[attr-defined]
            elif await container.db.pending_migrations():  # type: ignore[attr-defined]
                raise CliError("the database schema is not current: run `watchword db upgrade`")
        finally:
            await container.db.close()

    asyncio.run(prepare())
    _warn_about_edges(settings, host)
    # Bind first, so what is printed is true (and --port 0 prints the port it got).
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    os.environ["WATCHWORD_PORT"] = str(port)  # the app's own origin follows the real port
    shown = f"[{host}]" if ":" in host else host
    bus = "redis" if settings.redis_url else "in-process"
    print(
        f"Watchword listening on http://{shown}:{port} "
        f"(database: {_redact_url(settings.database_url)}, bus: {bus}, workers: {args.workers})",
        flush=True,
    )
    config = uvicorn.Config(
        "watchword.web.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        ws="wsproto",
        # Realtime (issue 5): no permessage-deflate unless asked (one zlib state per socket
        # costs more than the idle connection itself, and every fan-out message would be
        # compressed once per socket); frames are bounded near the gateway's own limit.
        ws_per_message_deflate=settings.realtime_compression,
        ws_max_size=max(4 * settings.realtime_max_message_bytes, 1 << 20),
        # The gateway pings at the application level (and closes with 4102 on no pong): the
        # protocol-level keepalive would add two timers per socket for nothing.
        ws_ping_interval=None,
        access_log=False,  # URLs may carry tickets or tokens: never logged
        # The client's address is Watchword's own decision (web/client_address.py): uvicorn
        # would otherwise take X-Forwarded-For from any loopback peer.
        proxy_headers=False,
        log_level=settings.log_level,
        log_config=None,  # Watchword's own (web/logs.py), set up in each worker
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    if args.workers > 1:
        from uvicorn.supervisors import Multiprocess

        broker = _worker_broker(settings)
        try:
            Multiprocess(config, sockets=[sock]).run()
        finally:
            if broker is not None:
                broker.stop()
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.dirname(broker.path))
    else:
        server.run(sockets=[sock])
    return 0 if server.started or args.workers > 1 else 1


def _worker_broker(settings: Settings) -> WorkerBroker | None:
    """Without Redis, the workers' caches are linked through a broker in this process, so a
    revocation made by one worker reaches the others at once (the workers inherit the path)."""
    if settings.redis_url:
        return None
    folder = tempfile.mkdtemp(prefix="watchword-workers-")
    broker = WorkerBroker(os.path.join(folder, "bus.sock"))
    broker.start()
    os.environ["WATCHWORD_WORKER_BUS"] = broker.path
    return broker


def _warn_about_edges(settings: Settings, host: str) -> None:
    """Settings that work but are probably not what the operator meant, said at start."""
    if settings.trust_forwarded_for:
        _warn(
            "WATCHWORD_TRUST_FORWARDED_FOR is deprecated: it trusts forwarding headers from every "
            "peer. Set WATCHWORD_TRUSTED_PROXIES to your proxies' addresses instead."
        )
    loopback = host in ("localhost", "") or _is_loopback(host)
    if settings.public_url and not settings.https_public_url and not loopback:
        _warn(
            f"WATCHWORD_PUBLIC_URL is {settings.public_url} but the server listens on {host}: "
            "cookies and tokens would cross the network in clear. Put TLS in front and use an "
            "https:// URL."
        )


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="watchword", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("serve", help="run the HTTP and WebSocket server")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--log-format", default=None, choices=["text", "json"], help="json: one object per line"
    )
    p.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        default=None,
        help="no line per request",
    )
    p.set_defaults(run=None)

    users = sub.add_parser("users", help="manage accounts").add_subparsers(
        dest="sub", required=True
    )
    p = users.add_parser("create", parents=[common], help="create an account")
    p.add_argument("--email", required=True)
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--first-name")
    p.add_argument("--last-name")
    p.add_argument("--role", action="append", help="a role to grant (repeatable)")
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
    p.add_argument("roles", nargs="*")
    p.set_defaults(run=users_set_roles)
    p = users.add_parser("send-reset", parents=[common], help="mail a password-reset link")
    p.add_argument("email")
    p.set_defaults(run=users_send_reset)

    sessions = sub.add_parser("sessions", help="see and revoke sessions").add_subparsers(
        dest="sub", required=True
    )
    p = sessions.add_parser("list", parents=[common], help="live sessions of an account")
    p.add_argument("--email", required=True)
    p.set_defaults(run=sessions_list)
    p = sessions.add_parser("revoke", parents=[common], help="revoke a session by id")
    p.add_argument("session_id")
    p.set_defaults(run=sessions_revoke)

    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="sub", required=True
    )
    p = audit.add_parser("tail", parents=[common], help="latest audit events")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    p.set_defaults(run=audit_tail)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="sub", required=True)
    p = db.add_parser("upgrade", parents=[common], help="apply migrations")
    p.set_defaults(run=db_upgrade)

    # Other command groups live in their own modules under watchword.commands, each with
    # ``add_commands(sub, common)`` registering parsers whose ``run`` is ``(args, container)``.
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub, common)
    return parser


async def _run(handler: Handler, args: argparse.Namespace) -> None:
    container = Container(Settings())
    try:
        pending = getattr(container.db, "pending_migrations", None)
        if handler is not db_upgrade and pending is not None and await pending():
            raise CliError("the database schema is not current: run `watchword db upgrade`")
        await handler(args, container)
    finally:
        await container.cluster.close()
        await container.db.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="watchword: %(levelname)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            return serve(args)
        asyncio.run(_run(args.run, args))
        return 0
    except (WatchwordError, CliError, MasterKeyMissing) as exc:
        print(f"watchword: error: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        problems = "; ".join(
            f"WATCHWORD_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        print(f"watchword: error: bad setting: {problems}", file=sys.stderr)
        return 1
    except SettingsError as exc:  # a value pydantic-settings could not even decode (JSON)
        print(f"watchword: error: bad setting: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
