"""systemd-socket: the listener held by a systemd socket unit while its service restarts.

What `systemd-socket-activate` does (checked with systemd 252): in its default (non-accept) mode it
binds, waits for the first connection, then execs the server in its own process ("Execing ..."):
no fork, so once the server exits nothing holds the listener, and a restart through it is a naive
stop-then-start. The faithful subject is therefore a real socket unit + service unit under a
private `systemd --user` manager, as tests/support/user_manager.cpp sets one up: a mount
namespace of its own (unshare -m) with tmpfs on /run/systemd (an empty /run/systemd/system: the
manager believes it was booted by systemd), its own cgroup, XDG_RUNTIME_DIR and XDG_CONFIG_HOME
in the run's work directory. systemctl reaches it through $XDG_RUNTIME_DIR/systemd/private.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import subjectlib
from base import Context, Subject, Target, wait_until

SYSTEMD = "/lib/systemd/systemd"
SYSTEMCTL = "/usr/bin/systemctl"
UNSHARE = "/usr/bin/unshare"

# Runs in the private mount namespace: the mounts, the cgroups, then the manager in this process.
MANAGER_SCRIPT = """set -e
mount --make-rprivate /
mount --rbind /run /run
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run/systemd
mkdir /run/systemd/system
for cg in $FDSUP_BENCH_CGROUPS; do echo $$ > "$cg/cgroup.procs"; done
exec "$FDSUP_BENCH_SYSTEMD" --user
"""


def current_cgroups() -> list[pathlib.Path]:
    """Where this process is in the hierarchies systemd tracks processes in (unified, name=systemd)."""
    dirs = []
    for line in pathlib.Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            unified = pathlib.Path("/sys/fs/cgroup/unified")
            root = unified if (unified / "cgroup.procs").exists() else pathlib.Path("/sys/fs/cgroup")
            dirs.append(root / path.lstrip("/"))
        elif controllers == "name=systemd":
            dirs.append(pathlib.Path("/sys/fs/cgroup/systemd") / path.lstrip("/"))
    return dirs


def remove_cgroup(path: pathlib.Path) -> None:
    """rmdir, deepest first (cgroupfs removes only empty cgroups)."""
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir():
            remove_cgroup(child)
    try:
        path.rmdir()
    except OSError:
        pass


class SystemdSocket(Subject):
    id = "systemd-socket"
    title = "systemd socket unit + service (systemd --user), systemctl --user restart"
    order = 70
    description = (
        "A real `web.socket` (ListenStream=127.0.0.1:PORT) and `web.service` (http-keepalive; "
        "seqnum-echo for streams, given the listener in LISTEN_FDS) under a private `systemd --user` "
        "manager. systemd holds the listener while the service restarts: `systemctl --user restart "
        "web.service` stops the server (SIGTERM: its polite drain), waits for its exit, starts a new "
        "one, and returns when that job is done. One server process: a socket unit with Accept=no "
        "activates one service. (`systemd-socket-activate` execs the server in its own process, so "
        "nothing would hold the listener across a restart: it is not this subject.)")

    def __init__(self) -> None:
        self._manager: subprocess.Popen | None = None
        self._cgroups: list[pathlib.Path] = []
        self._env: dict[str, str] = {}
        self._port = 0

    programs = (SYSTEMD, SYSTEMCTL, UNSHARE)
    binaries = ("http-keepalive", "seqnum-echo")

    def unavailable(self, ctx: Context) -> str | None:
        if os.geteuid() != 0:
            return "a private systemd --user manager needs root (a mount namespace and tmpfs mounts)"
        return super().unavailable(ctx)

    def systemctl(self, ctx: Context, *args: str, name: str = "systemctl") -> None:
        ctx.run([SYSTEMCTL, "--user", "--no-pager", *args], name, env=self._env)

    def start_manager(self, ctx: Context) -> None:
        runtime, config = ctx.workdir / "runtime", ctx.workdir / "config"
        runtime.mkdir(mode=0o700)
        (config / "systemd" / "user").mkdir(parents=True)
        self._cgroups = []
        for was in current_cgroups():
            own = was / f"fdsup-bench-{os.getpid()}-{ctx.workdir.name}"
            own.mkdir()
            self._cgroups.append(own)
        self._env = {"XDG_RUNTIME_DIR": str(runtime), "XDG_CONFIG_HOME": str(config),
                     "DBUS_SESSION_BUS_ADDRESS": "", "NOTIFY_SOCKET": ""}
        env = dict(self._env, FDSUP_BENCH_CGROUPS=" ".join(str(c) for c in self._cgroups),
                   FDSUP_BENCH_SYSTEMD=SYSTEMD)
        self._manager = ctx.spawn([UNSHARE, "-m", "/bin/sh", "-c", MANAGER_SCRIPT], "systemd-user", env=env)
        state = ""

        def running() -> bool:
            nonlocal state
            # Not is-system-running: it answers "offline" outside the manager's namespace (no
            # /run/systemd/system here); the manager's own SystemState is what it says.
            state = subprocess.run([SYSTEMCTL, "--user", "show", "-p", "SystemState", "--value"],
                                   capture_output=True, text=True, env=dict(os.environ, **self._env)).stdout.strip()
            if state in ("running", "degraded"):
                return True
            if self._manager.poll() is not None:
                raise RuntimeError("exited")
            return False

        try:
            wait_until(running, 30, "timeout")
        except RuntimeError:
            raise RuntimeError(f"the systemd --user manager did not start (SystemState: {state!r}; "
                               f"log: {ctx.logdir / 'systemd-user.log'})") from None

    def start(self, ctx: Context, mode: str) -> Target:
        self.start_manager(ctx)
        self._port = ctx.free_port()
        worker = ctx.binary("seqnum-echo" if mode == "stream" else "http-keepalive")
        units = ctx.workdir / "config" / "systemd" / "user"
        (units / "web.socket").write_text(f"[Socket]\nListenStream=127.0.0.1:{self._port}\n")
        (units / "web.service").write_text(
            f"[Service]\nExecStart={worker}\nKillSignal=SIGTERM\nTimeoutStopSec=10s\n"
            f"StandardOutput=append:{ctx.logdir / 'web.log'}\nStandardError=append:{ctx.logdir / 'web.log'}\n")
        self.systemctl(ctx, "daemon-reload")
        self.systemctl(ctx, "start", "web.socket")
        self.systemctl(ctx, "start", "web.service")
        restart = subjectlib.command(["env", *(f"{k}={v}" for k, v in self._env.items()),
                                      SYSTEMCTL, "--user", "restart", "web.service"])
        target = Target(host="127.0.0.1", port=self._port, protocol="seqnum" if mode == "stream" else "http",
                        restart=restart, restart_returns="complete")
        ctx.wait_serving(target)
        return target

    def stop(self, ctx: Context) -> None:
        if self._manager is not None and self._manager.poll() is None:
            try:
                self.systemctl(ctx, "stop", "web.socket", "web.service", name="systemctl-stop")
            except RuntimeError:
                pass  # the manager's own stop below stops them too
        subjectlib.stop_popen(self._manager)  # SIGTERM: the manager stops its units and exits
        self._manager = None
        for cg in self._cgroups:
            remove_cgroup(cg)
        self._cgroups = []
        if self._port:
            subjectlib.wait_closed("127.0.0.1", self._port)
            self._port = 0


SUBJECTS = [SystemdSocket()]
