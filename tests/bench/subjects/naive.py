"""naive: a server that binds its own port, restarted by stop-then-start."""

from __future__ import annotations

import pathlib
import sys

import subjectlib
from base import Context, Subject, Target


class Naive(Subject):
    binaries = ("http-keepalive", "seqnum-echo")
    id = "naive"
    title = "naive stop-then-start (http-keepalive --listen / seqnum-echo --listen)"
    order = 60
    description = (
        "One http-keepalive process (seqnum-echo for streams) started with `--listen 127.0.0.1:PORT`: "
        "it binds its own port, no supervisor. A restart is what a plain init script does: SIGTERM "
        "(the worker's polite drain: it closes its listener, answers what it received with "
        "`Connection: close`, closes idle connections), wait for the exit, start a new process, "
        "return once it accepts connections. One process, not `instances`: a server that binds "
        "its own port alone cannot run a second copy beside it.")

    def __init__(self) -> None:
        self._workdir: pathlib.Path | None = None
        self._first = None

    def start(self, ctx: Context, mode: str) -> Target:
        port = ctx.free_port()
        worker = ctx.binary("seqnum-echo" if mode == "stream" else "http-keepalive")
        self._workdir = ctx.workdir
        (ctx.workdir / "naive.argv").write_text(f"{worker}\n--listen\n127.0.0.1:{port}\n")
        (ctx.workdir / "naive.addr").write_text(f"127.0.0.1 {port}\n")
        # The first one through the driver (its process group is the driver's to kill); the
        # restarts start theirs in sessions of their own and record the pid in naive.pid.
        first = ctx.spawn([worker, "--listen", f"127.0.0.1:{port}"], "naive-first")
        (ctx.workdir / "naive.pid").write_text(f"{first.pid}\n")
        self._first = first
        restart = subjectlib.command([sys.executable, pathlib.Path(subjectlib.__file__).resolve(),
                                      "restart-naive", ctx.workdir])
        target = Target(host="127.0.0.1", port=port, protocol="seqnum" if mode == "stream" else "http",
                        restart=restart, restart_returns="complete")
        ctx.wait_serving(target)
        return target

    def stop(self, ctx: Context) -> None:
        if self._workdir is None:
            return
        pid = subjectlib.read_pid(self._workdir / "naive.pid")
        if pid is not None:
            subjectlib.terminate(pid)
        subjectlib.stop_popen(self._first)  # the first one exited at the first restart: reap it
        self._first = None
        log = self._workdir / "naive.log"
        if log.exists():  # the restarted servers' output, kept with the report's logs
            (ctx.logdir / "naive-restarted.log").write_bytes(log.read_bytes())
        host, port = (self._workdir / "naive.addr").read_text().split()
        subjectlib.wait_closed(host, int(port))
        self._workdir = None


SUBJECTS = [Naive()]
