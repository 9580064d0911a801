#!/usr/bin/env python3
"""notify_run.py TIMEOUT LOG -- COMMAND...: start COMMAND as systemd would
start a Type=notify service and return once it is ready.

COMMAND runs with NOTIFY_SOCKET set to a datagram socket of our own, its
stdout and stderr appended to LOG. Once it sends READY=1 (within TIMEOUT
seconds), its pid is printed and this process returns 0; a forked child
goes on receiving its notifications (STATUS=, FDSTORE=...) until it exits,
as its manager would. Exits 1 with the reason when COMMAND exits first or
TIMEOUT passes (COMMAND is killed then)."""
import os
import select
import socket
import subprocess
import sys
import tempfile
import time


def wait_ready(sock, child, deadline):
    pidfd = os.pidfd_open(child.pid)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "no READY=1 within the timeout"
            readable, _, _ = select.select([sock, pidfd], [], [], left)
            if sock in readable:
                msg = sock.recv(65536).decode(errors="replace")
                if "READY=1" in msg.split("\n"):
                    return None
            elif pidfd in readable:
                return f"exited with status {child.wait()} before READY=1"
    finally:
        os.close(pidfd)


def main():
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit("usage: notify_run.py TIMEOUT LOG -- COMMAND...")
    timeout, log, command = float(sys.argv[1]), sys.argv[2], sys.argv[4:]
    tmp = tempfile.mkdtemp(prefix="fdsup-notify-")
    path = os.path.join(tmp, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.bind(path)
    with open(log, "ab") as out:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 env=dict(os.environ, NOTIFY_SOCKET=path))
    error = wait_ready(sock, child, time.monotonic() + timeout)
    if error:
        child.kill()
        child.wait()
        os.unlink(path)
        os.rmdir(tmp)
        sys.exit(f"notify_run.py: {command[0]}: {error} (log: {log})")
    print(child.pid, flush=True)
    if os.fork() > 0:
        os._exit(0)
    # The manager's side, until the service exits: receive and drop.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    pidfd = os.pidfd_open(child.pid)
    while pidfd not in select.select([sock, pidfd], [], [])[0]:
        sock.recv(65536)
    os.unlink(path)
    os.rmdir(tmp)


main()
