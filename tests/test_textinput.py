"""Real-world text as `runstore run` reads it: line endings, byte order marks, UTF-16, broken
bytes, control characters, absurdly long lines, comments. A bad line fails as one item; the run
goes on."""

from __future__ import annotations

import codecs
import json
import re
import tracemalloc
from pathlib import Path

import pytest
from helpers import event_rows, run_row
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstore.errors import InputError
from runstore.job.pipeline import run_job
from runstore.job.textinput import MAX_LINE_BYTES, Item, count_items, iter_items, open_input


def read_items(path: Path) -> list[Item]:
    f, encoding = open_input(path)
    with f:
        items = list(iter_items(f, encoding))
    assert count_items(path) == len(items)  # the first pass (item_count) agrees
    return items


def items_of(tmp_path: Path, data: bytes) -> list[Item]:
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    return read_items(path)


def texts(items: list[Item]) -> list[str | None]:
    return [item.text for item in items]


# -- line endings -------------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_line_endings(tmp_path, eol):
    data = eol.join([b"alpha", b"beta", b"", b"gamma"]) + eol
    items = items_of(tmp_path, data)
    assert texts(items) == ["alpha", "beta", "gamma"]
    assert [i.line for i in items] == [1, 2, 4]


def test_mixed_line_endings(tmp_path):
    items = items_of(tmp_path, b"one\r\ntwo\nthree\rfour\r\n\rfive")
    assert texts(items) == ["one", "two", "three", "four", "five"]
    assert [i.line for i in items] == [1, 2, 3, 4, 6]


def test_cr_only_file_larger_than_the_line_limit(tmp_path):
    # An old Mac file has no LF at all: it must still be many lines, not one over-long line.
    lines = [f"item number {i}".encode() for i in range(10_000)]
    data = b"\r".join(lines) + b"\r"
    assert len(data) > 2 * MAX_LINE_BYTES
    items = items_of(tmp_path, data)
    assert len(items) == 10_000
    assert all(i.error is None for i in items)
    assert items[-1].text == "item number 9999"
    assert items[-1].line == 10_000


@pytest.mark.parametrize("first_line", [4095, 8191, 65535, MAX_LINE_BYTES])
def test_crlf_across_any_read_boundary_is_one_line_end(tmp_path, first_line):
    data = b"a" * first_line + b"\r\nb\r\nc"
    items = items_of(tmp_path, data)
    assert texts(items) == ["a" * first_line, "b", "c"]
    assert [i.line for i in items] == [1, 2, 3]


# -- encodings ----------------------------------------------------------------------------------


def test_utf8_byte_order_mark_is_dropped(tmp_path):
    items = items_of(tmp_path, codecs.BOM_UTF8 + "alpha\r\nZürich\r\n".encode())
    assert texts(items) == ["alpha", "Zürich"]


def test_utf8_byte_order_mark_before_a_comment(tmp_path):
    items = items_of(tmp_path, codecs.BOM_UTF8 + b"# header\nalpha\n")
    assert texts(items) == ["alpha"]
    assert items[0].line == 2


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_with_byte_order_mark(tmp_path, codec):
    text = "# Unicode text as Notepad saves it\r\nalpha\r\n\r\nZürich → 東京\r\n  beta  \r\n"
    bom = codecs.BOM_UTF16_LE if codec == "utf-16-le" else codecs.BOM_UTF16_BE
    items = items_of(tmp_path, bom + text.encode(codec))
    assert texts(items) == ["alpha", "Zürich → 東京", "beta"]
    assert [i.line for i in items] == [2, 4, 5]


def test_invalid_utf8_line_fails_as_one_item(tmp_path):
    data = b"good one\ncaf\xe9 au lait\ngood two\n"
    items = items_of(tmp_path, data)
    assert texts(items) == ["good one", None, "good two"]
    bad = items[1]
    assert bad.line == 2
    assert "not valid UTF-8" in (bad.error or "")
    assert "0xe9" in (bad.error or "")
    assert bad.preview == "caf\\xe9 au lait"


