"""``runstore ui`` in a real browser: Chromium (Debian's, at /usr/bin/chromium) driven by Playwright
against a real ``runstore ui`` process on a free 127.0.0.1 port. The overview, a filter, a run,
a job's chart, and a live run's tail growing as ``runstore exec`` prints.

With RUNSTORE_SCREENSHOTS=DIR the pages are saved there (the README's come from docs/)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser tests need Chromium at /usr/bin/chromium (apt-get install -y chromium)",
)
# As root, Chromium runs only without its sandbox; the rest keeps it from reaching out.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def _runstore(db: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "RUNSTORE_DB": db}
    command = [sys.executable, "-m", "runstore", *args]
    return subprocess.run(command, env=env, capture_output=True, timeout=60)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A store of real runs, and ``runstore ui`` serving it: (its URL, the store)."""
    db = str(tmp_path_factory.mktemp("ui") / "store.db")
    _runstore(db, "job", "set", "nightly-backup", "--every", "1d", "--notify", "command:true")
    for i in range(8):
        script = f"echo dumping {i}; sleep 0.0{i}; " + ("exit 3" if i in (2, 5) else "echo done")
        _runstore(db, "exec", "--job", "nightly-backup", "--", "sh", "-c", script)
    for i in range(4):
        _runstore(db, "exec", "--job", "etl-orders", "--", "sh", "-c", f"echo loaded {i} rows >&2")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "runstore", "ui", "--port", str(port),
                               "--db", db], stderr=subprocess.PIPE)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                said = server.stderr.read().decode() if server.stderr else ""
                raise AssertionError(f"runstore ui did not start: {said}") from None
            time.sleep(0.2)
    yield url, db
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="runstore-chromium-"), executable_path=str(CHROMIUM),
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 860},
        )  # fmt: skip
        yield context
        context.close()


def _shot(page: object, name: str) -> None:
    directory = os.environ.get("RUNSTORE_SCREENSHOTS")
    if directory:
        page.screenshot(path=str(Path(directory) / f"ui-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_overview_filter_run_and_job_chart(site, browser):
    url, _ = site
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(url + "/")
    rows = page.locator("#jobs tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).locator("td").nth(0).inner_text() == "etl-orders"
    assert page.locator("#jobs svg.strip").count() == 2
    _shot(page, "overview")
    page.click("text=nightly-backup")
    page.wait_for_selector("svg.durations")
    assert page.locator("svg.durations path.bad").count() == 2  # the two failures, marked
    assert page.locator("svg.calendar rect").count() >= 91
    _shot(page, "job")
    page.click("nav >> text=Runs")
    page.select_option("select[name=status]", "failed")
    page.click("text=Filter")
    page.wait_for_url("**/runs?*status=failed*")
    statuses = page.locator("#runs tbody .status").all_inner_texts()
    assert statuses == ["failed", "failed"]
    _shot(page, "runs")
    page.locator("#runs tbody a.mono").first.click()
    page.wait_for_selector("#events")
    assert "exit code 3" in page.inner_text("dl.fields")
    assert page.locator("#events tr.out-stdout").count() == 1
    _shot(page, "run")
    page.click("text=Compare with the last completed run")
    page.wait_for_selector("pre.diff, p.same")
    _shot(page, "compare")
    page.close()


def test_a_live_runs_tail_grows_until_it_ends(site, browser):
    url, db = site
    script = "for i in $(seq 1 12); do echo line $i; sleep 0.3; done"
    live = subprocess.Popen([sys.executable, "-m", "runstore", "exec", "--job", "live", "--",
                             "sh", "-c", script], env={**os.environ, "RUNSTORE_DB": db},
                            stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        run_id = None
        deadline = time.monotonic() + 20
        while run_id is None and time.monotonic() < deadline:
            found = json.load(urllib.request.urlopen(url + "/api/runs?job=live", timeout=5))
            run_id = found["runs"][0]["run_id"] if found["runs"] else None
            time.sleep(0.1)
        assert run_id is not None
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"{url}/runs/{run_id}")
        assert page.locator("#live").is_visible()  # it was running when the page was made
        page.wait_for_selector("#events td.msg:text-is('line 12')", timeout=20_000)
        page.wait_for_selector("#live.ended", timeout=20_000)
        assert page.inner_text("#live") == "the run has ended: completed"
        lines = [
            t for t in page.locator("#events td.msg").all_inner_texts() if t.startswith("line")
        ]
        assert lines == [f"line {i}" for i in range(1, 13)]  # each once, in order
        page.close()
    finally:
        live.wait(timeout=30)
