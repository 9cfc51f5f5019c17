"""A lock file for work that several processes (a pool's workers, Ray tasks, on one host or sharing a
folder) may start at once: created with ``O_CREAT|O_EXCL`` and holding its owner's host and pid, so a
lock left by a killed process is recognised and taken over instead of being waited on forever.

Taking over a stale lock can race with another process doing the same; the loser then repeats the
work the lock guards, so that work must give the same result twice (its file written atomically)."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

STALE_LOCK_S = 30 * 60
"""A lock older than this is stale whoever holds it: its owner may run on another host sharing the
folder, where its pid cannot be checked."""


def _owner() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs; a zombie (killed, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def is_stale(path: Path) -> bool:
    """Whether the lock at ``path`` was left behind: its process on this host is gone (or has this
    process's pid, an earlier run's), or it is older than :data:`STALE_LOCK_S`. A lock released
    meanwhile is not stale: the next try takes it."""
    try:
        owner, age = path.read_text(), time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    host, _, pid = owner.partition(" ")
    dead = host == socket.gethostname() and pid.isdigit() and (int(pid) == os.getpid() or not pid_alive(int(pid)))
    return dead or age > STALE_LOCK_S


def try_lock(path: Path) -> bool:
    """Take the lock at ``path``: True when this process holds it now, False while another one does.
    A stale lock is removed and taken."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not is_stale(path):
                return False
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(_owner())
        return True
    return False


def unlock(path: Path) -> None:
    """Remove the lock if this process still holds it (one taken over as stale belongs to its taker)."""
    try:
        if path.read_text() == _owner():
            path.unlink()
    except FileNotFoundError:
        pass
