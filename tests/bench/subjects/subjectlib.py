"""Helpers the alternatives' subjects share (shim, nginx, naive, systemd, haproxy): no subject here.

Also run as a program by the naive subject's restart command:
    python3 subjectlib.py restart-naive WORKDIR
"""

from __future__ import annotations

import os
import pathlib
import select
import shlex
import signal
import socket
import subprocess
import sys
import time

SUBJECTS: list = []  # the driver imports every module of this directory; this one defines none


def command(argv) -> str:
    """argv as one /bin/sh command line (fdsup-load runs a restart with /bin/sh -c)."""
    return shlex.join(str(a) for a in argv)


def missing(*paths: str) -> str | None:
    """Why a subject cannot run: the first of these programs that is not installed, else None."""
    for path in paths:
        if not os.access(path, os.X_OK):
            return f"{path} is not installed"
    return None


def wait_exit(pid: int, timeout: float) -> bool:
    """Waits (pidfd) until process pid exited, a zombie included; whether it did within timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def terminate(pid: int, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Sends sig to pid and waits for its exit; SIGKILL past timeout."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    if not wait_exit(pid, timeout):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_exit(pid, 5.0)


def stop_popen(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Stops a process the subject spawned (and reaps it); the driver kills what is left of its group."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def accepts(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port is accepted now."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_closed(host: str, port: int, timeout: float = 10.0) -> None:
    """Returns once nothing accepts on host:port (stop() leaves nothing bound); raises after timeout."""
    deadline = time.monotonic() + timeout
    while accepts(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host}:{port} still accepts connections after the subject stopped")
        time.sleep(0.02)  # a listener closing: no event to wait on from here


def wait_accepts(host: str, port: int, timeout: float) -> None:
    """Returns once host:port accepts a connection; raises after timeout."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while not accepts(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host}:{port} does not accept connections after {timeout:g} s")
        time.sleep(pause)  # a server starting: nothing signals when it listens
        pause = min(pause * 2, 0.02)


def read_pid(path: pathlib.Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# ---- the naive subject's restart: stop, wait for the exit, start a new one ----

def naive_start(workdir: pathlib.Path) -> int:
    """Starts the naive server described by WORKDIR/naive.argv (one argument a line) in a session of
    its own, output appended to WORKDIR/naive.log, records its pid in WORKDIR/naive.pid."""
    argv = (workdir / "naive.argv").read_text().splitlines()
    with open(workdir / "naive.log", "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(workdir))
    (workdir / "naive.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def restart_naive(workdir: pathlib.Path) -> int:
    """SIGTERM, wait for the exit, start a new server, return once it accepts connections."""
    pid = read_pid(workdir / "naive.pid")
    if pid is not None:
        terminate(pid, signal.SIGTERM, timeout=15.0)
    host, port = (workdir / "naive.addr").read_text().split()
    naive_start(workdir)
    wait_accepts(host, int(port), timeout=15.0)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "restart-naive":
        sys.exit(restart_naive(pathlib.Path(sys.argv[2])))
    print(f"usage: {sys.argv[0]} restart-naive WORKDIR", file=sys.stderr)
    sys.exit(2)
