"""haproxy-reload: HAProxy 2.6 in master-worker mode, reloaded seamlessly through its master CLI."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys

import subjectlib
from base import Context, Subject, Target

HAPROXY = "/usr/sbin/haproxy"


def haproxy_cfg(ctx: Context, port: int) -> str:
    """A fixed 200 answered by HAProxy itself, keep-alive on, `nbthread` = instances; the stats
    socket has `expose-fd listeners`, so a reloaded worker takes the old one's listening sockets
    (-x, passed by the master) instead of binding new ones."""
    return f"""# written by tests/bench/subjects/haproxy.py
global
    nbthread {ctx.instances}
    maxconn 4096
    stats socket {ctx.workdir}/stats.sock mode 600 level admin expose-fd listeners
    hard-stop-after 10s

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 75s

frontend web
    bind 127.0.0.1:{port}
    http-request return status 200 content-type text/plain string "served by haproxy"
"""


class HaproxyReload(Subject):
    id = "haproxy-reload"
    title = "HAProxy master-worker, seamless reload (master CLI `reload`)"
    order = 80
    description = (
        "HAProxy 2.6 run as `haproxy -W -S MASTER_SOCKET -f haproxy.cfg` (master-worker), one worker "
        "with `nbthread` = instances, answering a fixed `http-request return status 200` itself, "
        "keep-alive on; its stats socket has `expose-fd listeners`, so the new worker takes the "
        "listening sockets over from the old one (the documented seamless reload). A restart is the "
        "master CLI's `reload`, then waiting until `show proc` lists a new current worker (HAProxy "
        "2.6's `reload` answers before that); the old worker finishes its connections (soft stop, "
        "`hard-stop-after 10s`).")

    programs = (HAPROXY,)

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._port = 0

    def unsupported(self, ctx: Context, mode: str) -> str | None:
        if mode == "stream":
            return ("HAProxy does not speak the seqnum protocol itself (its TCP mode only proxies to a "
                    "backend, which would measure the proxy's reload, not a restart of the server)")
        return None

    def start(self, ctx: Context, mode: str) -> Target:
        self._port = ctx.free_port()
        cfg = ctx.workdir / "haproxy.cfg"
        cfg.write_text(haproxy_cfg(ctx, self._port))
        master = ctx.workdir / "master.sock"
        self._proc = ctx.spawn([HAPROXY, "-W", "-S", master, "-f", cfg], "haproxy")
        restart = subjectlib.command([sys.executable, pathlib.Path(subjectlib.__file__).resolve(),
                                      "reload-haproxy", master])
        target = Target(host="127.0.0.1", port=self._port, protocol="http", restart=restart,
                        restart_returns="complete")
        ctx.wait_serving(target)
        return target

    def stop(self, ctx: Context) -> None:
        # SIGUSR1 to the master: soft stop of every worker (hard-stop-after bounds it), then it exits.
        subjectlib.stop_popen(self._proc, signal.SIGUSR1)
        self._proc = None
        if self._port:
            subjectlib.wait_closed("127.0.0.1", self._port)
            self._port = 0


SUBJECTS = [HaproxyReload()]
