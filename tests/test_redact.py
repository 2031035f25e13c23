"""Secrets never reach the store: every shape in the README's table, as argv words, inside a shell
script and inside a script inside a script; a property test that no generated secret survives;
nothing else is lost; and the places a secret reaches (the command, the job name, the error
summary, the command's own environment) are all covered."""

from __future__ import annotations

import json
import os
import shlex
import string
import subprocess
import sys

import pytest
from conftest import REPO, Cli, query
from hypothesis import given
from hypothesis import strategies as st

from runstore.exec.naming import default_job_name
from runstore.exec.recorder import store_for_child
from runstore.redact import command_line, redact_text

# One argv per shape; {s} is the secret.
SHAPES = [
    ["mysql", "-uroot", "-p{s}", "db"],
    ["mysqldump", "-p{s}", "--all-databases"],
    ["mariadb", "--password={s}", "db"],
    ["redis-cli", "-a", "{s}", "ping"],
    ["sshpass", "-p", "{s}", "ssh", "host"],
    ["sshpass", "-p{s}", "ssh", "host"],
    ["curl", "-u", "user:{s}", "https://h/x"],
    ["curl", "--user", "user:{s}", "https://h/x"],
    ["wget", "--password={s}", "https://h/x"],
    ["wget", "--http-password", "{s}", "https://h/x"],
    ["ldapsearch", "-x", "-w", "{s}", "-b", "dc=example"],
    ["smbclient", "-U", "user%{s}", "//h/share"],
    ["lftp", "-u", "user,{s}", "ftp.example"],
    ["docker", "login", "-u", "bob", "-p", "{s}", "registry.example"],
    ["mongodump", "--username", "bob", "-p", "{s}"],
    ["zip", "-P", "{s}", "a.zip", "file"],
    ["7z", "a", "-p{s}", "a.7z", "file"],
    ["sqlcmd", "-S", "h", "-P", "{s}"],
    ["openssl", "enc", "-aes256", "-pass", "pass:{s}"],
    ["snmpwalk", "-v2c", "-c", "{s}", "host"],
    ["tool", "--pw", "{s}"],
    ["tool", "--key", "{s}"],
    ["tool", "--api-key={s}"],
    ["tool", "--password", "--token", "{s}"],
    ["git", "clone", "https://{s}@github.com/x/y.git"],
    ["curl", "https://h/x?access_token={s}"],
    ["curl", "https://h/x?a=1&api_key={s}&b=2"],
    ["psql", "postgresql://user:{s}@h/db"],
    ["psql", "postgresql://user:pa/{s}@h/db"],
    ["psql", "postgresql://user:pa@{s}@h/db"],
    ["psql", "host=h user=u password={s} dbname=x"],
    ["curl", "-H", "Authorization:{s}", "https://h"],
    ["curl", "-H", "Authorization: Bearer {s}", "https://h"],
    ["curl", "-H", "X-Auth-Token: {s}", "https://h"],
    ["curl", "-H", "X-Api-Key:{s}", "https://h"],
    ["curl", "-H", "Cookie: session={s}", "https://h"],
    ["curl", "-d", '{"password": "{s}"}', "https://h"],
    ["env", "PGPASSWORD={s}", "psql"],
    ["python3", "-c", "token = '{s}'; run(token)"],
]
SECRET = "Zq7SecretVal"


def _fill(shape: list[str], secret: str) -> list[str]:
    return [word.replace("{s}", secret) for word in shape]


def _nestings(argv: list[str]) -> list[list[str]]:
    """The shape as argv, inside `sh -c`, and inside `bash -c "sh -c '...'"`."""
    script = shlex.join(argv)
    return [argv, ["sh", "-c", script], ["bash", "-c", shlex.join(["sh", "-c", script])]]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: " ".join(s)[:40])
def test_every_shape_is_redacted_at_every_depth(shape):
    for argv in _nestings(_fill(shape, SECRET)):
        stored = command_line(argv)
        assert SECRET not in stored, stored
        assert "***" in stored
    assert SECRET not in redact_text(shlex.join(_fill(shape, SECRET)))


secrets = st.text(string.ascii_letters + string.digits + "!%^*_+~", min_size=8, max_size=24).map(
    lambda s: "Q9" + s
)


