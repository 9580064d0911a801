#!/usr/bin/env python3
"""The soak in CI (suite bench): `soak-bench --restarts 50` against this build, then its JSON checked:
0 failed requests, 0 broken streams, 0 failed restarts, fdsupd's descriptors back to the baseline, the
load and the handoffs real (docs/benchmark.md, "Soak"). The exit status of soak-bench says the same;
this test also proves the report says it."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile

RESTARTS = 50


def figure(data: dict, fid: str) -> list[float]:
    for f in data["figures"]:
        if f["id"] == fid:
            return f["samples"]
    raise KeyError(f"no figure {fid} in the soak's JSON")


def check(data: dict) -> list[str]:
    problems = []

    def expect(cond: bool, what: str) -> None:
        if not cond:
            problems.append(what)

    expect(data.get("schema") == "fdsup-bench/1" and data.get("section") == "soak", "not a fdsup-bench/1 soak")
    expect(figure(data, "soak.restarts") == [RESTARTS], f"restarts done: {figure(data, 'soak.restarts')}")
    for fid in ("soak.restarts_failed", "soak.http.failures", "soak.stream.failures", "soak.stream.broken",
                "soak.fds_end_minus_start"):
        expect(figure(data, fid) == [0], f"{fid}: {figure(data, fid)}, expected 0")
    for fid in ("soak.web.restart_ms", "soak.stream.restart_ms", "soak.cpu_ms_per_restart"):
        expect(len(figure(data, fid)) == RESTARTS, f"{fid}: {len(figure(data, fid))} samples")
    expect(figure(data, "soak.http.requests")[0] > 0, "no HTTP request was answered")
    expect(figure(data, "soak.stream.echoes")[0] > 0, "no stream echo came back")
    # Every restart drains 4 instances a service holding 32 connections: they are handed over.
    expect(figure(data, "soak.handed")[0] > 0, "no connection was handed over")
    expect(figure(data, "soak.handed") == figure(data, "soak.adopted"), "handed and adopted differ")
    fds = figure(data, "soak.fds")
    expect(len(fds) == 2 and fds[0] == fds[-1], f"fdsupd's descriptors at the checkpoints: {fds}")
    return problems


def main() -> int:
    soak = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="fdsup-soak-") as tmp:
        out = pathlib.Path(tmp) / "soak.json"
        argv = [soak, "--restarts", str(RESTARTS), "--tier", "smoke", "--json", str(out)]
        print("$ " + " ".join(argv), flush=True)
        proc = subprocess.run(argv, timeout=170, check=False)
        problems = [] if proc.returncode == 0 else [f"soak-bench exited with status {proc.returncode}"]
        if out.is_file():
            problems += check(json.loads(out.read_text()))
        else:
            problems.append("soak-bench wrote no JSON")
    for p in problems:
        print(f"FAIL: {p}", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
