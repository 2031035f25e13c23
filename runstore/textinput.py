"""Reading a job's input as items, one per line, whatever accidents real text files carry.

Line endings may be LF, CRLF or CR; a UTF-8 byte order mark is dropped, and a UTF-16 file (with
its byte order mark, as some editors save "Unicode") is decoded as such. Blank lines and ``#``
comments are skipped. A line that is not valid UTF-8, holds control characters or is absurdly
long becomes a *bad item* with a reason: the job records it as failed and goes on. Memory stays
bounded: a line is never read past the length limit.
"""

from __future__ import annotations

import codecs
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runstore.errors import InputError

MAX_LINE_BYTES = 64 * 1024
PREVIEW_CHARS = 80
_SNIFF_BYTES = 8192
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(slots=True)
class Item:
    line: int  # 1-based line number in the file
    text: str | None  # the item, stripped; None when the line is bad
    error: str | None = None  # why the line is bad
    preview: str = ""  # a safe, short rendering of a bad line


def open_input(path: str | os.PathLike[str]) -> tuple[BinaryIO, str]:
    """Open ``path`` for reading items; InputError with one clear reason if it cannot be."""
    p = Path(path)
    try:
        f = open(p, "rb")  # noqa: SIM115 - returned to the caller
    except FileNotFoundError:
        raise InputError(f"input file not found: {p}") from None
    except IsADirectoryError:
        raise InputError(f"input is a directory, not a file: {p}") from None
    except PermissionError:
        raise InputError(f"input file is not readable (permission denied): {p}") from None
    except OSError as exc:
        raise InputError(f"cannot read input {p}: {exc.strerror}") from None
    if p.is_dir():
        f.close()
        raise InputError(f"input is a directory, not a file: {p}")
    head = f.peek(_SNIFF_BYTES)[:_SNIFF_BYTES] if isinstance(f, io.BufferedReader) else b""
    encoding = "utf-16" if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8"
    if encoding == "utf-8" and b"\x00" in head:
        f.close()
        offset = head.index(b"\x00")
        raise InputError(f"input looks binary, not text (NUL byte at offset {offset}): {p}")
    return f, encoding


def iter_items(f: BinaryIO, encoding: str = "utf-8") -> Iterator[Item]:
    """Yield the items of an open input, skipping blank lines and comments."""
    lines = _utf16_lines(f) if encoding == "utf-16" else _utf8_lines(f)
    for number, text, error in lines:
        if error is not None:
            yield Item(number, None, error, text)
            continue
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        bad = _CONTROL.search(text)
        if bad is not None:
            yield Item(
                number,
                None,
                f"control character U+{ord(bad.group()):04X} at column {bad.start() + 1}",
                _preview(text),
            )
            continue
        yield Item(number, text)


def count_items(path: str | os.PathLike[str]) -> int:
    """How many items (good and bad) ``path`` holds: a first pass for progress and the seed's
    ``item_count``."""
    f, encoding = open_input(path)
    with f:
        return sum(1 for _ in iter_items(f, encoding))


def _utf8_lines(f: BinaryIO) -> Iterator[tuple[int, str, str | None]]:
    number = 0
    first = True
    while True:
        raw = f.readline(MAX_LINE_BYTES + 2)
        if not raw:
            return
        if first:
            first = False
            if raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
        if not raw.endswith(b"\n") and len(raw) > MAX_LINE_BYTES:
            number += 1
            size = len(raw) + _skip_rest_of_line(f)
            yield (
                number,
                _preview(raw.decode("utf-8", "replace")),
                (f"line too long ({size:,} bytes; the limit is {MAX_LINE_BYTES:,})"),
            )
            continue
        body = raw.rstrip(b"\r\n")
        # A CR inside the line: an old Mac file, or mixed endings. Each piece is a line.
        pieces = body.split(b"\r") if b"\r" in body else (body,)
        for piece in pieces:
            number += 1
            try:
                yield number, piece.decode("utf-8"), None
            except UnicodeDecodeError as exc:
                yield (
                    number,
                    _preview(piece.decode("utf-8", "backslashreplace")),
                    (f"not valid UTF-8 (byte 0x{piece[exc.start]:02x} at column {exc.start + 1})"),
                )


def _skip_rest_of_line(f: BinaryIO) -> int:
    skipped = 0
    while True:
        chunk = f.readline(1 << 20)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped


def _utf16_lines(f: BinaryIO) -> Iterator[tuple[int, str, str | None]]:
    text = io.TextIOWrapper(f, encoding="utf-16", errors="strict", newline=None)
    number = 0
    try:
        while True:
            line = text.readline(MAX_LINE_BYTES // 2 + 1)
            if not line:
                return
            number += 1
            if not line.endswith("\n") and len(line) > MAX_LINE_BYTES // 2:
                while (rest := text.readline(1 << 19)) and not rest.endswith("\n"):
                    pass
                yield number, _preview(line), f"line too long (over {MAX_LINE_BYTES:,} bytes)"
                continue
            yield number, line.rstrip("\n"), None
    except UnicodeDecodeError as exc:
        yield number + 1, "", f"not valid UTF-16 ({exc.reason}); the rest of the input is skipped"
    finally:
        text.detach()


def _preview(text: str) -> str:
    shown = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text[: PREVIEW_CHARS * 2])
    return shown if len(shown) <= PREVIEW_CHARS else shown[: PREVIEW_CHARS - 1] + "…"