@given(shape=st.sampled_from(SHAPES), secret=secrets, depth=st.integers(0, 2))
def test_no_generated_secret_survives(shape, secret, depth):
    argv = _nestings(_fill(shape, secret))[depth]
    assert secret not in command_line(argv)


@pytest.mark.parametrize(
    ("argv", "stored"),
    [
        (["rsync", "-a", "/data", "/backup"], "rsync -a /data /backup"),
        (["mkdir", "-p", "/var/backups"], "mkdir -p /var/backups"),
        (["psql", "-p", "5432", "-d", "db"], "psql -p 5432 -d db"),
        (["mysql", "-p", "db"], "mysql -p db"),  # -p alone asks for the password
        (["pg_dump", "--no-password", "mydb"], "pg_dump --no-password mydb"),
        (["sh", "-c", "PGPASSWORD=x true psql"], "sh -c 'PGPASSWORD=*** true psql'"),
        (["sh", "-c", "echo the password is in the vault"],
         "sh -c 'echo the password is in the vault'"),
        (["curl", "https://host:8080/path/user@example.com"],
         "curl https://host:8080/path/user@example.com"),
        (["ssh", "git@github.com"], "ssh git@github.com"),
        (["curl", "https://bob:pw@api.example.com/v1/users?email=ann@example.com"],
         "curl 'https://bob:***@api.example.com/v1/users?email=ann@example.com'"),
        (["curl", "https://a:p1@h1/,https://b:p2@h2/"],
         "curl 'https://a:***@h1/,https://b:***@h2/'"),
    ],
)  # fmt: skip
def test_nothing_but_the_secret_is_lost(argv, stored):
    assert command_line(argv) == stored


def test_the_job_name_and_the_error_summary_never_hold_the_secret(sqlite_db, tmp_path):
    cli = Cli(sqlite_db)
    result = cli("exec", "--", f"PGPASSWORD={SECRET}", "psql", "-c", "select 1")
    assert result.exit_code == 127
    assert SECRET not in result.stderr
    rows = query(sqlite_db, "select job, error_summary, command from runs")
    assert rows[0]["job"] == "psql"
    assert SECRET not in json.dumps(rows)
    events = query(sqlite_db, "select message, data from events")
    assert SECRET not in json.dumps(events)
    assert default_job_name([f"DB_TOKEN={SECRET}", "./load.sh"]) == "load"


def test_the_commands_store_address_carries_no_password(tmp_path):
    url = f"postgresql+psycopg://ops:{SECRET}@db.example:5433/runs"
    address, passfile = store_for_child(url)
    try:
        assert address == "postgresql+psycopg://ops@db.example:5433/runs"
        assert passfile is not None
        assert oct(passfile.stat().st_mode & 0o777) == "0o600"
        assert passfile.read_text().splitlines()[0] == f"db.example:5433:runs:ops:{SECRET}"
    finally:
        if passfile is not None:
            passfile.unlink()
    assert store_for_child("postgresql+psycopg://ops@db/runs") == (
        "postgresql+psycopg://ops@db/runs",
        None,
    )


def test_a_command_printing_its_environment_records_no_password(postgres_db):
    from sqlalchemy.engine import make_url

    url = make_url(postgres_db).set(password=SECRET).render_as_string(hide_password=False)
    env = {**os.environ, "PYTHONPATH": str(REPO), "RUNSTORE_DB": url,
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}  # fmt: skip
    script = (
        f'env; {sys.executable} -m runstore event "from the child"; test -f "$PGPASSFILE" && '
        'echo "passfile=$PGPASSFILE"'
    )
    done = subprocess.run([sys.executable, "-m", "runstore", "exec", "--run-id", "envy", "--",
                           "sh", "-c", script], capture_output=True, text=True, env=env,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout  # the child's environment: no password
    stored = query(postgres_db, "select e.message, e.data from events e")
    assert "from the child" in json.dumps(stored)  # the child still reached the store
    assert SECRET not in json.dumps(stored)
    passfile = done.stdout.split("passfile=", 1)[1].strip()
    assert passfile and not os.path.exists(passfile)  # there while the command ran, gone after
