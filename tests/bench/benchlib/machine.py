"""The machine, kernel, Debian release and the versions of what the benchmark runs."""

from __future__ import annotations

import os
import pathlib
import platform
import re
import subprocess


def _cmd(argv: list[str], pattern: str | None = None, cwd: pathlib.Path | None = None) -> str:
    """The first line of a command's output (stdout, else stderr) or the first match of pattern."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=cwd, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"not available ({e.__class__.__name__})"
    text = (out.stdout or "") + (out.stderr or "")
    if pattern:
        m = re.search(pattern, text)
        return m.group(1) if m else "not available"
    lines = text.strip().splitlines()
    return lines[0] if lines and out.returncode == 0 else "not available"


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _read(path: str) -> str:
    try:
        return pathlib.Path(path).read_text().strip()
    except OSError:
        return "unknown"


def load_average() -> str:
    return " ".join(_read("/proc/loadavg").split()[:3])


def describe(source: pathlib.Path) -> dict:
    """Everything the report's first section says about where it ran."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory": _memory(),
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "debian": _read("/etc/debian_version"),
        "rlimit_nofile": _cmd(["sh", "-c", "ulimit -Sn; ulimit -Hn"], r"(\d+\s+\d+)").replace("\n", " / "),
        "versions": {
            "fdsup": _cmd(["git", "describe", "--always", "--dirty", "--tags"], cwd=source),
            "nginx": _cmd(["nginx", "-v"], r"nginx/(\S+)"),
            "haproxy": _cmd(["haproxy", "-v"], r"version (\S+)"),
            "systemd": _cmd(["systemctl", "--version"], r"systemd (\S+)"),
            "python3": platform.python_version(),
            "gcc": _cmd(["gcc", "-dumpfullversion"]),
            "gnuplot": _cmd(["gnuplot", "--version"], r"gnuplot (\S+ patchlevel \S+)"),
        },
    }
