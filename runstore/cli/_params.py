"""Option values without pydantic, for a fast start.

Typer (0.2x) coerces each option's value through a pydantic ``TypeAdapter`` that it builds before
looking at the value, even for an option that was not given: importing pydantic for that costs
more than all the rest of a short command such as ``runstore history``. ``plain_values`` gives
each option of a command a coercion that takes plain values as Typer would (nothing, a string,
a list of strings, a decimal integer within its bounds) and hands anything else to Typer's own,
built on first need, so errors read exactly as Typer words them. With a Typer that coerces
differently, nothing is changed.
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
            if isinstance(value, str) and _DECIMAL.fullmatch(value):
                number = int(value)
            elif type(value) is int:
                number = value
            else:
                return None
            if (info.min is None or number >= info.min) and (
                info.max is None or number <= info.max
            ):
                return number
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
