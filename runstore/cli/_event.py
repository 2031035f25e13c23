"""``runstore event`` inside ``runstore exec``, at the cost of a Python start and little more.

When the run has an events channel (``RUNSTORE_EVENTS``), the event goes down it: no Typer, no
SQLAlchemy, no store. This module reads the common forms of the command line by itself; for
anything else (``--help``, ``--run-id``, ``--db``, a value to be refused) it declines, and the
full command runs, with its checks and its messages.
"""

from __future__ import annotations

import json

from runstore.channel import METRIC, default_event_type, encode, metric_fields, send
from runstore.store.limits import LEVELS, MAX_EVENT_TYPE, metric_problem

_VALUE_OPTIONS = {
    "--level": "level", "-l": "level", "--type": "type", "-t": "type", "--data": "data",
    "-d": "data", "--metric": "metric", "-m": "metric", "--step": "step",
}  # fmt: skip
_RESERVED = ("type", "level", "message")


def send_from_shell(args: list[str]) -> bool:
    """Send the event and metrics that ``args`` (the words after ``event``) describe down the
    channel; False when this path declines and nothing was sent."""
    words = _read(args)
    if words is None:
        return False
    message, values, metrics = words
    level = values.get("level", "info")
    event_type = values.get("type", default_event_type(level))
    if level not in LEVELS or not event_type.strip() or len(event_type) > MAX_EVENT_TYPE:
        return False
    fields = {}
    if "data" in values:
        try:
            fields = json.loads(values["data"])
        except ValueError:
            return False
        if not isinstance(fields, dict) or any(key in fields for key in _RESERVED):
            return False
    lines = (
        []
        if message is None
        else [encode(event_type, level, message, {"message": message, **fields})]
    )
    step = None
    if "step" in values:
        if not values["step"].isdigit():
            return False
        step = int(values["step"])
    for text in metrics:
        metric = _metric(text, step)
        if metric is None:
            return False
        lines.append(encode(METRIC, "info", None, metric))
    return bool(lines) and send(b"".join(lines))


def _metric(text: str, step: int | None) -> dict[str, object] | None:
    """``rows=120`` as a metric's channel fields, or None for one the full command refuses."""
    name, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        return None
    if not sep or metric_problem(name, number, step) is not None:
        return None
    return metric_fields(name, number, step)


def _read(args: list[str]) -> tuple[str | None, dict[str, str], list[str]] | None:
    """The message, the option values and the metrics, or None for a form left to the full
    command."""
    message: str | None = None
    values: dict[str, str] = {}
    metrics: list[str] = []
    words = iter(args)
    for word in words:
        if word == "--":
            rest = list(words)
            if message is not None or len(rest) != 1:
                return None
            message = rest[0]
        elif word.startswith("-") and word != "-":
            name, has_value, value = word.partition("=")
            key = _VALUE_OPTIONS.get(name)
            if key is None or key in values or (has_value and not name.startswith("--")):
                return None
            if not has_value:
                following = next(words, None)
                if following is None:
                    return None
                value = following
            if key == "metric":
                metrics.append(value)
            else:
                values[key] = value
        elif message is None:
            message = word
        else:
            return None
    return (message, values, metrics) if message is not None or metrics else None
