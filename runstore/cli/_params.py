"""Option values without pydantic, and help that reads like a person wrote it.

Typer (0.2x) coerces each option's value through a pydantic ``TypeAdapter`` that it builds before
looking at the value, even for an option that was not given: importing pydantic for that costs
more than all the rest of a short command such as ``runstore history``. ``plain_values`` gives
each option of a command a coercion that takes plain values as Typer would (nothing, a string,
a list of strings, a whole number within its bounds, one of an enum's values) and refuses a bad
one in plain words (``'abc' is not a whole number``, not pydantic's); anything else goes to
Typer's own, built on first need. With a Typer that coerces differently, nothing is changed.

Its help is made plain too: an option shows a metavar (``--since WHEN``, ``--limit N``; a flag
none) instead of a type (``<bool>``, ``<list[str]>``), no ``[0<=x<=4611686018427387904]``, and
a required argument is ``CMD...`` in the usage line, not ``{CMD}...``.
"""

from __future__ import annotations

import re
from typing import Any

_DECIMAL = re.compile(r"-?[0-9]{1,18}")
_LIST_OF_STR = list[str]


class _PlainCoercion:
    """Stands in for Typer's runtime coercion of one parameter."""

    __slots__ = ("_descriptor", "_typer")

    def __init__(self, descriptor: Any) -> None:
        self._descriptor = descriptor
        self._typer: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multiple = param.multiple or param.nargs == -1
        if value is None:
            return () if multiple else None
        plain = self._plain(value, multiple)
        if plain is not None:
            return plain
        if self._typer is None:
            from typer._coercion import build_runtime_param

            self._typer = build_runtime_param(self._descriptor)
        return self._typer.coerce(value, param=param, ctx=ctx)

    def _plain(self, value: Any, multiple: bool) -> Any:
        descriptor = self._descriptor
        kind, info = descriptor.annotation, descriptor.parameter_info
        if info.parser is not None or descriptor.file_annotation is not None:
            return None
        if kind is str and not multiple and isinstance(value, str):
            return value
        if kind == _LIST_OF_STR and multiple and isinstance(value, (list, tuple)):
            return list(value) if all(isinstance(v, str) for v in value) else None
        if kind is int and not multiple and not info.clamp:
            if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
                number = int(value)
            elif type(value) is int:
                number = value
            else:
                raise _bad(f"{value!r} is not a whole number")
            if info.min is not None and number < info.min:
                raise _bad(f"{number} is less than {info.min}")
            if info.max is not None and number > info.max:
                raise _bad(f"{number} is more than {info.max:,}")
            return number
        choices = _enum_values(kind)
        if choices is not None and not multiple and isinstance(value, str):
            if value in choices:
                return kind(value)
            raise _bad(f"{value!r} is not one of {', '.join(choices)}")
        return None


def _bad(message: str) -> Exception:
    from typer._click.exceptions import BadParameter

    return BadParameter(message)


def _enum_values(kind: Any) -> list[str] | None:
    from enum import Enum

    if isinstance(kind, type) and issubclass(kind, Enum):
        return [str(member.value) for member in kind]
    return None


def plain_values(command: Any) -> None:
    """Give the parameters of ``command`` (and of its subcommands) the plain coercion; its help
    option too, which Typer creates when the command line is parsed."""
    for param in getattr(command, "params", ()):
        _plain_param(param)
    make_help_option = getattr(command, "get_help_option", None)
    if make_help_option is not None:

        def get_help_option(ctx: Any) -> Any:
            option = make_help_option(ctx)
            _plain_param(option)
            return option

        command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        plain_values(sub)


def _plain_param(param: Any) -> None:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and getattr(param, "_runtime_param", False) is None:
        param._runtime_param = _PlainCoercion(descriptor)
    if descriptor is not None:
        _plain_help(param, descriptor)


def _plain_help(param: Any, descriptor: Any) -> None:
    """The parameter's help as click shows it: a metavar, not a type; no range."""
    metavar = None if getattr(param, "is_flag", False) else _metavar(param, descriptor)
    param.display_type_rich = lambda ctx=None: metavar
    param.display_type = lambda ctx=None: metavar or ""
    param._get_number_range_help_str = lambda: None
    if param.param_type_name == "argument":
        name = param.metavar or param.name.upper()
        many = "..." if param.nargs != 1 else ""
        usage = f"{name}{many}" if param.required else f"[{name}]{many}"
        param._usage_display_name = lambda: usage
        param._rich_display_name = lambda: f"{name}{many}"
        param.display_type_rich = lambda ctx=None: None


# The words help shows for the values options take, by parameter name (else the name itself).
_METAVARS = {
    "since": "WHEN", "until": "WHEN", "db": "STORE", "job": "NAME", "run_id": "ID",
    "status": "STATUSES", "event_type": "TYPE", "data": "JSON", "stream": "STREAM",
    **dict.fromkeys(("input", "output", "log"), "FILE"),
    **dict.fromkeys(("timeout", "kill_after", "min_duration", "max_duration", "max_age",
                     "stale_after", "older_than"), "DURATION"),
}  # fmt: skip


def _metavar(param: Any, descriptor: Any) -> str:
    if param.metavar:
        return str(param.metavar)
    if param.name in _METAVARS:
        return _METAVARS[param.name]
    choices = _enum_values(descriptor.annotation)
    if choices is not None:
        return "|".join(choices)
    if descriptor.annotation is int:
        return "N"
    if descriptor.is_path:
        return "PATH"
    return str(param.name).upper()
