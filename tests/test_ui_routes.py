"""``runstore ui``'s routes through Starlette's test client: status codes, escaping, filters,
keyset pages, 404s and 400s, the JSON API, authentication, and that no request changes the
store. (Server-sent events are tested against a real server, in test_ui_browser.py.)"""

from __future__ import annotations

import base64
import re
import stat
import subprocess
import sys
from datetime import timedelta

import pytest
from conftest import Cli
from helpers import NOW, insert_runs, snapshot
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from runstore.record.logger import RunLogger
from runstore.store.store import Store
from runstore.ui.app import create_app
from runstore.ui.auth import add_user, read_users

HOSTILE = "<script>alert('x')</script>"


def _fill(db: str) -> None:
    insert_runs(db, [
        {"run_id": f"bulk-{i:03d}", "job": "bulk", "started_at": NOW - timedelta(minutes=i),
         "status": "failed" if i % 10 == 3 else "completed", "duration_ms": 1000 + 10 * i,
         "exit_code": 1 if i % 10 == 3 else 0}
        for i in range(120)
    ])  # fmt: skip
    with RunLogger(job=HOSTILE, run_id="hostile", db=db) as run:
        run.log_event("output", {"stream": "stdout", "line": f"printed {HOSTILE}"})
        run.log_warning(f"careful {HOSTILE}", where=HOSTILE)
    for n, count in ((1, 3), (2, 4)):
        with RunLogger(job="cmp", run_id=f"cmp-{n}", db=db) as run:
            run.log_event(
                "output", {"stream": "stdout", "line": f"2026-12-0{n}T03:00:0{n} started"}
            )
            run.log_event("output", {"stream": "stdout", "line": f"copied {count} files"})
            run.log_event(
                "output", {"stream": "stdout", "line": "done" if n == 1 else "disk nearly full"}
            )


@pytest.fixture
def client(db: str) -> TestClient:
    _fill(db)
    return TestClient(create_app(Store.open_for_reading(db)))


@pytest.fixture
def lite(sqlite_db: str) -> TestClient:
    _fill(sqlite_db)
    return TestClient(create_app(Store.open_for_reading(sqlite_db)))


def _rows(html: str, table: str) -> list[str]:
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.DOTALL)[1:]  # past the header


def test_the_overview_lists_every_job_problems_first_and_escapes_names(client):
    page = client.get("/")
    assert page.status_code == 200
    rows = _rows(page.text, "jobs")
    assert [re.search(r'href="/jobs/([^"]+)"', row).group(1) for row in rows] == [  # type: ignore[union-attr]
        "%3Cscript%3Ealert%28%27x%27%29%3C/script%3E",
        "bulk",
        "cmp",
    ]  # all healthy: by name
    assert (
        HOSTILE not in page.text and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text
    )
    assert page.text.count('<svg class="strip"') == 3


def test_the_runs_list_filters_and_pages_by_keyset(client):
    first = client.get("/runs", params={"job": "bulk"})
    assert first.status_code == 200
    rows = _rows(first.text, "runs")
    assert len(rows) == 50 and "bulk-000" in rows[0] and "bulk-049" in rows[-1]
    seen = []
    page = first
    while True:
        seen += re.findall(r">(bulk-\d{3})<", page.text)
        more = re.search(r'href="\?([^"]*before=[^"]+)"', page.text)
        if more is None:
            break
        page = client.get("/runs?" + more.group(1).replace("&amp;", "&"))
        assert page.status_code == 200
    assert seen == [f"bulk-{i:03d}" for i in range(120)]  # every run once, in order
    failed = _rows(client.get("/runs", params={"status": "failed"}).text, "runs")
    assert len(failed) == 12 and all("s-failed" in row for row in failed)
    since = (NOW - timedelta(minutes=29, seconds=30)).isoformat()  # the 30 newest
    recent = _rows(client.get("/runs", params={"since": since, "job": "bulk"}).text, "runs")
    assert len(recent) == 30


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("/runs?since=banana", "since: cannot read"),
        ("/runs?min_duration=3", "has no unit"),
        ("/runs?status=fine", "unknown status"),
        ("/runs?before=nonsense", "not a page cursor"),
        ("/runs/bulk-001?after=abc", "after must be a whole number"),
        ("/compare", "give two runs to compare"),
    ],
)
def test_bad_parameters_are_400_pages(lite, path, said):
    page = lite.get(path)
    assert page.status_code == 400 and said in page.text
    assert "Traceback" not in page.text


