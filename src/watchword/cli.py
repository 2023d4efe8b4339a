"""The `watchword` command: serve, and administer the same stores the servers use.

Thin on purpose: it builds the services from the same settings as ``serve`` and calls them.
Revocations made here reach running servers through the control feed they poll.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from watchword import __version__
from watchword.commands.output import CliError, emit
from watchword.config import Settings
from watchword.domain.errors import WatchwordError
from watchword.services.container import Container
from watchword.services.secrets_file import MasterKeyMissing
from watchword.web.compat_v1.settings import CompatSettings

COMMAND_MODULES: tuple[str, ...] = (
    "watchword.commands.users",
    "watchword.commands.sessions",
    "watchword.commands.audit",
    "watchword.commands.keys",  # tokens (issue 3)
    "watchword.commands.cluster",
    # machines (issue 4)
    "watchword.commands.apikeys",
    "watchword.commands.clients",
    "watchword.commands.signing_keys",
)

Handler = Callable[[argparse.Namespace, Container], Awaitable[Any]]


async def db_upgrade(args: argparse.Namespace, c: Container) -> None:
    upgrade = getattr(c.db, "upgrade", None)
    if upgrade is None:
        raise CliError("this database has no migrations")
    try:
        await upgrade()
    except Exception as exc:
        raise store_failure(c.settings.database_url, exc) from exc
    emit(
        args,
        {"status": "upgraded", "database": _redact_url(c.settings.database_url)},
        ("status", "database"),
    )


def _redact_url(url: str) -> str:
    """The URL with its password masked."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def _driver_reason(exc: BaseException) -> str:
    """What the driver itself said, from the bottom of the exception chain."""
    seen: set[int] = set()
    reason = exc
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        reason = current
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else current.__cause__ or current.__context__
        )
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else ""
    return text or type(reason).__name__


def store_failure(url: str, exc: BaseException) -> CliError:
    """One line: which store, where (password masked), and why."""
    kind = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    reason = _driver_reason(exc)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1].split("?", 1)[0]
        folder = os.path.dirname(os.path.abspath(path)) if path and path != ":memory:" else ""
        if folder and not os.path.isdir(folder):
            reason = f"{reason} (the folder {folder} does not exist)"
    return CliError(f"cannot open the {kind} database {_redact_url(url)}: {reason}")


async def open_store(container: Container, *, migrate: bool) -> None:
    """SQLite (the embedded default) is brought to the current schema by whichever command
    opens it first; PostgreSQL is upgraded explicitly with `watchword db upgrade`."""
    url = container.settings.database_url
    try:
        if container.settings.is_sqlite:
            if migrate:
                await container.db.upgrade()  # type: ignore[attr-defined]
            return
        pending = getattr(container.db, "pending_migrations", None)
        behind = bool(await pending()) if pending is not None else False
    except Exception as exc:
        raise store_failure(url, exc) from exc
    if behind and migrate:
        raise CliError("the database schema is not current: run `watchword db upgrade`")


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
    settings = Settings()
    CompatSettings()  # the /api/v1 surface's variables, checked before anything listens
    container = Container(settings)  # resolves (and on first start creates) the master key

    async def prepare() -> None:
        try:
            await open_store(container, migrate=True)
        finally:
            await container.db.close()

    asyncio.run(prepare())
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
        access_log=False,  # URLs may carry tickets or tokens: never logged
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    if args.workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock]).run()
    else:
        server.run(sockets=[sock])
    return 0 if server.started or args.workers > 1 else 1


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


class Parser(argparse.ArgumentParser):
    """No option-prefix abbreviations (``--password`` is not ``--password-stdin``); help
    texts as written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="watchword",
        description="Watchword: serve, and administer the stores the servers use.",
    )
    parser.add_argument("--version", action="version", version=f"watchword {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common.add_argument(
        "--wide", action="store_true", help="every column, nothing cut (tables fit 100 columns)"
    )

    p = sub.add_parser("serve", help="run the HTTP and WebSocket server")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(run=None)

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
        await open_store(container, migrate=handler is not db_upgrade)
        await handler(args, container)
    finally:
        await container.cluster.close()
        await container.db.close()


def setting_problems(exc: ValidationError) -> str:
    """Each problem under the environment variable that holds it."""
    prefix = "WATCHWORD_" if exc.title == Settings.__name__ else ""
    return "; ".join(
        f"{prefix}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
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
        print(f"watchword: error: bad setting: {setting_problems(exc)}", file=sys.stderr)
        return 1
    except SettingsError as exc:  # a value pydantic-settings could not even decode (JSON)
        print(f"watchword: error: bad setting: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
