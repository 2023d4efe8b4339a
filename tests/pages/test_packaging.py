"""Every template and asset of the pages is in the wheel's package data."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import watchword

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(watchword.__file__).parent


def test_every_page_asset_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["watchword"]
    pages = PACKAGE / "web" / "pages"
    files = [p for p in pages.rglob("*") if p.is_file() and p.suffix != ".pyc"]
    files = [p for p in files if p.suffix != ".py"]
    assert len(files) >= 15
    for path in files:
        relative = path.relative_to(PACKAGE).as_posix()
        assert any(
            fnmatch(relative, pattern) and "/" not in relative[len(pattern) - 1 :]
            for pattern in patterns
        ), relative
