"""``watchword.sdk.__all__`` is exactly its public names, and importing it stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys

import watchword.sdk as sdk


def test_all_is_exactly_the_public_names() -> None:
    for name in sdk.__all__:
        getattr(sdk, name)  # every listed name resolves (and lands in the namespace)
    public = {
        name
        for name in dir(sdk)
        if not name.startswith("_")
        and not inspect.ismodule(getattr(sdk, name))
        and name not in ("annotations", "importlib", "TYPE_CHECKING", "Any")
    }
    assert sorted(sdk.__all__) == sorted(public)
    assert sdk.__all__ == sorted(sdk.__all__)


def test_unknown_names_raise_attribute_error() -> None:
    try:
        sdk.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_public_names_have_docstrings() -> None:
    for name in sdk.__all__:
        assert inspect.getdoc(getattr(sdk, name)), name


def test_importing_the_sdk_pulls_in_no_server_and_no_framework() -> None:
    code = (
        "import sys, watchword.sdk as s; s.Verifier; s.WatchwordClient; "
        "bad = [m for m in sys.modules if m.startswith(('watchword.services', 'watchword.web',"
        " 'watchword.stores', 'fastapi', 'flask', 'sqlalchemy', 'redis'))]; print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
