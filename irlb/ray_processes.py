"""The processes of a Ray that a command started: tag them, find them, and stop them when the command dies.

``ray.init()`` without an address starts Ray's head processes (GCS server, raylet, dashboard and runtime-env agents,
log monitor, workers) as descendants of the driver. Ray ties some of them to the driver (PR_SET_PDEATHSIG on the GCS
server and raylet; workers exit when their raylet does), but not all: after ``kill -9`` of the driver, the raylet's
agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) stay alive. Their parent check fires, then blocks on the
dead GCS while reporting the raylet's death (Ray 2.60). Nor can a process group find them: Ray's workers get a process
group of their own.

What finds them instead is the environment, which every process inherits through fork and exec: the driver sets
:data:`MARKER` ``=<token>`` while it starts Ray, so every Ray process of that start, and every process those spawn,
carries it in ``/proc/<pid>/environ``, provided ``SPT_NOENV`` is set too: otherwise the processes that rename
themselves ``ray::...`` write the title over that memory and the marker no longer shows. A watchdog (this module
run as ``python -m irlb.ray_processes TOKEN [TEMP_DIR]``, started before Ray) blocks on a pipe whose only writer
is the driver. When the pipe closes (the driver called :meth:`Watchdog.close` or died in any way, ``kill -9``
included), the watchdog sends SIGKILL to every process that carries the token, until none is left, and removes
the driver's Ray temp folder if it was given one. The watchdog ignores SIGINT, SIGTERM and SIGHUP, so Ctrl-C or a
``kill`` of the whole process group, which end the driver, do not end it before it has cleaned up.

Linux only (``/proc``); elsewhere :func:`start_watchdog` returns None and Ray's own fate sharing is all there is.
This module imports nothing heavy: the watchdog starts in a fraction of a second.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

MARKER = "IRLB_RAY_OWNER"  # the environment variable whose value tags one Ray start's processes
PROC = Path("/proc")


def marked_processes(token: str, marker: str = MARKER) -> list[int]:
    """The ids of the live processes (of any user whose environment this user may read) whose initial
    environment holds ``marker=token``; zombies (no environment left) and this process are not listed."""
    entry = f"{marker}={token}".encode()
    found = []
    for path in PROC.iterdir():
        if not path.name.isdigit() or int(path.name) == os.getpid():
            continue
        try:
            environ = (path / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if entry in environ.split(b"\0"):
            found.append(int(path.name))
    return found


def kill_marked_processes(token: str, marker: str = MARKER, timeout: float = 10.0,
                          exclude: frozenset[int] = frozenset()) -> list[int]:
    """SIGKILL every process that carries ``marker=token`` (but those in ``exclude``), again until a scan finds
    none (a dying process may still spawn one) or ``timeout`` seconds pass; returns the ids it signalled."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        pids = [pid for pid in marked_processes(token, marker) if pid not in exclude]
        if not pids or time.monotonic() > deadline:
            return killed
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


class Watchdog:
    """The driver's end of a watchdog: :meth:`close` (or the driver's death) makes it clean up and exit."""

    def __init__(self, process: subprocess.Popen[bytes], write_fd: int) -> None:
        self.process = process
        self._write_fd: int | None = write_fd

    def close(self, timeout: float = 30.0) -> None:
        """Close the pipe and wait (at most ``timeout`` s) until the watchdog has killed what is left and exited."""
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass


def start_watchdog(token: str, temp_dir: str | None = None) -> Watchdog | None:
    """Start the watchdog of the processes tagged ``MARKER=token`` (and of ``temp_dir``, removed at the end); None
    where there is no ``/proc``. Call it before the tagged processes start: it must not carry the token itself."""
    if not (PROC / str(os.getpid()) / "environ").is_file():
        return None
    read_fd, write_fd = os.pipe()  # not inheritable (PEP 446): Ray's processes do not hold the write end
    command = [sys.executable, "-m", "irlb.ray_processes", token] + ([temp_dir] if temp_dir else [])
    try:
        process = subprocess.Popen(command, stdin=read_fd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        os.close(read_fd)
    return Watchdog(process, write_fd)


def watch(token: str, temp_dir: str | None = None) -> None:
    """The watchdog's body: wait until stdin closes, then kill the tagged processes and remove ``temp_dir``."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    driver = os.getppid()
    while sys.stdin.buffer.read(4096):  # nobody writes: this returns b"" when the driver's end closes
        pass
    kill_marked_processes(token, exclude=frozenset({driver}))
    if temp_dir is not None:
        shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    watch(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
