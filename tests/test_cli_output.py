"""What people and tools see: stored text is shown as text (never markup or terminal control),
and machine formats are always valid JSON."""

from __future__ import annotations

import json
from datetime import timedelta

from runstore.cli.output import Column, Format, emit

COLUMNS = [Column("job", "JOB"), Column("line", "LINE")]
HOSTILE = {"job": "[red]x[/red]", "line": "[/usr/lib] missing \x1b]0;pwned\x07\x1b[31mRED"}


def test_table_and_text_show_stored_text_as_it_is_without_control_characters(capsys):
    for fmt in (Format.TABLE, Format.TEXT):
        emit([HOSTILE], COLUMNS, fmt)
        shown = capsys.readouterr().out
        assert "[red]x[/red]" in shown.replace("\n", "").replace(" ", "")  # not read as markup
        assert "[/usr/lib]" in shown
        assert "\x1b" not in shown.replace("\x1b[1m", "").replace("\x1b[0m", "")
        assert "\\x1b]0;pwned\\x07" in shown.replace("\n", "").replace(" ", "")


def test_machine_formats_are_valid_json_for_values_json_cannot_hold(capsys):
    row = {"inf": float("inf"), "nan": float("nan"), "gap": timedelta(days=1, seconds=1.5)}
    columns = [Column(k, k) for k in row]
    emit([row], columns, Format.JSON)
    assert json.loads(capsys.readouterr().out) == [{"inf": None, "nan": None, "gap": 86401.5}]
    emit([row], columns, Format.JSONL)
    assert json.loads(capsys.readouterr().out) == {"inf": None, "nan": None, "gap": 86401.5}
