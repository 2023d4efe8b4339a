"""The strategies' methods with the exercise's own main_*.py examples, and the settings."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from tests.compat_v1.conftest import (
    BOB_EMAIL,
    BOB_PASSWORD,
    SESSION_EMAIL,
    SESSION_PASSWORD,
    make_user,
)
from tests.conftest import AppFactory
from tests.helpers import ManualClock
from watchword.services.container import Container
from watchword.web.compat_v1 import (
    Auth,
    BasicAuth,
    CompatSettings,
    SessionAuth,
    SessionDBAuth,
    SessionExpAuth,
    strategy_for,
)
from watchword.web.compat_v1.settings import NO_EXPIRY


def settings(**values: Any) -> CompatSettings:
    base: dict[str, Any] = {
        "auth_type": None,
        "session_name": "_my_session_id",
        "session_duration": 0,
        "watchword_compat_v1": None,
    }
    base.update(values)
    return CompatSettings(**base)


@pytest.fixture
async def container(app_factory: AppFactory) -> Container:
    _, made = await app_factory()
    return made


def test_require_auth_main_0_and_main_1(container: Container) -> None:
    a = Auth(container, settings())
    assert a.require_auth("/api/v1/status/", ["/api/v1/status/"]) is False
    assert a.authorization_header() is None
    assert a.session_cookie() is None
    # main_1.py, line by line
    assert a.require_auth(None, None) is True
    assert a.require_auth(None, []) is True
    assert a.require_auth("/api/v1/status/", []) is True
    assert a.require_auth("/api/v1/status/", ["/api/v1/status/"]) is False
    assert a.require_auth("/api/v1/status", ["/api/v1/status/"]) is False
    assert a.require_auth("/api/v1/users", ["/api/v1/status/"]) is True
    assert a.require_auth("/api/v1/users", ["/api/v1/status/", "/api/v1/stats"]) is True


def test_require_auth_with_stars_main_101(container: Container) -> None:
    a = Auth(container, settings())
    assert a.require_auth("/api/v1/users", ["/api/v1/stat*"]) is True
    assert a.require_auth("/api/v1/status", ["/api/v1/stat*"]) is False
    assert a.require_auth("/api/v1/stats", ["/api/v1/stat*"]) is False
    assert a.require_auth("/api/v1/stats/", ["/api/v1/stat*"]) is False
    # an entry without a trailing slash matches its own path, slash tolerant
    assert a.require_auth("/api/v1/stats", ["/api/v1/stats"]) is False
    assert a.require_auth("/api/v1/stats/", ["/api/v1/stats"]) is False
    assert a.require_auth("/api/v1/statsx", ["/api/v1/stats"]) is True
    # junk entries are ignored, not errors
    assert a.require_auth("/api/v1/users", [None, 89, ""]) is True  # type: ignore[list-item]


async def test_plain_auth_knows_nobody(container: Container) -> None:
    assert await Auth(container, settings()).current_user() is None


def test_extract_base64_authorization_header_main_2(container: Container) -> None:
    a = BasicAuth(container, settings())
    assert a.extract_base64_authorization_header(None) is None
    assert a.extract_base64_authorization_header(89) is None
    assert a.extract_base64_authorization_header("Holberton School") is None
    assert a.extract_base64_authorization_header("Basic Holberton") == "Holberton"
    assert a.extract_base64_authorization_header("Basic SG9sYmVydG9u") == "SG9sYmVydG9u"
    assert (
        a.extract_base64_authorization_header("Basic SG9sYmVydG9uIFNjaG9vbA==")
        == "SG9sYmVydG9uIFNjaG9vbA=="
    )
    assert a.extract_base64_authorization_header("Basic1234") is None
    assert a.extract_base64_authorization_header("basic SG9sYmVydG9u") is None


def test_decode_base64_authorization_header_main_3(container: Container) -> None:
    a = BasicAuth(container, settings())
    assert a.decode_base64_authorization_header(None) is None
    assert a.decode_base64_authorization_header(89) is None
    assert a.decode_base64_authorization_header("Holberton School") is None
    assert a.decode_base64_authorization_header("SG9sYmVydG9u") == "Holberton"
    assert a.decode_base64_authorization_header("SG9sYmVydG9uIFNjaG9vbA==") == "Holberton School"
    encoded = a.extract_base64_authorization_header("Basic SG9sYmVydG9uIFNjaG9vbA==")
    assert a.decode_base64_authorization_header(encoded) == "Holberton School"
    # base64 of bytes that are not UTF-8 (the exercise's 500 pitfall) and non-ASCII input
    assert a.decode_base64_authorization_header("test") is None
    assert a.decode_base64_authorization_header("//79") is None
    assert a.decode_base64_authorization_header("SG9sYmVydG9u\u00e9") is None
    assert a.decode_base64_authorization_header("QQ" * 10_000) is None


def test_extract_user_credentials_main_4_and_colons(container: Container) -> None:
    a = BasicAuth(container, settings())
    assert a.extract_user_credentials(None) == (None, None)
    assert a.extract_user_credentials(89) == (None, None)
    assert a.extract_user_credentials("Holberton School") == (None, None)
    assert a.extract_user_credentials("Holberton:School") == ("Holberton", "School")
    assert a.extract_user_credentials("bob@gmail.com:toto1234") == ("bob@gmail.com", "toto1234")
    assert a.extract_user_credentials("bob100@hbtn.io:H0lberton:School:98!") == (
        "bob100@hbtn.io",
        "H0lberton:School:98!",
    )
    assert a.extract_user_credentials(":") == ("", "")


async def test_user_object_from_credentials_main_5(container: Container) -> None:
    # main_5.py: a user with a uuid4 password; here the email must be a real address.
    email, password = f"{uuid.uuid4()}@hbtn.io", str(uuid.uuid4())
    user = await make_user(container, email, password, first_name="Bob", last_name="Dylan")
    a = BasicAuth(container, settings())
    assert await a.user_object_from_credentials(None, None) is None
    assert await a.user_object_from_credentials(89, 98) is None
    assert await a.user_object_from_credentials("email@notfound.com", "pwd") is None
    assert await a.user_object_from_credentials(email, "pwd") is None
    found = await a.user_object_from_credentials(email, password)
    assert found is not None and found.id == user.id
    assert (found.first_name, found.last_name) == ("Bob", "Dylan")
    # emails are Watchword's: normalised, so case and spaces do not matter
    again = await a.user_object_from_credentials(f"  {email.upper()} ", password)
    assert again is not None and again.id == user.id
    assert await a.user_object_from_credentials("not an email", password) is None
    assert await a.user_object_from_credentials(email, password + "x" * 2000) is None


async def test_session_auth_main_1_and_main_2(container: Container) -> None:
    abcde = await make_user(container, "abcde@hbtn.io", SESSION_PASSWORD)
    fghij = await make_user(container, "fghij@hbtn.io", SESSION_PASSWORD)
    sa = SessionAuth(container, settings(auth_type="session_auth"))
    assert isinstance(SessionAuth.user_id_by_session_id, dict)
    assert await sa.create_session() is None
    assert await sa.create_session(89) is None
    assert await sa.create_session("no-such-user") is None
    first = await sa.create_session(abcde.id)
    other = await sa.create_session(fghij.id)
    second = await sa.create_session(abcde.id)
    assert first is not None and other is not None and second is not None
    for sid in (first, other, second):
        assert uuid.UUID(sid).version == 4 and str(uuid.UUID(sid)) == sid
    assert len({first, other, second}) == 3
    assert sa.user_id_by_session_id[first] == abcde.id
    assert sa.user_id_by_session_id[second] == abcde.id
    assert sa.user_id_by_session_id[other] == fghij.id
    # main_2.py
    assert await sa.user_id_for_session_id() is None
    assert await sa.user_id_for_session_id(89) is None
    assert await sa.user_id_for_session_id(str(uuid.uuid4())) is None
    assert await sa.user_id_for_session_id(first) == abcde.id
    assert await sa.user_id_for_session_id(other) == fghij.id
    assert await sa.user_id_for_session_id(second) == abcde.id
    # the class-level dict is shared by every instance
    assert await SessionAuth(container, settings()).user_id_for_session_id(first) == abcde.id
    assert await sa.destroy_session(None) is False


async def test_session_exp_auth_rules(container: Container, clock: ManualClock) -> None:
    user = await make_user(container, SESSION_EMAIL, SESSION_PASSWORD)
    exp = SessionExpAuth(container, settings(auth_type="session_exp_auth", session_duration=60))
    assert exp.session_duration == 60
    sid = await exp.create_session(user.id)
    assert sid is not None
    entry = exp.user_id_by_session_id[sid]
    assert entry == {"user_id": user.id, "created_at": clock.now()}
    clock.advance(60)  # created_at + 60 s is not before now: still valid
    assert await exp.user_id_for_session_id(sid) == user.id
    clock.advance(0.000001)
    assert await exp.user_id_for_session_id(sid) is None
    # a session dictionary without created_at is refused when there is a duration
    exp.user_id_by_session_id["made-up"] = {"user_id": user.id}
    assert exp.known_user_id("made-up") is None
    # without a duration the dictionary's user id is enough (the row decides liveness)
    forever = SessionExpAuth(container, settings(auth_type="session_exp_auth"))
    assert forever.session_lifetime() == NO_EXPIRY
    assert forever.known_user_id("made-up") == user.id
    del exp.user_id_by_session_id["made-up"]


async def test_session_db_auth_keeps_nothing_in_memory(
    container: Container,
) -> None:
    user = await make_user(container, SESSION_EMAIL, SESSION_PASSWORD)
    db = SessionDBAuth(container, settings(auth_type="session_db_auth"))
    sid = await db.create_session(user.id)
    assert sid is not None and sid not in db.user_id_by_session_id
    assert await db.user_id_for_session_id(sid) == user.id
    # a memory strategy does not accept a database session, nor the reverse
    assert await SessionAuth(container, settings()).user_id_for_session_id(sid) is None
    memory_sid = await SessionAuth(container, settings()).create_session(user.id)
    assert await db.user_id_for_session_id(memory_sid) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, 0),
        ("60", 60),
        (" 60 ", 60),
        ("0", 0),
        ("-5", -5),
        ("abc", 0),
        ("60.5", 0),
        ("", 0),
        ("9" * 40, int(NO_EXPIRY.total_seconds())),
    ],
)
def test_session_duration_is_int_or_zero(
    raw: str | None, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SESSION_DURATION", raising=False)
    if raw is not None:
        monkeypatch.setenv("SESSION_DURATION", raw)
    assert CompatSettings().session_duration == expected


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTH_TYPE", "SESSION_NAME", "SESSION_DURATION", "WATCHWORD_COMPAT_V1"):
        monkeypatch.delenv(name, raising=False)
    assert CompatSettings().auth_type is None
    assert CompatSettings().session_name == "_my_session_id"
    monkeypatch.setenv("AUTH_TYPE", "")
    assert CompatSettings().auth_type is None
    monkeypatch.setenv("AUTH_TYPE", "session_db_auth")
    monkeypatch.setenv("SESSION_NAME", "sid")
    monkeypatch.setenv("WATCHWORD_COMPAT_V1", "open")
    loaded = CompatSettings()
    assert (loaded.auth_type, loaded.session_name, loaded.open_mode_allowed) == (
        "session_db_auth",
        "sid",
        True,
    )
    monkeypatch.setenv("WATCHWORD_COMPAT_V1", "yes")
    with pytest.raises(ValidationError):
        CompatSettings()
    monkeypatch.delenv("WATCHWORD_COMPAT_V1")
    monkeypatch.setenv("SESSION_NAME", "bad name;")
    with pytest.raises(ValidationError):
        CompatSettings()


@pytest.mark.parametrize(
    ("auth_type", "cls"),
    [
        ("basic_auth", BasicAuth),
        ("session_auth", SessionAuth),
        ("session_exp_auth", SessionExpAuth),
        ("session_db_auth", SessionDBAuth),
        ("auth", Auth),
    ],
)
def test_the_auth_type_switch(container: Container, auth_type: str, cls: type[Auth]) -> None:
    strategy = strategy_for(container, settings(auth_type=auth_type))
    assert type(strategy) is cls


@pytest.mark.parametrize("auth_type", ["Basic_Auth", "basic", "session"])
def test_an_unknown_auth_type_is_an_error_listing_the_valid_ones(auth_type: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(auth_type=auth_type)
    message = str(caught.value)
    for valid in ("auth", "basic_auth", "session_auth", "session_exp_auth", "session_db_auth"):
        assert valid in message


def test_no_auth_type_means_no_strategy(container: Container) -> None:
    assert strategy_for(container, settings()) is None


async def test_basic_auth_bob(container: Container) -> None:
    await make_user(container, BOB_EMAIL, BOB_PASSWORD)
    a = BasicAuth(container, settings(auth_type="basic_auth"))
    email, password = a.extract_user_credentials(
        a.decode_base64_authorization_header("Ym9iQGhidG4uaW86SDBsYmVydG9uU2Nob29sOTgh")
    )
    assert (email, password) == (BOB_EMAIL, BOB_PASSWORD)
    user = await a.user_object_from_credentials(email, password)
    assert user is not None and user.email == BOB_EMAIL
