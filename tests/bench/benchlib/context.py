"""The driver's implementation of base.Context: what a subject may use."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "subjects"))
import base  # noqa: E402  (tests/bench/subjects/base.py)

# Where the programs a subject may ask for are, relative to the build directory.
BINARIES = {
    "fdsupd": "supervisor/fdsupd",
    "fdsupctl": "ctl/fdsupctl",
    "fdsup-preload": "libactivate/preload/fdsup-preload",
    "fdsup-load": "tests/bench/load/fdsup-load",
    "http-keepalive": "libactivate/examples/http-keepalive",
    "seqnum-echo": "libactivate/examples/seqnum-echo",
    "libactivate-preload.so": "libactivate/preload/libactivate-preload.so",
}


def find_binary(build: pathlib.Path, name: str) -> pathlib.Path:
    """A built program by name: its known place, else the one file of that name in build."""
    known = BINARIES.get(name)
    if known and (build / known).is_file():
        return build / known
    for root, dirs, files in os.walk(build):
        dirs[:] = [d for d in dirs if not d.endswith(".p") and not d.startswith("meson-")]
        if name in files:
            return pathlib.Path(root) / name
    raise FileNotFoundError(f"{name} is not built in {build} (run ninja -C {build})")


class Context(base.Context):
    """One (subject, mode, repetition): a fresh workdir, a logdir, and every process group spawned."""

    def __init__(self, build: pathlib.Path, source: pathlib.Path, workdir: pathlib.Path,
                 logdir: pathlib.Path, instances: int):
        self.build = build
        self.source = source
        self.workdir = workdir
        self.logdir = logdir
        self.instances = instances
        self._groups: list[subprocess.Popen] = []
        workdir.mkdir(parents=True, exist_ok=True)
        logdir.mkdir(parents=True, exist_ok=True)

    def binary(self, name: str) -> pathlib.Path:
        return find_binary(self.build, name)

    def free_port(self) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def _log(self, name: str):
        return open(self.logdir / f"{name}.log", "ab")

    def spawn(self, argv, name, env=None, cwd=None) -> subprocess.Popen:
        argv = [str(a) for a in argv]
        with self._log(name) as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=self._env(env), cwd=str(cwd or self.workdir),
                                    start_new_session=True)
        self._groups.append(proc)
        return proc

    def run(self, argv, name, timeout=30.0, env=None) -> subprocess.CompletedProcess:
        argv = [str(a) for a in argv]
        with self._log(name) as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=self._env(env), cwd=str(self.workdir), start_new_session=True)
            self._groups.append(proc)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise RuntimeError(f"{' '.join(argv)} did not end within {timeout:g} s "
                                   f"(log: {self.logdir / name}.log)") from None
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with status {proc.returncode}: "
                               f"{tail(self.logdir / f'{name}.log')}")
        return subprocess.CompletedProcess(argv, proc.returncode)

    def wait_serving(self, target: base.Target, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        why = "nothing tried"

        def answers() -> bool:
            nonlocal why
            why = probe(target, min(2.0, max(0.1, deadline - time.monotonic())))
            if why is None:
                return True
            self._check_alive()
            return False

        try:
            base.wait_until(answers, timeout, "")
        except base.WaitTimeout:
            raise RuntimeError(f"{target.host}:{target.port} did not answer within {timeout:g} s: {why}") from None

    def _check_alive(self) -> None:
        for proc in self._groups:
            if proc.poll() is not None and proc.returncode != 0:
                raise RuntimeError(f"{' '.join(proc.args)} exited with status {proc.returncode}")

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(extra or {})
        return env

    def cleanup(self) -> list[str]:
        """Kills every process group spawned (SIGTERM, then SIGKILL); says which were still alive."""
        alive = [p for p in self._groups if _group_alive(p.pid)]
        for proc in alive:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for proc in alive:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self._groups:
            _kill_group(proc)
        return [" ".join(p.args[:1]) for p in alive]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(proc: subprocess.Popen) -> None:
    _signal_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def tail(path: pathlib.Path, lines: int = 5) -> str:
    """The last lines of a log, on one line, for an error message."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"(no log {path})"
    return " | ".join(text[-lines:]) or f"(empty log {path})"


def probe(target: base.Target, timeout: float) -> str | None:
    """One request of target's protocol: None if it was answered, else why not."""
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout) as s:
            if target.protocol == "seqnum":
                s.sendall((1).to_bytes(4, "big"))
                got = _read(s, 4, lambda b: len(b) >= 4)
                return None if got[:4] == (1).to_bytes(4, "big") else f"echo {got!r}, not 1"
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            got = _read(s, 64, lambda b: b"\r\n" in b)
            status = got.split(b"\r\n", 1)[0]
            parts = status.split()
            if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1].startswith(b"2"):
                return None
            return f"answered {status[:60]!r}"
    except OSError as e:
        return str(e)


def _read(s: socket.socket, limit: int, enough) -> bytes:
    got = b""
    while not enough(got):
        chunk = s.recv(limit)
        if not chunk:
            break
        got += chunk
    return got
