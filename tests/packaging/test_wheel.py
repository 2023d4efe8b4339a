"""The built wheel and sdist install into a clean venv and serve."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")


@pytest.mark.e2e
def test_the_wheel_installs_into_a_clean_venv_and_serves(tmp_path: Path) -> None:
    if not UV.exists():
        pytest.skip("uv is not in the project's venv (make setup installs it)")
    dist = tmp_path / "dist"
    built = subprocess.run(
        [str(UV), "build", "--out-dir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    assert "license" not in built.stderr.lower(), built.stderr
    wheel = next(dist.glob("*.whl"))
    assert next(dist.glob("*.tar.gz"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("watchword/__main__.py", "watchword/py.typed"):
        assert needed in names
    assert any(n.startswith("watchword/stores/sql/migrations/versions/0001") for n in names)
    assert any(n.endswith(".lua") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(UV), "pip", "install", "--python", str(python), "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # Dependencies come from the project's locked environment, after the venv's own packages
    # (so the installed wheel, not the source tree, is what runs).
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "locked_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run(
        [str(python), "-c", "import watchword; print(watchword.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert where.startswith(str(venv)), where
    version = subprocess.run(
        [str(python), "-m", "watchword", "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    assert version.returncode == 0 and version.stdout.startswith("watchword "), version.stderr

    port = free_port()
    server = subprocess.Popen(
        [str(venv / "bin" / "watchword"), "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_serving(server, f"http://127.0.0.1:{port}", path="/readyz", within=90)
    except RuntimeError:
        server.kill()
        out = server.communicate(timeout=30)[0].decode(errors="replace")
        raise AssertionError(out[-3000:]) from None
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(venv, ignore_errors=True)
