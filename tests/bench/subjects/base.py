"""What a subject of the restarts-under-load benchmark is (docs/benchmark.md).

A subject is one way of serving a port and restarting the server behind it:
fdsup with handoff, nginx's own reload, HAProxy's master-worker reload, ...
The driver (tests/bench/run) starts a subject once per (mode, repetition),
drives it with fdsup-load, which runs the subject's restart command three
times, and stops it. Each module in this directory defines SUBJECTS, a list
of Subject instances; the driver orders them by `order`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import time
from typing import Callable, TypeVar

# The load modes of fdsup-load (--mode): keep-alive at full speed, a new
# connection per request, keep-alive with 0-20 ms random think time, and
# long-lived seqnum streams.
MODES = ("keepalive", "newconn", "think", "stream")


T = TypeVar("T")


class WaitTimeout(RuntimeError):
    """wait_until()'s deadline passed."""


def wait_until(check: Callable[[], T], timeout: float, what: str) -> T:
    """Returns check()'s first true value; raises WaitTimeout(what) once timeout seconds passed.

    The one wait of the benchmark for what nothing signals to an outsider (a port that starts or
    stops accepting, a CLI's answer, a manager's state), as tests/support's waitUntil() is the
    tests': check() is called again after a pause growing from 1 ms to 20 ms, until the deadline."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        result = check()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(what)
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.02)


@dataclasses.dataclass
class Target:
    """Where the load goes and how the subject is restarted."""

    host: str  # "127.0.0.1"
    port: int
    protocol: str  # "http" (modes keepalive, newconn, think) or "seqnum" (mode stream)
    # One shell command (run with /bin/sh -c by fdsup-load) that restarts the
    # server once. It returns when the restart is complete if the subject's
    # tool can say so (fdsupctl restart --wait), else when it was triggered.
    restart: str
    # What the command's return means, for the report: "complete" or "triggered".
    restart_returns: str = "complete"


class Context:
    """What the driver gives a subject. The driver implements it (tests/bench/benchlib);
    the attributes and methods below are the whole interface a subject may use."""

    build: pathlib.Path  # the release build directory
    source: pathlib.Path  # the repository root
    workdir: pathlib.Path  # a fresh private directory for this (subject, mode, repetition), removed after
    logdir: pathlib.Path  # where the subject writes its servers' logs (kept in the report's logs/)
    instances: int  # how many worker processes a subject should run where it can choose (2 on 2 cores)

    def binary(self, name: str) -> pathlib.Path:
        """A built program by name: fdsupd, fdsupctl, fdsup-preload, fdsup-load,
        http-keepalive, seqnum-echo, libactivate-preload.so. Raises if it is missing."""
        raise NotImplementedError

    def free_port(self) -> int:
        """A loopback TCP port nobody listens on now."""
        raise NotImplementedError

    def spawn(self, argv: list[str], name: str, env: dict[str, str] | None = None,
              cwd: pathlib.Path | None = None) -> subprocess.Popen:
        """Starts a long-running process in its own process group, output to logdir/NAME.log.
        The driver kills every process group a subject spawned when the run ends, whatever happened."""
        raise NotImplementedError

    def run(self, argv: list[str], name: str, timeout: float = 30.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Runs a command to its end (output to logdir/NAME.log); raises on a non-zero exit."""
        raise NotImplementedError

    def wait_serving(self, target: Target, timeout: float = 15.0) -> None:
        """Returns once target answers one request of its protocol; raises after timeout."""
        raise NotImplementedError


class Subject:
    id: str = ""  # "fdsup-handoff": file names, JSON keys
    title: str = ""  # "fdsup, handoff (http-keepalive), fdsupctl restart --wait": the report
    order: int = 100  # place in the report
    description: str = ""  # one or two sentences for the report: what runs, what a restart is

    # What the subject runs: programs of this build (names for ctx.binary()) and installed
    # programs (absolute paths). The default unavailable() names the first one missing.
    binaries: tuple[str, ...] = ()
    programs: tuple[str, ...] = ()

    def unsupported(self, ctx: Context, mode: str) -> str | None:
        """None if the subject runs in this mode, else why not (shown as n/a in the report)."""
        return None if mode in MODES else f"unknown mode {mode}"

    def unavailable(self, ctx: Context) -> str | None:
        """None if the subject can run on this machine, else why not (a missing program)."""
        for path in self.programs:
            if not os.access(path, os.X_OK):
                return f"{path} is not installed"
        for name in self.binaries:
            try:
                ctx.binary(name)
            except FileNotFoundError as e:
                return str(e)
        return None

    def start(self, ctx: Context, mode: str) -> Target:
        """Starts the subject for one run in mode and returns once it serves."""
        raise NotImplementedError

    def stop(self, ctx: Context) -> None:
        """Stops everything start() started, gracefully; the driver kills what is left."""
        raise NotImplementedError
