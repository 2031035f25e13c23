"""The loop that moves a command's output: read its pipes as it writes, hand each chunk on, and
keep the clock (the timeout, the kill after it, memory samples, the drain after exit). It moves
bytes and keeps time; what the bytes and the moments mean is the caller's business."""

from __future__ import annotations

import os
import select
import selectors
import time
from dataclasses import dataclass
from typing import Protocol

READ_SIZE = 1 << 20
CHANNEL_READ_SIZE = 1 << 16
# After the command exits, output still held open by its background children is read until it
# goes quiet this long (the command's own output is already in the pipe, at most PIPE_SIZE).
DRAIN_QUIET_S = 0.5
DRAIN_MAX_S = 5.0
# The command's memory is sampled from /proc at growing intervals, from the first to the last.
SAMPLE_FIRST_S = 0.005
SAMPLE_MAX_S = 2.0


@dataclass
class Deadlines:
    """The moments the pump keeps: each is None once passed (or when there is none)."""

    timeout_at: float | None
    kill_after: float
    sample_at: float
    sample_every: float = SAMPLE_FIRST_S
    kill_at: float | None = None
    exited_at: float | None = None
    last_data: float = 0.0

    @classmethod
    def starting(cls, now: float, timeout: float | None, kill_after: float) -> Deadlines:
        return cls(
            timeout_at=now + timeout if timeout is not None else None,
            kill_after=kill_after,
            sample_at=now + SAMPLE_FIRST_S,
            last_data=now,
        )

    def due(self, now: float) -> list[str]:
        """What is due now, and moves on: "sample", "timeout", "kill"."""
        due: list[str] = []
        if self.exited_at is not None:
            return due
        if now >= self.sample_at:
            due.append("sample")
            self.sample_every = min(SAMPLE_MAX_S, self.sample_every * 2)
            self.sample_at = now + self.sample_every
        if self.timeout_at is not None and now >= self.timeout_at:
            due.append("timeout")
            self.timeout_at = None
            self.kill_at = now + self.kill_after
        if self.kill_at is not None and now >= self.kill_at:
            due.append("kill")
            self.kill_at = None
        return due

    def drained(self, now: float, open_pipes: int) -> bool:
        """After the exit: all pipes closed, quiet for DRAIN_QUIET_S, or DRAIN_MAX_S passed."""
        return self.exited_at is not None and (
            open_pipes == 0
            or now - self.last_data >= DRAIN_QUIET_S
            or now - self.exited_at >= DRAIN_MAX_S
        )

    def next_wait(self, now: float) -> float:
        """How long the loop may sleep before something is due."""
        moments = [m for m in (self.timeout_at, self.kill_at) if m is not None]
        if self.exited_at is not None:
            moments += [self.last_data + DRAIN_QUIET_S, self.exited_at + DRAIN_MAX_S]
        else:
            moments.append(self.sample_at)
        return max(0.0, min(moments) - now)


class Handler(Protocol):
    def due(self, what: str) -> None:
        """A moment has come: "sample", "timeout" or "kill"."""

    def output(self, stream: str, buffer: bytearray, size: int) -> bool:
        """``buffer[:size]`` arrived on ``stream``; False closes that pipe."""

    def round(self) -> None:
        """Once a round of the loop, after its reads."""


def pump(
    pipes: dict[str, int],
    wake: int,
    deadlines: Deadlines,
    handler: Handler,
    channels: dict[str, int] | None = None,
) -> None:
    """Read ``pipes`` (stream name -> fd) until the command has exited (a byte on ``wake``)
    and its output is drained; ``channels`` (name -> fd) are read alongside, but never end and
    never hold the drain up. The pipes are closed when it returns; the channels are not."""
    sel = selectors.DefaultSelector()
    # The pipes before the channels: what the command wrote before the loop began is read in
    # the order it most likely came, its output first.
    for stream, fd in {**pipes, **(channels or {})}.items():
        sel.register(fd, selectors.EVENT_READ, stream)
    sel.register(wake, selectors.EVENT_READ, None)
    open_pipes = len(pipes)
    # Reused read buffers: a fresh 1 MiB bytes per read would cost a mmap and page faults.
    buffers = {stream: bytearray(READ_SIZE) for stream in pipes}
    buffers.update({name: bytearray(CHANNEL_READ_SIZE) for name in channels or {}})
    try:
        while True:
            now = time.monotonic()
            for what in deadlines.due(now):
                handler.due(what)
            if deadlines.drained(now, open_pipes):
                break
            for key, _ in sel.select(deadlines.next_wait(now)):
                if key.data is None:
                    sel.unregister(wake)
                    deadlines.exited_at = deadlines.last_data = time.monotonic()
                    continue
                buffer = buffers[key.data]
                try:
                    size = os.readv(key.fd, [buffer])
                except BlockingIOError:
                    continue
                except OSError:
                    size = 0
                if size and handler.output(key.data, buffer, size):
                    if deadlines.exited_at is not None and key.data in pipes:
                        deadlines.last_data = time.monotonic()
                    continue
                sel.unregister(key.fd)
                if key.data in pipes:
                    os.close(key.fd)
                    open_pipes -= 1
            handler.round()
    finally:
        for key in list(sel.get_map().values()):
            if key.data in pipes:
                os.close(key.fd)
        sel.close()


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd``, even one left non-blocking by someone else."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[written:]
