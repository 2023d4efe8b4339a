"""The Flask peer: Flask + Flask-Login + Flask-Session, as their docs teach.

Runs in the peers' own environment (bench/peers/.venv), served by gunicorn with one gthread
worker and 4 threads pinned to one core: one process per core, and a few threads so that a
request waiting on Redis or SQLite does not hold up the next one (gunicorn's docs suggest 2-4
threads per core). See ``bench.peers.runner.flask_login``.

- Server-side sessions with Flask-Session's Redis backend: Redis runs on this machine, and it
  is what a team that keeps sessions server-side to revoke them would deploy (a SQL table
  would be written on every request too, see below, and cachelib is per process). Each run
  has its own key prefix. Flask-Session's defaults are kept: sessions are permanent and
  refreshed on each request, so every authenticated request rewrites its session in Redis.
- Users in SQLite through the stdlib ``sqlite3``, one connection per request kept on ``g``
  as in Flask's tutorial; passwords hashed by Werkzeug's ``generate_password_hash`` (the
  default that Flask's tutorial uses).
- Flask-Login's ``user_loader`` reads the user from the database on every request.

Routes: ``GET /healthz`` (bare, no session), ``POST /register`` and ``POST /login`` (JSON
email and password; login sets the session cookie), ``GET /me`` (the user as JSON).

Settings from the environment: PEERS_SECRET_KEY, PEERS_DATABASE (an SQLite file path),
PEERS_REDIS_URL, PEERS_SESSION_PREFIX.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from typing import Any

from flask import Flask, abort, g, jsonify, request
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user
from flask_session import Session
from redis import Redis
from werkzeug.security import check_password_hash, generate_password_hash

SCHEMA = """
CREATE TABLE IF NOT EXISTS user (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT UNIQUE NOT NULL,
    password TEXT NOT NULL
)
"""

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ["PEERS_SECRET_KEY"],
    DATABASE=os.environ["PEERS_DATABASE"],
    SESSION_TYPE="redis",
    SESSION_REDIS=Redis.from_url(os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0")),
    SESSION_KEY_PREFIX=os.environ.get("PEERS_SESSION_PREFIX", "session:"),
)
Session(app)
login_manager = LoginManager(app)


class User(UserMixin):
    def __init__(self, row: sqlite3.Row) -> None:
        self.id = row["id"]
        self.email = row["email"]


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        g.db = sqlite3.connect(app.config["DATABASE"])
        g.db.row_factory = sqlite3.Row
    db: sqlite3.Connection = g.db
    return db


@app.teardown_appcontext
def close_db(exc: BaseException | None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


with contextlib.closing(sqlite3.connect(app.config["DATABASE"])) as _db:
    _db.execute(SCHEMA)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    row = get_db().execute("SELECT id, email FROM user WHERE id = ?", (user_id,)).fetchone()
    return User(row) if row is not None else None


def _credentials() -> tuple[str, str]:
    body: dict[str, Any] = request.get_json(silent=True) or {}
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        abort(400)
    return email, password


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/register")
def register() -> tuple[dict[str, str], int]:
    email, password = _credentials()
    db = get_db()
    try:
        db.execute(
            "INSERT INTO user (email, password) VALUES (?, ?)",
            (email, generate_password_hash(password)),
        )
        db.commit()
    except sqlite3.IntegrityError:
        abort(409)
    return {"email": email}, 201


@app.post("/login")
def login() -> Any:
    email, password = _credentials()
    row = get_db().execute("SELECT * FROM user WHERE email = ?", (email,)).fetchone()
    if row is None or not check_password_hash(row["password"], password):
        abort(401)
    login_user(User(row))
    return jsonify(id=row["id"], email=row["email"])


@app.get("/me")
@login_required
def me() -> Any:
    return jsonify(id=current_user.id, email=current_user.email)
