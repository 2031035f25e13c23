"""The wrapped command as a process: started in its own process group (or, at a terminal, in the
terminal's foreground group), sent signals, waited for with its resource use, its memory sampled
while it runs."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from runstore import procinfo
from runstore.exec.capture import STDERR, STDOUT
from runstore.exec.outcome import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND

PIPE_SIZE = 1 << 20  # Linux default is 64 KiB; larger pipes mean fewer, larger reads
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# A terminal sends these to its whole foreground process group.
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)


class Child:
    """One run of ``argv``: ``spawn`` it, ``relay`` signals to it, ``wait`` for it."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.pid: int | None = None
        self.own_group = True
        self.pipes: dict[str, int] = {}
        self.exited = False
        self.exited_clock: float | None = None
        self.wait_status: int | None = None  # None after exit: the status is unknown
        self.rusage: Any = None
        self.rss_at_spawn_kb = 0
        self.sampled_rss_kb: int | None = None
        self._unsent: int | None = None  # a signal that came while the command was starting

    def spawn(self, env: dict[str, str]) -> tuple[int, str] | None:
        """Start the command, its stdout and stderr into pipes of ours; or the exit code and
        message for a command that cannot be started, as a shell reports it."""
        self.own_group = not in_terminal_foreground()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for fd in (out_r, err_r):
            _grow_pipe(fd)
        options: dict[str, Any] = {}
        if self.own_group:
            if sys.version_info >= (3, 11):
                options["process_group"] = 0
            else:  # pragma: no cover - Python 3.10
                options["preexec_fn"] = os.setpgrp
        try:
            # close_fds=False: descriptors we inherited (sockets, lock files) reach the command
            # as they would without us; our own descriptors are close-on-exec.
            proc = subprocess.Popen(
                self.argv, stdout=out_w, stderr=err_w, env=env, close_fds=False, **options
            )
        except OSError as exc:
            os.close(out_r)
            os.close(err_r)
            return spawn_problem(self.argv[0], exc)
        finally:
            os.close(out_w)
            os.close(err_w)
        self._proc = proc
        self.pid = proc.pid
        self.pipes = {STDOUT: out_r, STDERR: err_r}
        self.rss_at_spawn_kb = procinfo.own_peak_rss_kb()  # at least what its mm started with
        self.sample_rss()  # Popen returns once the command is exec'd: a short one is seen now
        if self._unsent is not None:  # arrived while the command was being started
            self.send(self._unsent)
        return None

    def send(self, signum: int) -> None:
        """Send ``signum`` to the command (its process group, when it has its own)."""
        if self.pid is None:
            self._unsent = signum
            return
        if self.exited:
            return
        try:
            if self.own_group:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def relay(self, signum: int) -> bool:
        """Pass on a signal runstore received; whether it was sent. At a terminal the command
        shares our foreground group, and the terminal already sent it Ctrl-C, Ctrl-\\ and hangup:
        those are not delivered a second time."""
        if self.pid is None:
            self._unsent = signum  # the command is not started yet (or is being started)
            return False
        if self.exited or (not self.own_group and signum in TERMINAL_SIGNALS):
            return False
        self.send(signum)
        return True

    def wait(self, wake_w: int) -> threading.Thread:
        """Wait for the command in a thread; write a byte to ``wake_w`` when it has exited."""

        def waiting() -> None:
            assert self.pid is not None
            try:
                _, status, rusage = os.wait4(self.pid, 0)
                self.wait_status, self.rusage = status, rusage
                self._proc.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:  # reaped by the system: SIGCHLD was ignored by our parent
                self.wait_status = None
            finally:
                self.exited = True
                self.exited_clock = time.monotonic()
                os.write(wake_w, b"x")

        waiter = threading.Thread(target=waiting, name="runstore-wait", daemon=True)
        waiter.start()
        return waiter

    def sample_rss(self) -> None:
        """The command's peak RSS so far, children included (``outcome.resource_use`` says why
        it is sampled)."""
        if self.pid is None or self.exited:
            return
        peak = procinfo.tree_peak_rss_kb(self.pid)
        if peak is not None and peak > (self.sampled_rss_kb or 0):
            self.sampled_rss_kb = peak


def take_signals(handler: Any) -> dict[int, Any]:
    """Have ``handler`` receive the signals runstore passes on (from the main thread only); the
    handlers they had, to put back. One ignored by whoever started us (nohup) stays ignored, and
    the command inherits that; SIGCHLD ignored would have the kernel reap the command and lose
    its exit status, so it gets its default back."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}
    for sig in FORWARDED_SIGNALS:
        if signal.getsignal(sig) != signal.SIG_IGN:
            previous[sig] = signal.signal(sig, handler)
    if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    return previous


def spawn_problem(program: str, exc: OSError) -> tuple[int, str]:
    """Exit code and message for a command that could not be started, as a shell reports it."""
    exists = os.path.exists(program) if "/" in program else shutil.which(program) is not None
    if isinstance(exc, FileNotFoundError) and not exists:
        if "/" in program:
            return EXIT_NOT_FOUND, f"{program}: no such file or directory"
        return EXIT_NOT_FOUND, f"{program}: command not found"
    if isinstance(exc, FileNotFoundError):
        return EXIT_NOT_EXECUTABLE, f"{program}: bad interpreter (no such file or directory)"
    if os.path.isdir(program):
        return EXIT_NOT_EXECUTABLE, f"{program}: is a directory"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return EXIT_NOT_EXECUTABLE, f"{program}: permission denied"
    return EXIT_NOT_EXECUTABLE, f"{program}: cannot execute: {exc.strerror or exc}"


def in_terminal_foreground() -> bool:
    """True when runstore runs in its controlling terminal's foreground process group."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, AttributeError, OSError):
        pass
