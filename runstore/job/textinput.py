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
from runstore.files import closed_at_start, descriptor
from runstore.humanize import CONTROL_CHARACTERS, escape_controls

MAX_LINE_BYTES = 64 * 1024
PREVIEW_CHARS = 80
_SNIFF_BYTES = 8192
_READ_BYTES = 64 * 1024
_LINE_END = re.compile(rb"\r\n|\r|\n")
# Bytes that may begin or end what str.strip() treats as whitespace but bytes.strip() does not.
_UNICODE_EDGE = frozenset(range(0x1C, 0x20)) | frozenset(range(0x80, 0x100))
_HASH = ord("#")


@dataclass(slots=True)
class Item:
    line: int  # 1-based line number in the file
    text: str | None  # the item, stripped; None when the line is bad
    error: str | None = None  # why the line is bad
    preview: str = ""  # a safe, short rendering of a bad line


def open_input(path: str | os.PathLike[str]) -> tuple[BinaryIO, str]:
    """Open ``path`` for reading items; InputError with one clear reason if it cannot be.
    ``-`` (or ``/dev/stdin``, ``/dev/fd/N``) is read from that descriptor, as it stands."""
    p = Path(path)
    fd = descriptor(os.fspath(path), reading=True)
    if closed_at_start(fd):
        raise InputError(f"cannot read input {p}: it was closed when runstore started")
    try:
        f = open(os.dup(fd) if fd is not None else p, "rb")  # noqa: SIM115 - the caller closes
    except FileNotFoundError:
        raise InputError(f"input file not found: {p}") from None
    except IsADirectoryError:
        raise InputError(f"input is a directory, not a file: {p}") from None
    except PermissionError:
        raise InputError(f"input file is not readable (permission denied): {p}") from None
    except OSError as exc:
        raise InputError(f"cannot read input {p}: {exc.strerror}") from None
    if fd is None and p.is_dir():
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
        bad = CONTROL_CHARACTERS.search(text)
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
    """How many items (good and bad) ``path`` holds: a quick first pass, on bytes, for the
    progress bar and the seed's ``item_count``; the same answer as the real pass, in bounded
    memory. Only for a regular file: a pipe can be read once (``files.is_regular_file``)."""
    f, encoding = open_input(path)
    with f:
        if encoding != "utf-8":
            return sum(1 for _ in iter_items(f, encoding))
        count = 0
        for number, (raw, size) in enumerate(_physical_lines(f), 1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            if size > MAX_LINE_BYTES:
                count += 1
                continue
            body = raw.strip()
            if not body:
                continue
            if body[0] in _UNICODE_EDGE or body[-1] in _UNICODE_EDGE:
                # Unicode may see more blank here (no-break spaces, \x1c): decide as the real pass.
                text = raw.decode("utf-8", "replace").strip()
                count += bool(text) and not text.startswith("#")
            elif body[0] != _HASH:
                count += 1
        return count


def _utf8_lines(f: BinaryIO) -> Iterator[tuple[int, str, str | None]]:
    for number, (raw, size) in enumerate(_physical_lines(f), 1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw, size = raw[len(codecs.BOM_UTF8) :], size - len(codecs.BOM_UTF8)
        if size > MAX_LINE_BYTES:
            yield (
                number,
                _preview(raw.decode("utf-8", "replace")),
                f"line too long ({size:,} bytes; the limit is {MAX_LINE_BYTES:,})",
            )
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            loose = raw.decode("utf-8", "replace").strip()
            if not loose or loose.startswith("#"):
                continue  # a comment with a stray byte (a Latin-1 accent) is still a comment
            yield (
                number,
                _preview(raw.decode("utf-8", "backslashreplace")),
                f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
            )
            continue
        yield number, text, None


def _physical_lines(f: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """Each line's bytes without its end (LF, CRLF or a lone CR) and its length in bytes.

    Reads in blocks, so a file with CR endings only is as many lines as it has. A line longer
    than MAX_LINE_BYTES is never held whole: only its start comes back, with its full length.
    """
    buf = b""
    head: bytes | None = None  # the start of an over-long line whose rest is being skipped
    skipped = 0
    while True:
        block = f.read(_READ_BYTES)
        buf += block
        # A CR at the end of a block may be the first half of a CRLF: decide with the next one.
        keep = b"\r" if block and buf.endswith(b"\r") else b""
        lines = _LINE_END.split(buf[:-1] if keep else buf)
        buf = lines.pop() + keep  # the last line, not finished yet
        for line in lines:
            if head is None:
                yield line, len(line)
            else:
                yield head, skipped + len(line)
                head = None
        if not block:
            if head is not None:
                yield head, skipped + len(buf)
            elif buf:
                yield buf, len(buf)
            return
        if len(buf) > MAX_LINE_BYTES:
            if head is None:
                head, skipped = buf[: PREVIEW_CHARS * 8], 0
            skipped += len(buf) - len(keep)
            buf = keep


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
    shown = escape_controls(text[: PREVIEW_CHARS * 2])
    return shown if len(shown) <= PREVIEW_CHARS else shown[: PREVIEW_CHARS - 1] + "…"
