"""`watchword cluster check` from the command line, without a running node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import TEST_SECRET_KEY, free_port
from watchword.cli import main


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATCHWORD_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("WATCHWORD_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/ww.db")
    monkeypatch.delenv("WATCHWORD_REDIS_URL", raising=False)
    assert main(["db", "upgrade"]) == 0
    return tmp_path


def test_a_single_node_reports_its_database_and_no_cluster(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["cluster", "check"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["DEPENDENCY", "STATE", "DETAIL"]
    assert "database    ok" in out and "not configured" in out and "single node" in out


def test_redis_down_is_reported_and_exits_1(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHWORD_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("WATCHWORD_REDIS_CONNECT_TIMEOUT", "0.2")
    capsys.readouterr()
    assert main(["cluster", "check", "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ok"] is False
    assert report["dependencies"]["database"]["ok"] is True
    assert report["dependencies"]["redis"]["ok"] is False
    assert "a required dependency is down" in captured.err


def test_with_the_database_fallback_redis_down_is_not_fatal(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHWORD_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("WATCHWORD_REDIS_CONNECT_TIMEOUT", "0.2")
    monkeypatch.setenv("WATCHWORD_REDIS_FALLBACK", "database")
    capsys.readouterr()
    assert main(["cluster", "check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dependencies"]["redis"] | {"error": None} == {
        "ok": False,
        "error": None,
        "mode": "single",
        "url": report["dependencies"]["redis"]["url"],
        "pool": report["dependencies"]["redis"]["pool"],
        "fallback": "database",
        "required": False,
    }
    assert report["dependencies"]["redis"]["url"].startswith("redis://127.0.0.1:")


def test_a_bad_fallback_value_is_a_clear_setting_error(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHWORD_REDIS_FALLBACK", "sometimes")
    assert main(["cluster", "check"]) == 1
    assert "WATCHWORD_REDIS_FALLBACK" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WATCHWORD_REDIS_URL", "http://127.0.0.1:6379"),
        ("WATCHWORD_REDIS_PREFIX", "has space"),
        ("WATCHWORD_REDIS_PREFIX", "{tag}"),
        ("WATCHWORD_REDIS_SESSION_TTL", "0"),
        ("WATCHWORD_REDIS_MAX_CONNECTIONS", "1"),
    ],
)
def test_bad_redis_settings_are_refused_by_name(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["cluster", "check"]) == 1
    assert name in capsys.readouterr().err