def test_comment_with_a_stray_latin1_byte_is_still_a_comment(tmp_path):
    data = "# Exporté le 3 mars\nalpha\n".encode("latin-1")
    assert texts(items_of(tmp_path, data)) == ["alpha"]


def test_nul_bytes_mean_binary_input(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(InputError, match="binary"):
        open_input(path)


def test_missing_input_and_directory_are_clear_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found") as missing:
        open_input(tmp_path / "nope.txt")
    assert str(tmp_path / "nope.txt") in str(missing.value)
    with pytest.raises(InputError, match="directory"):
        open_input(tmp_path)


# -- control characters, blanks, comments ---------------------------------------------------------


def test_control_characters_fail_the_item(tmp_path):
    data = b"bell\x07here\n\x1b[31mred\x1b[0m\ntab\tinside\n"
    items = items_of(tmp_path, data)
    assert texts(items) == [None, None, "tab\tinside"]
    assert items[0].error == "control character U+0007 at column 5"
    assert items[0].preview == "bell\\x07here"
    assert "U+001B" in (items[1].error or "")


def test_blank_lines_and_comments_are_skipped(tmp_path):
    data = (
        b"# a comment\n\n   \n\t\n  # indented comment\n  spaced item  \nitem # not a comment\n#\n"
    )
    items = items_of(tmp_path, data)
    assert texts(items) == ["spaced item", "item # not a comment"]
    assert [i.line for i in items] == [6, 7]


def test_empty_file_has_no_items(tmp_path):
    assert items_of(tmp_path, b"") == []
    assert items_of(tmp_path, codecs.BOM_UTF8) == []
    assert items_of(tmp_path, b"\n\n# only comments\n") == []


# -- long lines ---------------------------------------------------------------------------------


def test_line_at_the_limit_is_an_item_one_byte_more_is_not(tmp_path):
    at_limit = b"a" * MAX_LINE_BYTES
    over = b"b" * (MAX_LINE_BYTES + 1)
    for eol in (b"\n", b"\r\n", b"\r", b""):
        items = items_of(tmp_path, at_limit + b"\n" + over + eol)
        assert items[0].text == "a" * MAX_LINE_BYTES, eol
        assert items[1].text is None, eol
        assert f"{MAX_LINE_BYTES + 1:,} bytes" in (items[1].error or ""), eol


def test_absurdly_long_line_fails_as_an_item_in_bounded_memory(tmp_path):
    path = tmp_path / "input.txt"
    size = 32 * 1024 * 1024
    with path.open("wb") as f:
        f.write(b"before\n")
        f.write(b"x" * size)
        f.write(b"\nafter\n")
    tracemalloc.start()
    try:
        items = read_items(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert texts(items) == ["before", None, "after"]
    assert [i.line for i in items] == [1, 2, 3]
    assert "too long" in (items[1].error or "")
    assert f"{size:,}" in (items[1].error or "")
    assert len(items[1].preview) <= 80
    assert peak < 4 * 1024 * 1024, f"reading a {size:,}-byte line peaked at {peak:,} bytes"


def test_counting_items_first_also_reads_in_bounded_memory(tmp_path):
    # `runstore run` counts the items before processing them: that pass must not load a
    # file without line ends (a minified dump, a CR-only export) into memory either.
    path = tmp_path / "one-line.txt"
    size = 32 * 1024 * 1024
    path.write_bytes(b"y" * size)
    tracemalloc.start()
    try:
        assert count_items(path) == 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, f"counting a {size:,}-byte line peaked at {peak:,} bytes"


def test_item_count_agrees_with_the_items_for_unicode_blanks(tmp_path):
    nbsp, ideographic = "\u00a0".encode(), "\u3000".encode()
    data = (
        b"a\n" + nbsp + b"\n\x1c\n\x1c# note\n" + ideographic + b"#x\n" + nbsp + b"b" + nbsp + b"\n"
    )
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    assert texts(read_items(path)) == ["a", "b"]
    assert count_items(path) == 2


def test_long_utf16_line_fails_as_an_item(tmp_path):
    text = "short\r\n" + "y" * (MAX_LINE_BYTES + 10) + "\r\nlast\r\n"
    items = items_of(tmp_path, codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    assert texts(items) == ["short", None, "last"]
    assert "too long" in (items[1].error or "")


# -- any bytes at all ---------------------------------------------------------------------------

_LINE_END = re.compile(rb"\r\n|\r|\n")
_PIECES = st.sampled_from(
    [
        *(b"a", b"item", b" ", b"\t", b"#", b"\n", b"\r", b"\r\n", b"\x0c"),
        *(b"\xff", b"\xe9", b"\xc3\xa9", b"\xe2\x82", b"\xc2\x85", b"\xef\xbb\xbf"),
        *(b"\x07", b"\x1b", b"\x7f", b"\x1f"),
    ]
)
_ANY_BYTES = st.one_of(st.binary(max_size=400), st.lists(_PIECES, max_size=60).map(b"".join))


def expected_item_lines(data: bytes) -> list[int]:
    """The numbers of the lines that are items: not blank, not a # comment."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    numbers = []
    for number, raw in enumerate(_LINE_END.split(data), 1):
        text = raw.decode("utf-8", "replace").strip()
        if text and not text.startswith("#"):
            numbers.append(number)
    return numbers


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_ANY_BYTES)
def test_any_bytes_give_one_item_per_line_that_is_not_blank_or_comment(tmp_path_factory, data):
    data = data.replace(b"\x00", b"\x01")  # NUL means binary input: refused as a whole
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        data = b"x" + data
    path = tmp_path_factory.mktemp("any") / "input.txt"
    path.write_bytes(data)

    items = read_items(path)

    assert [i.line for i in items] == expected_item_lines(data)
    assert count_items(path) == len(items)
    for item in items:
        assert (item.text is None) == (item.error is not None)
        if item.text is not None:
            assert item.text == item.text.strip() and item.text
            assert not item.text.startswith("#")
        else:
            assert len(item.preview) <= 80
            json.dumps(item.preview)  # safe to put in an event


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400), big_endian=st.booleans())
def test_any_bytes_after_a_utf16_mark_never_crash(tmp_path_factory, data, big_endian):
    bom = codecs.BOM_UTF16_BE if big_endian else codecs.BOM_UTF16_LE
    path = tmp_path_factory.mktemp("utf16") / "input.txt"
    path.write_bytes(bom + data)
    items = read_items(path)
    assert [i.line for i in items] == sorted({i.line for i in items})
    assert all((i.text is None) == (i.error is not None) for i in items)


# -- through the job ----------------------------------------------------------------------------


def test_bad_lines_fail_as_items_and_the_run_goes_on(db, tmp_path):
    source = tmp_path / "input.txt"
    source.write_bytes(b"first\r\nbad \xff byte\r\nbell\x07\r\n" + b"z" * 70_000 + b"\r\nlast\r\n")
    output = tmp_path / "processed.json"
    summary, problem = run_job(
        input_path=source,
        output_path=output,
        log_path=None,
        run_id="messy",
        job="process-lines",
        db=db,
    )
    assert not problem
    assert summary["status"] == "completed"
    assert summary["items"] == {"total": 5, "ok": 2, "failed": 3}

    row = run_row(db, "messy")
    assert (row["status"], row["items_ok"], row["items_failed"]) == ("completed", 2, 3)
    failed = [e for e in event_rows(db, "messy") if e["event_type"] == "item_failed"]
    assert [e["level"] for e in failed] == ["warning"] * 3
    assert [e["data"]["line"] for e in failed] == [2, 3, 4]
    assert "not valid UTF-8" in failed[0]["message"]
    assert "control character" in failed[1]["message"]
    assert "too long" in failed[2]["message"]

    records = json.loads(output.read_text(encoding="utf-8"))
    assert [r["processed"] for r in records] == [True, False, False, False, True]
    assert [r["item"] for r in records][0::4] == ["first", "last"]
    assert all(r["error"] for r in records if not r["processed"])
    assert len(records[3]["item"]) <= 80
