"""What /proc tells about processes and this machine: whether a process is alive (a run, the
owner of a temporary file), its start time, memory and umask, the host and its boot. Every /proc
reader of runstore is here."""

from __future__ import annotations

import getpass
import os
import socket
import sys
from functools import lru_cache

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


@lru_cache(maxsize=1)
def hostname() -> str:
    return socket.gethostname()


@lru_cache(maxsize=1)
def boot_id() -> str | None:
    """Changes at every reboot, so a pid recorded before a reboot is never mistaken for alive."""
    try:
        with open(BOOT_ID_FILE, encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def username() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def current_cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


def alive(pid: int, start: int | None = None) -> bool:
    """Is process ``pid`` running, and (given ``start``) the same process that started then?"""
    started = process_start(pid)
    if started is None:
        return False
    return start is None or started == start


def umask() -> int:
    """The process's umask. Linux shows it in /proc; elsewhere it can only be read by setting
    it, which briefly exposes other threads' new files, so that is the fallback only."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def own_peak_rss_kb() -> int:
    """This process's own peak RSS, in KiB."""
    import resource

    rss = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return rss // 1024 if sys.platform == "darwin" else rss


def tree_peak_rss_kb(root: int) -> int | None:
    """The largest VmHWM (peak RSS since exec) among ``root`` and its live descendants."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    children: dict[int, list[int]] = {}
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
                ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(name))
    peak: int | None = None
    todo, seen = [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, ()))
        value = peak_rss_kb(pid)
        if value is not None and (peak is None or value > peak):
            peak = value
    return peak


def peak_rss_kb(pid: int) -> int | None:
    """VmHWM of a live process: its own peak RSS since its last exec."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None