@pytest.mark.parametrize("path", ["/runs/nope", "/runs/bulk-0", "/jobs/nope", "/nothing/here",
                                  "/compare?a=nope"])  # fmt: skip
def test_unknown_runs_jobs_and_pages_are_404_pages(lite, path):
    page = lite.get(path)
    assert page.status_code == 404 and '<h2 class="error">404</h2>' in page.text


def test_a_run_page_shows_its_timeline_escaped(lite):
    page = lite.get("/runs/hostile")
    assert page.status_code == 200
    assert HOSTILE not in page.text
    assert len(_rows(page.text, "events")) == 4
    assert 'class="lv-info out-stdout"' in page.text and 'class="lv-warning"' in page.text
    assert "printed &lt;script&gt;" in page.text and 'id="live"' not in page.text  # finished


def test_a_big_run_is_shown_a_page_of_events_at_a_time(lite, sqlite_db):
    with RunLogger(job="big", run_id="big", db=sqlite_db) as run:
        for i in range(1200):
            run.log_event("tick", {"i": i})
    first = lite.get("/runs/big")
    assert len(_rows(first.text, "events")) == 500
    nxt = re.search(r'href="\?after=(\d+)"', first.text)
    assert nxt is not None and nxt.group(1) == "500"
    second = lite.get("/runs/big?after=500")
    assert _rows(second.text, "events")[0].count(">501<") == 1


def test_a_job_page_draws_its_chart_and_calendar(client):
    page = client.get("/jobs/bulk")
    assert page.status_code == 200
    assert '<svg class="durations"' in page.text and '<svg class="calendar"' in page.text
    assert page.text.count('class="bad"') >= 10  # its failures, marked
    assert "p50" in page.text and "p95" in page.text


def test_a_job_page_charts_each_metric_and_a_run_page_shows_tags(db):
    for i, rows in enumerate((100, 120, 90, 300)):
        with RunLogger("loads", f"load-{i}", db=db, tags={"env": HOSTILE}) as run:
            run.log_metric("rows_loaded", rows)
            run.log_metric("lag_s", 0.5 + i)
    RunLogger("loads", "load-quiet", db=db).finish("failed")  # reported nothing: not charted
    client = TestClient(create_app(Store.open_for_reading(db)))
    page = client.get("/jobs/loads").text
    charts = re.findall(r'<svg class="durations"[^>]*aria-label="([^"]+)"', page)
    assert charts == ["durations", "lag_s", "rows_loaded"]
    rows_chart = page.split('aria-label="rows_loaded"', 1)[1].split("</svg>", 1)[0]
    assert rows_chart.count('class="ok"') == 4 and "load-3: completed, 300" in rows_chart
    assert "last 4 runs that reported it; p50 100, p95 300" in page
    run_page = client.get("/runs/load-1").text
    assert '<span class="tag">env=&lt;script&gt;' in run_page and HOSTILE not in run_page
    assert client.get("/api/runs/load-1").json()["run"]["tags"] == {"env": HOSTILE}


def test_compare_shows_what_changed_and_sets_aside_times_and_counts(lite):
    page = lite.get("/compare", params={"a": "cmp-2"})
    assert page.status_code == 200
    assert 'class="ddel">-done<' in page.text and 'class="dadd">+disk nearly full<' in page.text
    diff = page.text.split('class="diff"')[1]
    assert "copied &lt;n&gt; files" in diff and "+copied" not in diff and "-copied" not in diff


