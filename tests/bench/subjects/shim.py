"""fdsup-shim: an unmodified server under fdsupd through the preload shim (docs/preload.md)."""

from __future__ import annotations

import subprocess

import subjectlib
from base import Context, Subject, Target


class FdsupShim(Subject):
    binaries = ("fdsupd", "fdsupctl", "libactivate-preload.so", "http-keepalive", "seqnum-echo")
    id = "fdsup-shim"
    title = "fdsup, preload shim (http-keepalive --listen / seqnum-echo --listen), fdsupctl restart --wait"
    order = 30
    description = (
        "fdsupd owns the port and runs the worker as an unmodified server would run: "
        "`http-keepalive --listen 127.0.0.1:PORT` (seqnum-echo for streams) with `wrap = \"preload\"`, "
        "`ready = \"bound\"`, `instances` instances; no LISTEN_FDS, no channel. Its own `bind()` of the "
        "port is given fdsupd's listener by the shim. A restart is `fdsupctl restart web --wait`: new "
        "instances start and claim the listener, then the old ones get SIGTERM. The worker reads "
        "SIGTERM with signalfd, so the shim's own drain is not involved (docs/preload.md: a signal the "
        "app blocks never reaches the shim): the worker's polite drain closes its copy of the listener "
        "(connections wait in fdsupd's), answers what it received with `Connection: close` and closes "
        "idle connections.")

    def __init__(self) -> None:
        self._fdsupd: subprocess.Popen | None = None
        self._port = 0

    def config(self, ctx: Context, mode: str, port: int) -> str:
        worker = ctx.binary("seqnum-echo" if mode == "stream" else "http-keepalive")
        return f"""# {self.id}: written by tests/bench/subjects/shim.py
[supervisor]
control = "control.sock"
preload_library = "{ctx.binary("libactivate-preload.so")}"

[socket.web]
listen = "tcp://127.0.0.1:{port}"

[service.web]
command = ["{worker}", "--listen", "127.0.0.1:{port}"]
sockets = ["web"]
instances = {ctx.instances}
wrap = "preload"
ready = "bound"
drain_signal = "SIGTERM"
drain_timeout = "10s"
ready_timeout = "10s"
"""

    def start(self, ctx: Context, mode: str) -> Target:
        self._port = ctx.free_port()
        conf = ctx.workdir / "fdsupd.toml"
        conf.write_text(self.config(ctx, mode, self._port))
        ctl = [ctx.binary("fdsupctl"), "-s", ctx.workdir / "control.sock"]
        self._fdsupd = ctx.spawn([ctx.binary("fdsupd"), "-c", conf], "fdsupd")
        target = Target(host="127.0.0.1", port=self._port, protocol="seqnum" if mode == "stream" else "http",
                        restart=subjectlib.command(ctl + ["restart", "web", "--wait"]),
                        restart_returns="complete")
        ctx.wait_serving(target)
        ctx.run(ctl + ["start", "web"], "fdsupctl-start")  # every instance ready, not only the first
        return target

    def stop(self, ctx: Context) -> None:
        subjectlib.stop_popen(self._fdsupd)
        self._fdsupd = None
        if self._port:
            subjectlib.wait_closed("127.0.0.1", self._port)
            self._port = 0


SUBJECTS = [FdsupShim()]
