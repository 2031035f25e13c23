"""The JSON API (``/api/jobs``, ``/api/runs``, ``/api/runs/{run_id}``) and ``/metrics``: what the
pages show, for scripts; times as ISO-8601 UTC, durations in milliseconds."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runstore.history import browse
from runstore.ui import data
from runstore.ui.pages import _store


def _plain(value: Any) -> Any:
    from runstore.cli.output import raw_value

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "id"}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return raw_value(value)


def jobs(request: Request) -> Response:
    rows = data.overview(_store(request))
    for row in rows:
        row["recent"] = [{"run_id": r["run_id"], "status": r["status"],
                          "duration_ms": r["duration_ms"]} for r in row["recent"]]  # fmt: skip
    return JSONResponse(_plain({"jobs": rows}))


def runs(request: Request) -> Response:
    params = request.query_params
    page = browse.runs_page(
        _store(request), data.history_filter(params),
        before=data.decode_cursor(params.get("before")),
        size=data.whole_number(params, "limit", data.PAGE_SIZE, 1000) or data.PAGE_SIZE,
    )  # fmt: skip
    return JSONResponse(_plain({"runs": page.rows, "next": data.encode_cursor(page.next_cursor)}))


def run(request: Request) -> Response:
    store = _store(request)
    record = browse.run_by_id(store, request.path_params["run_id"])
    params = request.query_params
    after = data.whole_number(params, "after", 0, 2**62)
    size = data.whole_number(params, "limit", data.EVENTS_PAGE, data.MAX_EVENTS_PAGE) or 1
    rows = data.event_rows(browse.events_page(store, record["id"], after_seq=after, size=size))
    more = len(rows) == size
    return JSONResponse(_plain({
        "run": {**record, "tags": store.run_tags(record["id"])},
        "events": [row.as_dict() for row in rows],
        "next_after": rows[-1].seq if more else None,
    }))  # fmt: skip


def metrics(request: Request) -> Response:
    from runstore.health.metrics import exposition

    return Response(exposition(_store(request)),
                    media_type="text/plain; version=0.0.4; charset=utf-8")  # fmt: skip
