"""fdsup's own subjects: the libactivate example workers under fdsupd, with and without handoff."""

from __future__ import annotations

import shlex
import subprocess

from base import Context, Subject, Target


class _FdsupSubject(Subject):
    """fdsupd serving one socket with ctx.instances example workers (ready over the channel);
    a restart is `fdsupctl restart web --wait`, which returns once the rollout is complete."""

    binaries = ("fdsupd", "fdsupctl", "http-keepalive", "seqnum-echo")

    handoff = True

    def __init__(self) -> None:
        self._fdsupd: subprocess.Popen | None = None
        self._control = None
        self._ctl = None

    def config(self, ctx: Context, mode: str, port: int) -> str:
        worker = ctx.binary("seqnum-echo" if mode == "stream" else "http-keepalive")
        return f"""# {self.id}: written by tests/bench/subjects/fdsup.py
[supervisor]
control = "control.sock"

[socket.web]
listen = "tcp://127.0.0.1:{port}"

[service.web]
command = ["{worker}"]
sockets = ["web"]
instances = {ctx.instances}
ready = "channel"
handoff = {"true" if self.handoff else "false"}
drain_timeout = "10s"
ready_timeout = "10s"
"""

    def start(self, ctx: Context, mode: str) -> Target:
        port = ctx.free_port()
        conf = ctx.workdir / "fdsupd.toml"
        conf.write_text(self.config(ctx, mode, port))
        self._control = ctx.workdir / "control.sock"
        self._ctl = ctx.binary("fdsupctl")
        self._fdsupd = ctx.spawn([ctx.binary("fdsupd"), "-c", conf], "fdsupd")
        target = Target(
            host="127.0.0.1", port=port, protocol="seqnum" if mode == "stream" else "http",
            restart=" ".join(shlex.quote(str(a)) for a in
                             [self._ctl, "-s", self._control, "restart", "web", "--wait"]),
            restart_returns="complete")
        ctx.wait_serving(target)
        # Every instance ready, not only the first one that answered.
        ctx.run([self._ctl, "-s", self._control, "start", "web"], "fdsupctl-start")
        return target

    def stop(self, ctx: Context) -> None:
        if self._fdsupd is None:
            return
        self._fdsupd.terminate()
        try:
            self._fdsupd.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass  # the driver kills the process group
        self._fdsupd = None


class FdsupHandoff(_FdsupSubject):
    id = "fdsup-handoff"
    title = "fdsup, handoff (http-keepalive / seqnum-echo), fdsupctl restart --wait"
    order = 10
    handoff = True
    description = ("fdsupd owns the port and runs the libactivate example worker (http-keepalive; "
                   "seqnum-echo for streams) with `handoff = true`, `ready = \"channel\"`. A restart is "
                   "`fdsupctl restart web --wait`: a new instance starts, becomes ready, and the old one "
                   "drains by handing its connections to fdsupd, which gives them to the new one.")


class FdsupDrain(_FdsupSubject):
    id = "fdsup-drain"
    title = "fdsup, the same worker without handoff (polite drain), fdsupctl restart --wait"
    order = 20
    handoff = False
    description = ("The same fdsupd and worker with `handoff = false`: the old instance stops "
                   "accepting, answers what is pending with `Connection: close` and closes idle "
                   "connections, so clients must reconnect (to the new instance: the listener never "
                   "closes).")


SUBJECTS = [FdsupHandoff(), FdsupDrain()]
