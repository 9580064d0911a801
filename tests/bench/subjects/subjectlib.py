"""Helpers the alternatives' subjects share (shim, nginx, naive, systemd, haproxy): no subject here.

Also run as a program by the restart commands of naive and haproxy-reload:
    python3 subjectlib.py restart-naive WORKDIR
    python3 subjectlib.py reload-haproxy MASTER_SOCKET
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

from base import WaitTimeout, wait_until

SUBJECTS: list = []  # the driver imports every module of this directory; this one defines none


def command(argv) -> str:
    """argv as one /bin/sh command line (fdsup-load runs a restart with /bin/sh -c)."""
    return shlex.join(str(a) for a in argv)


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
    wait_until(lambda: not accepts(host, port), timeout,
               f"{host}:{port} still accepts connections after the subject stopped")


def wait_accepts(host: str, port: int, timeout: float) -> None:
    """Returns once host:port accepts a connection; raises after timeout."""
    wait_until(lambda: accepts(host, port), timeout,
               f"{host}:{port} does not accept connections after {timeout:g} s")


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


# ---- haproxy-reload's restart: the master CLI's reload, then wait for the new worker ----

def master_cli(sock: str, line: str, timeout: float = 5.0) -> str:
    """One command on HAProxy's master CLI (-S SOCKET): its whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock)
        s.sendall(line.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)  # the CLI answers and closes once our side is done
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out.decode(errors="replace")


def current_workers(show_proc: str) -> set[int]:
    """The pids under "# workers" (not "# old workers") in the master CLI's `show proc`."""
    pids, section = set(), ""
    for line in show_proc.splitlines():
        if line.startswith("#"):
            section = line.strip("# ").lower() if not line.startswith("#<") else section
            continue
        fields = line.split()
        if section == "workers" and len(fields) >= 2 and fields[1] == "worker" and fields[0].isdigit():
            pids.add(int(fields[0]))
    return pids


def reload_haproxy(sock: str, timeout: float = 15.0) -> int:
    """`reload` on the master CLI (HAProxy 2.6 answers before the new worker exists), then returns
    once `show proc` lists a current worker that was not there before; 1 past timeout."""
    before = current_workers(master_cli(sock, "show proc"))
    master_cli(sock, "reload")

    def new_worker() -> bool:
        try:
            now = current_workers(master_cli(sock, "show proc"))
        except OSError:
            return False  # the master re-executes itself: its CLI is back in a moment
        return bool(now) and not now & before

    try:
        wait_until(new_worker, timeout, f"no new worker within {timeout:g} s (workers before: {sorted(before)})")
    except WaitTimeout as e:
        print(f"reload-haproxy: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "restart-naive":
        sys.exit(restart_naive(pathlib.Path(sys.argv[2])))
    if len(sys.argv) == 3 and sys.argv[1] == "reload-haproxy":
        sys.exit(reload_haproxy(sys.argv[2]))
    print(f"usage: {sys.argv[0]} restart-naive WORKDIR | reload-haproxy MASTER_SOCKET", file=sys.stderr)
    sys.exit(2)