def test_the_json_api(client):
    jobs = client.get("/api/jobs").json()["jobs"]
    assert {j["job"] for j in jobs} == {"bulk", HOSTILE, "cmp"}
    runs = client.get("/api/runs", params={"job": "bulk", "limit": 100}).json()
    assert len(runs["runs"]) == 100 and runs["next"]
    rest = client.get("/api/runs", params={"job": "bulk", "before": runs["next"]}).json()
    assert len(rest["runs"]) == 20 and rest["next"] is None
    one = client.get("/api/runs/hostile").json()
    assert one["run"]["job"] == HOSTILE and one["events"][1]["data"]["line"].startswith("printed")
    assert client.get("/api/runs/nope").json() == {"error": "no run matches 'nope'"}
    assert client.get("/api/runs?since=x").status_code == 400


def test_metrics_are_the_exposition(lite):
    page = lite.get("/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(page.text)}
    assert "runstore_job_last_success_timestamp_seconds" in names


def test_no_request_changes_the_store(lite, sqlite_db):
    before = snapshot(sqlite_db)
    for path in ("/", "/runs", "/runs/hostile", "/jobs/bulk", "/compare?a=cmp-2", "/metrics",
                 "/api/jobs", "/api/runs", "/api/runs/bulk-001"):  # fmt: skip
        assert lite.get(path).status_code == 200, path
    assert (
        lite.post("/runs").status_code == 405 and lite.delete("/runs/bulk-001").status_code == 405
    )
    assert snapshot(sqlite_db) == before


def test_the_store_is_opened_so_that_it_cannot_be_written(sqlite_db):
    Cli(sqlite_db)("db", "upgrade", "--quiet")
    store = Store.open_for_reading(sqlite_db)
    from runstore.errors import StoreError

    with pytest.raises(StoreError, match="opened for reading only"):
        store.write(lambda conn: None)
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    with pytest.raises(OperationalError), store.engine.begin() as conn:
        conn.execute(text("DELETE FROM runs"))


# -- authentication --------------------------------------------------------------------------------


def test_with_an_auth_file_every_request_signs_in(sqlite_db, tmp_path):
    _fill(sqlite_db)
    auth = tmp_path / "users"
    add_user(auth, "ops", "correct horse")
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert "correct horse" not in auth.read_text()
    client = TestClient(create_app(Store.open_for_reading(sqlite_db), users=read_users(auth)))
    assert client.get("/").status_code == 401
    assert client.get("/").headers["www-authenticate"].startswith("Basic")

    def basic(user: str, password: str) -> dict[str, str]:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    assert client.get("/", headers=basic("ops", "wrong")).status_code == 401
    assert client.get("/", headers=basic("ops", "correct horse")).status_code == 200
    assert (
        client.get("/static/runstore.css", headers=basic("ops", "correct horse")).status_code == 200
    )


def _runstore(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runstore", *args], capture_output=True,
                          text=True, input=input, timeout=60)  # fmt: skip


def test_serving_beyond_this_machine_needs_an_auth_file(sqlite_db, tmp_path):
    Cli(sqlite_db)("db", "upgrade", "--quiet")
    refused = _runstore("ui", "--host", "0.0.0.0", "--db", sqlite_db)
    assert refused.returncode == 2
    assert refused.stderr.startswith("Error: --host 0.0.0.0 would serve the history to anyone")
    users = tmp_path / "users"
    made = _runstore("ui", "--add-user", "ops", "--auth-file", str(users), input="long enough pw\n")
    assert made.returncode == 0 and made.stdout == f"ops added to {users}\n"
    assert list(read_users(users)) == ["ops"]
    short = _runstore("ui", "--add-user", "x", "--auth-file", str(users), input="short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    bad = tmp_path / "bad-users"
    bad.write_text("ops:plaintext\n")
    said = _runstore("ui", "--auth-file", str(bad), "--db", sqlite_db)
    assert said.returncode == 2 and "is not user:pbkdf2_sha256$" in said.stderr


def test_a_port_in_use_is_one_error_line(sqlite_db):
    import socket

    Cli(sqlite_db)("db", "upgrade", "--quiet")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _runstore("ui", "--port", str(port), "--db", sqlite_db)
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use (try another --port)\n"
    )


def test_ui_against_a_missing_store_is_one_error_line(tmp_path):
    result = _runstore("ui", "--db", str(tmp_path / "none.db"))
    assert result.returncode == 1 and result.stderr.startswith("Error: no runstore store at ")
    assert not (tmp_path / "none.db").exists()
