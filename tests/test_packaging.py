"""The wheel works on its own: built from the checkout, installed into a fresh virtual
environment, run far from the source tree. Proves the migrations ship inside the wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from runstore.store.schema import KNOWN_REVISIONS, SCHEMA_REVISION

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user who has never seen the checkout."""
    hidden = {"PYTHONPATH", "VIRTUAL_ENV", "RUNSTORE_DB", "RUNSTORE_RUN_ID", "PYTHONHOME"}
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    return {**env, **extra}


def run(*args: str | Path, **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=900, **kw
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with runstore installed from a freshly built wheel."""
    root = tmp_path_factory.mktemp("packaging")
    wheels = root / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, REPO)
    (wheel,) = wheels.glob("runstore-*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    assert "runstore/store/migrations/env.py" in names
    shipped = {
        Path(n).name.split("_", 1)[0] for n in names if "runstore/store/migrations/versions/" in n
    }
    assert set(KNOWN_REVISIONS) <= shipped
    assert {"runstore/ui/templates/base.html", "runstore/ui/static/runstore.css",
            "runstore/ui/static/live.js"} <= set(names)  # fmt: skip

    venv = root / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, env=clean_env())
    return venv


def test_installed_wheel_runs_the_job_and_creates_the_store_at_head(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # far from the checkout: nothing can come from there
    elsewhere.mkdir()
    (elsewhere / "tasks.txt").write_text("# two tasks\nfirst task\n\nsecond task\n")
    store = elsewhere / "state" / "runs.db"
    store.parent.mkdir()  # a store path one names lies in a directory that exists
    env = clean_env(RUNSTORE_DB=str(store))
    runstore = installed / "bin" / "runstore"

    where = run(
        installed / "bin" / "python",
        "-c",
        "import runstore.store.migrate as m\nprint(m.__file__)\nprint(m.migrations_dir())",
        cwd=elsewhere,
        env=env,
    ).stdout.splitlines()
    assert all(line.startswith(str(installed)) for line in where), where

    result = run(
        runstore,
        "run",
        "--input",
        "tasks.txt",
        "--output",
        "processed.json",
        "--log",
        "run_log.json",
        "--run-id",
        "from-wheel",
        "--json",
        cwd=elsewhere,
        env=env,
    )
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed"
    assert summary["items"]["total"] == 2
    assert store.is_file()

    current = run(runstore, "db", "current", cwd=elsewhere, env=env)
    assert current.stdout.strip() == f"{SCHEMA_REVISION} (this runstore: {SCHEMA_REVISION})"
    assert run(runstore, "db", "path", cwd=elsewhere, env=env).stdout.strip() == str(store)
    log = json.loads((elsewhere / "run_log.json").read_text())
    assert log["run_id"] == "from-wheel" and log["event_count"] == len(log["events"])


def test_installed_python_dash_m_runstore(installed, tmp_path):
    result = run(installed / "bin" / "python", "-m", "runstore", "--version", cwd=tmp_path)
    assert result.stdout.startswith("runstore ")


def test_installed_wheel_serves_the_ui(installed, tmp_path):
    """The templates and static files ship: the installed runstore ui serves its pages."""
    import socket
    import time
    import urllib.request

    store = tmp_path / "runs.db"
    env = clean_env(RUNSTORE_DB=str(store))
    run(installed / "bin" / "runstore", "exec", "--job", "wheel", "--", "true", env=env)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([installed / "bin" / "runstore", "ui", "--port", str(port)],
                              env=env, cwd=tmp_path, stderr=subprocess.PIPE)  # fmt: skip
    try:
        pages = {}
        for path in ("/", "/static/live.js", "/jobs/wheel"):
            for _ in range(100):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as answer:
                        pages[path] = (answer.status, answer.read().decode())
                    break
                except OSError:
                    time.sleep(0.1)
        assert {path: status for path, (status, _) in pages.items()} == {
            "/": 200, "/static/live.js": 200, "/jobs/wheel": 200,
        }  # fmt: skip
        assert "wheel" in pages["/"][1]
    finally:
        server.terminate()
        server.wait(timeout=10)
