"""The command's output on its way to ours: written through, or held with --quiet and shown
only when it failed; a reader that leaves closes the command's pipe. Real pipes, no process."""

from __future__ import annotations

import os

from runstore.exec.capture import STDERR, STDOUT
from runstore.exec.passthrough import Passthrough


def read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def pipes() -> tuple[tuple[int, int], tuple[int, int]]:
    return os.pipe(), os.pipe()


def test_output_passes_through_unchanged_and_runstores_line_starts_on_a_new_line():
    (out_r, out_w), (err_r, err_w) = pipes()
    through = Passthrough(out_w, err_w, quiet=False)
    assert through.write(STDOUT, memoryview(b"all good\n"))
    assert through.write(STDERR, memoryview(b"half a line"))
    through.end_line()
    through.end_line()  # once: the line is already ended
    assert read_all(out_r) == b"all good\n"
    assert read_all(err_r) == b"half a line\n"
    for fd in (out_r, out_w, err_r, err_w):
        os.close(fd)


def test_a_reader_that_leaves_closes_the_commands_pipe_and_nothing_more_is_written():
    (out_r, out_w), (err_r, err_w) = pipes()
    through = Passthrough(out_w, err_w, quiet=False)
    os.close(out_r)
    assert through.write(STDOUT, memoryview(b"nobody reads this\n")) is False
    assert through.write(STDOUT, memoryview(b"nor this\n")) is True  # already let go
    assert through.write(STDERR, memoryview(b"stderr still works\n"))
    assert read_all(err_r) == b"stderr still works\n"
    for fd in (out_w, err_r, err_w):
        os.close(fd)


def test_quiet_output_shows_only_when_asked_in_the_order_it_came():
    (out_r, out_w), (err_r, err_w) = pipes()
    through = Passthrough(out_w, err_w, quiet=True)
    through.write(STDOUT, memoryview(b"one\n"))
    through.write(STDERR, memoryview(b"two\n"))
    assert read_all(out_r) == b"" and read_all(err_r) == b""
    through.show_spooled()
    through.close()
    assert read_all(out_r) == b"one\n"
    assert read_all(err_r) == b"two\n"
    for fd in (out_r, out_w, err_r, err_w):
        os.close(fd)
