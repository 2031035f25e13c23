"""The Starlette application behind ``runstore ui``: the routes in one table, the templates, the
errors as pages (a 404 for an unknown run or job, a 400 for a bad parameter, never a traceback),
and basic authentication when an auth file is given. It reads the store and never writes it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from jinja2 import pass_context as jinja2_pass_context
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runstore.errors import RunNotFound, RunstoreError, UsageError
from runstore.store.store import Store
from runstore.ui import api, pages

HERE = Path(__file__).parent
log = logging.getLogger("runstore.ui")

ROUTES = [
    Route("/", pages.overview, name="overview"),
    Route("/runs", pages.runs, name="runs"),
    Route("/runs/{run_id:str}", pages.run, name="run"),
    Route("/runs/{run_id:str}/tail", pages.tail, name="tail"),
    Route("/jobs/{job:path}", pages.job, name="job"),
    Route("/compare", pages.compare, name="compare"),
    Route("/metrics", api.metrics, name="metrics"),
    Route("/api/jobs", api.jobs),
    Route("/api/runs", api.runs),
    Route("/api/runs/{run_id:str}", api.run),
    Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
]


def templates() -> Jinja2Templates:
    import jinja2

    from runstore.humanize import format_number, humane_duration

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["duration"] = lambda ms: humane_duration(ms) if ms is not None else ""
    env.filters["local"] = _local_time
    env.filters["percent"] = lambda x: f"{x:.0%}" if x is not None else ""
    env.filters["number"] = lambda x: format_number(x) if x is not None else ""
    env.filters["urlencode_with"] = _query
    env.globals["path_for"] = _path_for
    return Jinja2Templates(env=env)


@jinja2_pass_context
def _path_for(context: Any, name: str, /, **params: str) -> str:
    """A route's path (not a whole URL: right behind a proxy too), its parameters
    percent-encoded (a job name may hold '?', '#' or '%')."""
    from urllib.parse import quote

    quoted = {k: quote(str(v), safe="/" if k == "job" else "") for k, v in params.items()}
    return str(context["request"].app.url_path_for(name, **quoted))


def _query(params: dict[str, str], **extra: str) -> str:
    """A query string: the filters given (without the old cursor), and ``extra``."""
    from urllib.parse import urlencode

    kept = {k: v for k, v in params.items() if v and k != "before"}
    return urlencode({**kept, **extra})


def _local_time(moment: Any, millis: bool = False) -> str:
    from runstore.cli.table import cell

    return cell(moment, "time_ms" if millis else "time") if moment is not None else ""


def create_app(store: Store, *, users: dict[str, str] | None = None) -> Starlette:
    """The UI over ``store``; with ``users`` (an auth file's), every request must sign in."""
    from runstore.ui.auth import BasicAuth

    middleware = [Middleware(BasicAuth, users=users)] if users else []
    middleware.append(Middleware(_LastResort))
    app = Starlette(
        routes=ROUTES,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, RunstoreError: _runstore_error},
    )
    app.state.store = store
    app.state.templates = templates()
    return app


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    tpl = request.app.state.templates
    return tpl.TemplateResponse(request, "error.html", {"status": status, "message": message},
                                status_code=status)  # fmt: skip


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "no such page" if exc.status_code == 404 else str(exc.detail)
    return _error(request, exc.status_code, message)


async def _runstore_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, RunNotFound):
        return _error(request, 404, str(exc))
    if isinstance(exc, UsageError):
        return _error(request, 400, str(exc))
    return _error(request, 503, f"the store cannot answer: {exc}")


class _LastResort:
    """An unexpected error is a 500 page and one line in the server's log, never a traceback
    (Starlette's own handler would send the page, then raise for the server to log it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            from runstore.errors import describe

            request = Request(scope, receive)
            log.error("%s %s failed: %s", request.method, request.url.path, describe(exc))
            if not started:
                page = _error(request, 500, "something went wrong on this page; the log says what")
                await page(scope, receive, send)
