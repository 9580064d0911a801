"""nginx-fdsup and nginx-reload: the same nginx configuration under fdsupd, and run by nginx itself."""

from __future__ import annotations

import pathlib
import signal
import subprocess

import subjectlib
from base import Context, Subject, Target

NGINX = "/usr/sbin/nginx"

STREAM_UNSUPPORTED = (
    "nginx does not speak the seqnum protocol itself: its `stream` module (not in Debian's "
    "nginx-light; libnginx-mod-stream) could only proxy to a backend, which would measure the proxy's "
    "reload, not a restart of the server")


def nginx_conf(ctx: Context, port: int, daemon: bool) -> str:
    """One nginx.conf for both subjects: a fixed `return 200`, keep-alive on, ctx.instances workers.
    keepalive_requests is raised from its default 1000 so that nginx does not close a busy
    connection every 1000 requests (which the load would count as forced reconnects that have
    nothing to do with restarts; http-keepalive has no such limit)."""
    w = ctx.workdir
    return f"""# written by tests/bench/subjects/nginx.py
{"" if daemon else "daemon off;"}
worker_processes {ctx.instances};
pid {w}/nginx.pid;
error_log stderr notice;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {w}/body;
    proxy_temp_path {w}/proxy;
    fastcgi_temp_path {w}/fastcgi;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type text/plain;
            return 200 "served by nginx\\n";
        }}
    }}
}}
"""


class _Nginx(Subject):
    programs = (NGINX,)

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._port = 0

    def unsupported(self, ctx: Context, mode: str) -> str | None:
        return STREAM_UNSUPPORTED if mode == "stream" else None

    def write_conf(self, ctx: Context) -> pathlib.Path:
        self._port = ctx.free_port()
        conf = ctx.workdir / "nginx.conf"
        conf.write_text(nginx_conf(ctx, self._port, daemon=False))
        return conf

    def stopped(self) -> None:
        if self._port:
            subjectlib.wait_closed("127.0.0.1", self._port)
            self._port = 0


class NginxFdsup(_Nginx):
    id = "nginx-fdsup"
    title = "nginx under fdsup (NGINX= inheritance), fdsupctl restart --wait"
    order = 40
    description = (
        "fdsupd owns the port and runs nginx as units/examples/nginx.toml does: `inherit = [\"nginx\"]` "
        "(NGINX=3;, so nginx takes fdsupd's listener instead of binding), one master "
        "(`instances = 1`) with `worker_processes` = instances, `ready = \"started\"`, "
        "`drain_signal = \"SIGQUIT\"` (nginx's graceful stop), `rollout_order = \"start-first\"`; a "
        "fixed `return 200`, keep-alive on. A restart is `fdsupctl restart nginx --wait`: a new master "
        "starts on the same listener, then the old one gets SIGQUIT.")

    binaries = ("fdsupd", "fdsupctl")

    def start(self, ctx: Context, mode: str) -> Target:
        conf = self.write_conf(ctx)
        (ctx.workdir / "fdsupd.toml").write_text(f"""# {self.id}: written by tests/bench/subjects/nginx.py
[supervisor]
control = "control.sock"

[socket.http]
listen = "tcp://127.0.0.1:{self._port}"
backlog = 4096

[service.nginx]
command = ["{NGINX}", "-c", "{conf}"]
sockets = ["http"]
inherit = ["nginx"]
instances = 1
ready = "started"
drain_signal = "SIGQUIT"
stop_signal = "SIGTERM"
drain_timeout = "10s"
kill_mode = "process-group"
restart = "on-failure"
rollout_order = "start-first"
""")
        ctl = [ctx.binary("fdsupctl"), "-s", ctx.workdir / "control.sock"]
        self._proc = ctx.spawn([ctx.binary("fdsupd"), "-c", ctx.workdir / "fdsupd.toml"], "fdsupd")
        target = Target(host="127.0.0.1", port=self._port, protocol="http",
                        restart=subjectlib.command(ctl + ["restart", "nginx", "--wait"]),
                        restart_returns="complete")
        ctx.wait_serving(target)
        return target

    def stop(self, ctx: Context) -> None:
        subjectlib.stop_popen(self._proc)  # fdsupd stops nginx (SIGTERM to its process group)
        self._proc = None
        self.stopped()


class NginxReload(_Nginx):
    id = "nginx-reload"
    title = "nginx alone, nginx -s reload"
    order = 50
    description = (
        "The same nginx configuration run by nginx itself: its master binds the port and runs "
        "`worker_processes` = instances workers (`daemon off;` only so that the benchmark keeps it in "
        "its process group; a reload is the same either way). A restart is `nginx -s reload`, which "
        "signals the master (SIGHUP) and returns at once: the master re-reads the configuration, "
        "starts new workers on its own listener and gracefully stops the old ones (restart_returns: "
        "triggered).")

    def start(self, ctx: Context, mode: str) -> Target:
        conf = self.write_conf(ctx)
        self._proc = ctx.spawn([NGINX, "-c", conf], "nginx")
        target = Target(host="127.0.0.1", port=self._port, protocol="http",
                        restart=subjectlib.command([NGINX, "-c", conf, "-s", "reload"]),
                        restart_returns="triggered")
        ctx.wait_serving(target)
        return target

    def stop(self, ctx: Context) -> None:
        subjectlib.stop_popen(self._proc, signal.SIGQUIT)  # graceful: workers finish, then exit
        self._proc = None
        self.stopped()


SUBJECTS = [NginxFdsup(), NginxReload()]
