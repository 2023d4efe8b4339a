"""The `watchword` command: serve, and administer the same stores the servers use.

Thin on purpose: it builds the services from the same settings as ``serve`` and calls them.
Revocations made here reach running servers through the control feed they poll.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import ipaddress
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from watchword import __version__
from watchword.bus.workers import WorkerBroker
from watchword.commands.output import CliError, emit
from watchword.config import Settings, masked_url
from watchword.domain.errors import WatchwordError
from watchword.services.container import Container
from watchword.services.secrets_file import MasterKeyMissing
from watchword.web import logs
from watchword.web.compat_v1.settings import CompatSettings

COMMAND_MODULES: tuple[str, ...] = (
    "watchword.commands.users",
    "watchword.commands.sessions",
    "watchword.commands.audit",
    "watchword.commands.keys",  # tokens
    "watchword.commands.cluster",
    # machines
    "watchword.commands.apikeys",
    "watchword.commands.clients",
    "watchword.commands.signing_keys",
    "watchword.commands.mail",  # account lifecycle: the outbox
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
        {"status": "upgraded", "database": masked_url(c.settings.database_url)},
        ("status", "database"),
    )


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
    folder = _missing_sqlite_folder(url)
    if folder:
        reason = f"{reason} (the folder {folder} does not exist)"
    return CliError(f"cannot open the {kind} database {masked_url(url)}: {reason}")


def _missing_sqlite_folder(url: str) -> str:
    """The folder a SQLite URL points into, when it does not exist ("" otherwise)."""
    if not url.startswith("sqlite"):
        return ""
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    folder = os.path.dirname(os.path.abspath(path)) if path and path != ":memory:" else ""
    return folder if folder and not os.path.isdir(folder) else ""


async def open_store(container: Container, *, migrate: bool) -> None:
    """SQLite (the embedded default) is brought to the current schema by whichever command
    opens it first; PostgreSQL is upgraded explicitly with `watchword db upgrade`."""
    url = container.settings.database_url
    if _missing_sqlite_folder(url):
        # Said before the driver starts its thread (which could outlive the event loop).
        raise store_failure(url, OSError("unable to open database file"))
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
    CompatSettings()  # the /api/v1 surface's variables, checked before anything listens
    container = Container(settings)  # resolves (and on first start creates) the master key

    async def prepare() -> None:
        try:
            await open_store(container, migrate=True)
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
        f"(database: {masked_url(settings.database_url)}, bus: {bus}, workers: {args.workers})",
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
        # Realtime: no permessage-deflate unless asked (one zlib state per socket
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
        timeout_keep_alive=settings.keepalive_timeout,
        # With --workers, uvicorn restarts a worker that does not answer its health ping in
        # time, start-up included: on a busy machine the imports alone took over the default
        # 5 s, and every worker was killed and restarted in a loop, never serving.
        timeout_worker_healthcheck=30,
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
