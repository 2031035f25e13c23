"""The command's output on its way to ours: written through as it comes, or, with ``--quiet``,
held in a spool and shown only when the command fails. A reader that leaves our stdout closes
the command's pipe too, as if it had written there itself."""

from __future__ import annotations

import contextlib

from runstore.exec.capture import STDERR, STDOUT, Spool
from runstore.exec.pump import write_all


class Passthrough:
    """Where the command's stdout and stderr go, and what runstore writes between them."""

    def __init__(self, stdout_fd: int, stderr_fd: int, *, quiet: bool) -> None:
        self.fds = {STDOUT: stdout_fd, STDERR: stderr_fd}
        self.spool = Spool() if quiet else None
        self._dead_fds: set[int] = set()
        self._stderr_mid_line = False

    def write(self, stream: str, data: memoryview) -> bool:
        """Pass ``data`` on (or spool it); False when our reader left and the command's pipe
        should be closed."""
        if self.spool is not None:
            self.spool.write(1 if stream == STDOUT else 2, data)
            return True
        fd = self.fds[stream]
        if fd in self._dead_fds:
            return True
        try:
            write_all(fd, data)
        except BrokenPipeError:
            self._dead_fds.add(fd)
            return False
        except OSError:
            self._dead_fds.add(fd)  # closed or broken output: keep the command going
            return True
        if stream == STDERR and len(data):
            self._stderr_mid_line = data[-1] != 10  # b"\n"
        return True

    def end_line(self) -> None:
        """Before a line of runstore's own on stderr: end the command's unfinished line."""
        if self._stderr_mid_line and self.spool is None:
            with contextlib.suppress(OSError):
                write_all(self.fds[STDERR], b"\n")
            self._stderr_mid_line = False

    def show_spooled(self) -> None:
        """With ``--quiet``, the output held back, now that the command failed."""
        if self.spool is not None:
            self.spool.replay(self._replay_write, self._replay_note)

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()

    def _replay_write(self, fd_index: int, data: bytes) -> None:
        with contextlib.suppress(OSError):
            write_all(self.fds[STDOUT if fd_index == 1 else STDERR], data)

    def _replay_note(self, omitted: int) -> None:
        self._replay_write(2, f"\n[runstore: {omitted:,} bytes of output not kept]\n".encode())
