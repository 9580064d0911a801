"""tests/bench/run: the command line, the order of things, the progress lines."""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time

from . import machine, plots, programs, report, restart_figures, restarts, setup
from .tiers import SECTIONS, TIERS

SOURCE = pathlib.Path(__file__).resolve().parents[3]
OUTPUTS = ("report.md", "results.json", "results.csv", "plots", "raw", "logs")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tests/bench/run", description="fdsup's benchmark: one command, one "
                                "report (docs/benchmark.md).")
    tier = p.add_mutually_exclusive_group()
    for name, text in (("smoke", "tiny sizes, proves the machinery (CI), about a minute"),
                       ("quick", "the default: under 5 minutes on 2 cores after the build"),
                       ("full", "medians over repetitions: under 45 minutes")):
        tier.add_argument(f"--{name}", dest="tier", action="store_const", const=name, help=text)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench-report"),
                   help="where the report goes (default bench-report/)")
    p.add_argument("--build", type=pathlib.Path, help="use this build directory as it is (default: build "
                   "a release build in build-bench)")
    p.add_argument("--no-install", action="store_true", help="do not install missing Debian packages")
    p.add_argument("--only", help=f"comma-separated sections to run: {', '.join(SECTIONS)}")
    args = p.parse_args(argv)
    args.tier = args.tier or "quick"
    if args.build and not (args.build / "meson-info").is_dir():
        p.error(f"--build {args.build}: not a meson build directory (no meson-info/)")
    args.only_set = set(SECTIONS)
    if args.only:
        args.only_set = {s.strip() for s in args.only.split(",") if s.strip()}
        bad = sorted(args.only_set - set(SECTIONS))
        if bad or not args.only_set:
            p.error(f"--only {args.only}: unknown section(s) {', '.join(bad) or '(none given)'}; "
                    f"the sections are {', '.join(SECTIONS)}")
    return args


def prepare_out(out: pathlib.Path) -> None:
    """Makes out ready: a new directory, or an earlier report's, whose outputs are replaced."""
    if out.exists() and any(out.iterdir()) and not (out / "results.json").exists():
        raise SystemExit(f"tests/bench/run: --out {out}: the directory exists and holds no earlier report "
                         "(no results.json); refusing to write into it")
    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)


class Progress:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f}s] {text}", flush=True)


def sections(args, build: pathlib.Path, out: pathlib.Path, progress) -> dict:
    tier = TIERS[args.tier]
    result = {name: {"status": "not run", "why": "not asked for (--only)"} for name in SECTIONS}
    if "restarts" in args.only_set:
        progress(f"==> section 1, restarts under load (budget {tier.restarts_budget_s:g} s)")
        instances = max(2, min(8, os.cpu_count() or 2))
        sec = restarts.Section(tier, build, SOURCE, out, instances, progress).run()
        sec["figures"] = restart_figures.figures(sec)
        sec["status"] = "error" if sec.get("error") else "ran"
        result["restarts"] = sec
    if args.only_set - {"restarts"}:
        progress(f"==> benchmark programs (meson introspect --benchmarks; each at most "
                 f"{tier.program_timeout_s:g} s)")
        ran = programs.run_all(build, out, tier, args.only_set, progress)
        for name in SECTIONS[1:]:
            if name in args.only_set:
                result[name] = gather(name, ran)
        result["programs"] = ran
    return result


def gather(name: str, ran: list[dict]) -> dict:
    """One section of the report from the programs that reported it (or are named after it and failed)."""
    mine = [p for p in ran if p.get("section") == name]
    failed = [p for p in ran if "error" in p and p["name"] == name]
    sec = {"status": "ran" if mine else ("error" if failed else "no program"), "programs": [p["name"] for p in mine],
           "ran": [{k: p[k] for k in ("name", "command", "wall_s", "log", "raw")} for p in mine], "failed": failed, "figures": [], "ratios": [], "notes": [], "facts": {}}
    for p in mine:
        for key in ("figures", "ratios", "notes"):
            sec[key] += p[key]
        sec["facts"].update(p["facts"])
    return sec


def main(argv: list[str]) -> int:
    args = parse(argv)
    progress = Progress()
    out = args.out.resolve()
    prepare_out(out)
    build = args.build.resolve() if args.build else SOURCE / "build-bench"
    try:
        if not args.no_install:
            setup.install(SOURCE, progress)
        if not args.build:
            setup.build(SOURCE, build, progress)
    except subprocess.CalledProcessError as e:
        print(f"tests/bench/run: {' '.join(map(str, e.cmd))} exited with status {e.returncode}; "
              "nothing was measured", file=sys.stderr)
        return 1
    started = time.time()
    results = {"schema": "fdsup-bench-report/1", "tier": args.tier,
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "command": "tests/bench/run " + " ".join(shlex.quote(a) for a in argv),
               "build": str(build), "machine": machine.describe(SOURCE),
               "load_average": {"start": machine.load_average()}}
    found = sections(args, build, out, progress)
    results["programs"] = found.pop("programs", [])
    results["sections"] = found
    results["subjects"] = subject_index(found["restarts"])
    results["load_average"]["end"] = machine.load_average()
    results["plots_missing"] = plots.available()
    if not results["plots_missing"]:
        progress("==> plots (gnuplot)")
        results["plots"] = plots.draw(found["restarts"], out, progress)
    results["wall_s"] = time.time() - started
    results["figures"] = report.all_figures(results)
    report.write_json(results, out / "results.json")
    report.write_csv(results, out / "results.csv")
    report.write_md(results, out / "report.md")
    progress(f"==> report: {out / 'report.md'} (results.json, results.csv, plots/, raw/, logs/)")
    return 0


def subject_index(sec: dict) -> list[dict]:
    """Every subject with what happened to it in each mode: ran, n/a (why), not run, error."""
    out = []
    for s in sec.get("subjects", []):
        modes = {}
        for mode, m in s.get("modes", {}).items():
            runs = m.get("runs", [])
            modes[mode] = ("ran" if any("load" in r for r in runs) else
                           "error" if runs else "n/a" if "unsupported" in m else "not run")
        out.append({"id": s["id"], "title": s["title"], "status": "n/a" if "unavailable" in s else "available",
                    "why": s.get("unavailable"), "modes": modes})
    return out
