"""Sections 2 and 3: the benchmark programs (contract section 1), found with
`meson introspect --benchmarks`, run with --tier and --json, read as fdsup-bench/1."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import time

from . import stats
from .tiers import SECTIONS, Tier


def find(build: pathlib.Path) -> list[dict]:
    """The benchmarks meson knows of in build: name, cmd, env."""
    out = subprocess.run(["meson", "introspect", "--benchmarks", str(build)], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"meson introspect --benchmarks {build}: {out.stderr.strip() or out.stdout.strip()}")
    return json.loads(out.stdout)


def wanted(bench: dict, only: set[str]) -> bool:
    """A program named after a section runs when that section is asked for; any other with any
    section but restarts (its own section is only known from its JSON)."""
    if bench["name"] in SECTIONS:
        return bench["name"] in only
    return bool(only - {"restarts"})


def run_all(build: pathlib.Path, out: pathlib.Path, tier: Tier, only: set[str], progress) -> list[dict]:
    try:
        benches = find(build)
    except (RuntimeError, OSError, json.JSONDecodeError) as e:
        return [{"name": "meson introspect", "error": str(e)}]
    results = []
    for bench in sorted(benches, key=lambda b: b["name"]):
        if wanted(bench, only):
            results.append(run_one(bench, out, tier, progress))
    return results


def run_one(bench: dict, out: pathlib.Path, tier: Tier, progress) -> dict:
    name = bench["name"]
    raw = out / "raw" / "programs" / f"{name}.json"
    log = out / "logs" / "programs" / f"{name}.log"
    raw.parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = list(bench["cmd"]) + ["--tier", tier.name, "--json", str(raw)]
    env = dict(os.environ)
    env.update(bench.get("env") or {})
    result = {"name": name, "command": " ".join(argv), "raw": str(raw.relative_to(out)),
              "log": str(log.relative_to(out))}
    progress(f"  {name}: {' '.join(argv)}")
    started = time.monotonic()
    if raw.exists():
        raw.unlink()
    try:
        status = execute(argv, env, log, tier.program_timeout_s, bench.get("workdir"))
        result["exit_status"] = status
        if status != 0:
            result["error"] = f"exited with status {status}: {last_lines(log)}"
        else:
            result.update(read(raw))
    except subprocess.TimeoutExpired:
        result["error"] = f"did not end within the tier's {tier.program_timeout_s:g} s (killed)"
    except (OSError, ValueError) as e:
        result["error"] = f"{type(e).__name__}: {e}"
    result["wall_s"] = round(time.monotonic() - started, 2)
    progress(f"  {name}: " + (f"ERROR {result['error']}" if "error" in result else
                              f"{len(result['figures'])} figures, section {result['section']}")
             + f" [{result['wall_s']} s]")
    return result


def execute(argv: list[str], env: dict, log: pathlib.Path, timeout: float, cwd: str | None) -> int:
    """Runs a program in its own process group, output to log; on timeout the whole group is killed."""
    with open(log, "wb") as f:
        proc = subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd or None, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # what it left behind too
        except ProcessLookupError:
            pass
        proc.wait()


def read(raw: pathlib.Path) -> dict:
    """A program's fdsup-bench/1 JSON: its figures and ratios with median, min, max and met."""
    if not raw.exists():
        raise ValueError(f"exited 0 but wrote no {raw.name} (does it take --json?)")
    data = json.loads(raw.read_text())
    if data.get("schema") != "fdsup-bench/1":
        raise ValueError(f"{raw.name}: schema {data.get('schema')!r}, not fdsup-bench/1")
    if data.get("section") not in SECTIONS[1:]:
        raise ValueError(f"{raw.name}: section {data.get('section')!r} is not one of {', '.join(SECTIONS[1:])}")
    figs = [stats.figure(f) for f in data.get("figures", [])]
    ids = {f["id"]: f for f in figs}
    return {"program": data.get("program"), "section": data["section"], "tier": data.get("tier"),
            "figures": figs, "ratios": [stats.ratio(r, ids) for r in data.get("ratios", [])],
            "notes": data.get("notes", []), "facts": data.get("facts", {})}


def last_lines(path: pathlib.Path, n: int = 3) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-n:])
