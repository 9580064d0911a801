#!/usr/bin/env python3
"""The benchmark's smoke test (suite bench): runs `tests/bench/run --smoke` against this build and
checks that the report was written whole. It proves the machinery, never the figures."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, str(HERE))
from benchlib import restarts  # noqa: E402
from benchlib.tiers import SECTIONS  # noqa: E402


def check(cond: bool, what: str, problems: list[str]) -> None:
    if not cond:
        problems.append(what)


def check_results(out: pathlib.Path, problems: list[str]) -> None:
    try:
        results = json.loads((out / "results.json").read_text())
    except (OSError, ValueError) as e:
        problems.append(f"results.json is missing or not JSON: {e}")
        return
    check(results.get("schema") == "fdsup-bench-report/1", "results.json: schema is not fdsup-bench-report/1",
          problems)
    for name in SECTIONS:
        check(name in results.get("sections", {}), f"results.json: section {name} is missing", problems)
    listed = {s["id"]: s for s in results.get("subjects", [])}
    subjects, errors = restarts.discover()
    problems += [f"subject module failed to load: {e}" for e in errors]
    for subject in subjects:
        entry = listed.get(subject.id)
        if entry is None:
            problems.append(f"results.json: subject {subject.id} is missing")
        elif entry["status"] == "available":
            check("ran" in entry["modes"].values(), f"subject {subject.id} is available but no mode ran: "
                  f"{entry['modes']} (logs: {out / 'logs' / 'restarts'})", problems)
            check((out / "plots" / f"{subject.id}.svg").is_file(), f"plots/{subject.id}.svg was not drawn",
                  problems)
            check(any((out / "raw" / "restarts").glob(f"{subject.id}.*.json")),
                  f"raw/restarts/ holds no fdsup-load JSON of {subject.id}", problems)
    ids = {f["id"] for f in results.get("figures", [])}
    check(any(i.startswith("restarts.fdsup-handoff.") for i in ids), "results.json: no figure of fdsup-handoff",
          problems)


def main() -> int:
    build = pathlib.Path(os.environ.get("FDSUP_BUILD_ROOT", sys.argv[1] if len(sys.argv) > 1 else "build"))
    with tempfile.TemporaryDirectory(prefix="fdsup-bench-smoke-") as tmp:
        out = pathlib.Path(tmp) / "report"
        argv = [sys.executable, str(HERE / "run"), "--smoke", "--no-install", "--build", str(build),
                "--out", str(out)]
        print("$ " + " ".join(argv), flush=True)
        proc = subprocess.run(argv, timeout=170, check=False)
        problems: list[str] = []
        check(proc.returncode == 0, f"tests/bench/run exited with status {proc.returncode}", problems)
        check((out / "report.md").is_file() and "## 5. Past one machine" in (out / "report.md").read_text(),
              "report.md is missing or has no section 5", problems)
        csv = (out / "results.csv").read_text().splitlines() if (out / "results.csv").is_file() else []
        check(len(csv) > 1 and csv[0].startswith("section,kind,id,"), "results.csv is missing or empty", problems)
        check_results(out, problems)
        for p in problems:
            print(f"FAIL: {p}", flush=True)
        if problems:
            print((out / "report.md").read_text() if (out / "report.md").is_file() else "(no report.md)")
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
