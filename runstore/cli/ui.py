"""``runstore ui``: the history as pages in a browser (``runstore.ui``), served by uvicorn."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from runstore.cli._app import DbOption, app, fail

LOCAL = ("127.0.0.1", "localhost", "::1")


@app.command()
def ui(
    host: Annotated[
        str, typer.Option("--host", metavar="ADDRESS", help="The address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="The port to listen on.")
    ] = 8765,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the overview in a browser.")
    ] = False,
    auth_file: Annotated[
        Path | None,
        typer.Option(
            "--auth-file",
            metavar="FILE",
            help="Ask for a user and password (HTTP basic) of this file: needed to listen on "
            "any address but this machine's own.",
        ),
    ] = None,
    add_user: Annotated[
        str | None,
        typer.Option(
            "--add-user",
            metavar="NAME",
            help="Add NAME to --auth-file (its password read from the terminal or stdin), "
            "then exit.",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Serve the history as pages: jobs and their state, runs (filtered, paged), each run's
    timeline with a live tail while it runs, a job's duration chart and daily outcomes, two
    runs compared; `/metrics` and a JSON API (`/api/jobs`, `/api/runs`, `/api/runs/RUN`) too.

    Read-only: nothing it serves changes the store. It listens on 127.0.0.1 unless --host says
    otherwise, which needs --auth-file (`runstore ui --add-user NAME --auth-file FILE` makes one).

    Example: `runstore ui --open`
    """
    if add_user is not None:
        _add_user(add_user, auth_file, db)
        return
    from runstore.ui.auth import read_users

    users = read_users(auth_file) if auth_file is not None else None
    if host not in LOCAL and users is None:
        fail(
            f"--host {host} would serve the history to anyone who can reach it: give "
            "--auth-file (runstore ui --add-user NAME --auth-file FILE makes one)",
            2,
        )
    _check_port(host, port)
    from runstore.store.store import Store
    from runstore.ui.app import create_app

    application = create_app(Store.open_for_reading(db), users=users)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/"
    print(f"runstore ui: {url}  (Ctrl-C to stop)", file=sys.stderr, flush=True)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(0.5, webbrowser.open, [url]).start()
    import uvicorn

    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)


def _check_port(host: str, port: int) -> None:
    """A port already taken is one clear line, before uvicorn would log its own."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror} (try another --port)")


def _add_user(name: str, auth_file: Path | None, db: str | None) -> None:
    from runstore.files import refuse_clashes
    from runstore.store.location import resolve_db, store_files
    from runstore.ui.auth import add_user

    if auth_file is None:
        fail("--add-user needs --auth-file FILE: the file to add the user to", 2)
    refuse_clashes({"--auth-file": auth_file}, store_files=store_files(resolve_db(db)))
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            fail("the passwords differ", 2)
    else:
        password = sys.stdin.readline().rstrip("\n")
    add_user(auth_file, name, password)
    print(f"{name} added to {auth_file}")
