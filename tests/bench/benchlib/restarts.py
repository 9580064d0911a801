"""Section 1: every subject in every mode under fdsup-load, restarted three times per run."""

from __future__ import annotations

import importlib
import json
import pathlib
import shutil
import tempfile
import time
import traceback

from . import context
from .tiers import Tier

SUBJECTS_DIR = pathlib.Path(__file__).resolve().parent.parent / "subjects"

# fdsup-load's failure classes (contract section 2), in the report's order.
FAILURE_CLASSES = ("refused", "fresh_reset", "fresh_eof", "keepalive_race", "mid_response",
                   "timeout", "non_2xx", "broken_stream", "other")


def discover() -> tuple[list, list[str]]:
    """Every Subject of tests/bench/subjects/*.py, by order; and the modules that failed to load."""
    subjects, errors = [], []  # SUBJECTS_DIR is on sys.path: context imports base from there
    for path in sorted(SUBJECTS_DIR.glob("*.py")):
        if path.stem == "base":
            continue
        try:
            module = importlib.import_module(path.stem)
            subjects.extend(module.SUBJECTS)
        except Exception as e:  # a broken module is reported, the others run
            errors.append(f"subjects/{path.name}: {type(e).__name__}: {e}")
    return sorted(subjects, key=lambda s: (s.order, s.id)), errors


class Section:
    """Runs section 1 and keeps what happened: runs, n/a reasons, errors."""

    def __init__(self, tier: Tier, build: pathlib.Path, source: pathlib.Path, out: pathlib.Path,
                 instances: int, progress):
        self.tier, self.build, self.source, self.out = tier, build, source, out
        self.instances = instances
        self.progress = progress
        self.deadline = time.monotonic() + tier.restarts_budget_s
        self.load = None

    def run(self) -> dict:
        subjects, errors = discover()
        result = {"tier": self.tier.name, "duration_s": self.tier.duration_s,
                  "connections": self.tier.connections, "restarts": self.tier.restarts,
                  "repetitions": self.tier.repetitions, "instances": self.instances,
                  "module_errors": errors, "subjects": []}
        try:
            self.load = context.find_binary(self.build, "fdsup-load")
        except FileNotFoundError as e:
            result["error"] = str(e)
        for subject in subjects:
            result["subjects"].append(self.subject(subject, result.get("error")))
        return result

    def subject(self, subject, load_missing: str | None) -> dict:
        entry = {"id": subject.id, "title": subject.title, "order": subject.order,
                 "description": subject.description, "modes": {}}
        probe = self.context(subject.id, "probe", 0)
        try:
            why = load_missing or subject.unavailable(probe)
        except Exception as e:
            why = f"unavailable() raised {type(e).__name__}: {e}"
        shutil.rmtree(probe.workdir, ignore_errors=True)
        shutil.rmtree(probe.logdir, ignore_errors=True)
        if why:
            entry["unavailable"] = why
            self.progress(f"  {subject.id}: n/a ({why})")
            return entry
        for mode in ("keepalive", "newconn", "think", "stream"):
            entry["modes"][mode] = self.mode(subject, mode, probe)
        return entry

    def mode(self, subject, mode: str, probe) -> dict:
        if mode not in self.tier.modes:
            return {"skipped": f"not run in the {self.tier.name} tier"}
        try:
            why = subject.unsupported(probe, mode)
        except Exception as e:
            why = f"unsupported() raised {type(e).__name__}: {e}"
        if why:
            return {"unsupported": why}
        runs = []
        for rep in range(self.tier.repetitions):
            if time.monotonic() > self.deadline:
                return {"runs": runs, "skipped": (f"{self.tier.repetitions - rep} of {self.tier.repetitions} "
                                                  f"repetitions not run: the section's time budget of "
                                                  f"{self.tier.restarts_budget_s:g} s was spent")}
            runs.append(self.one(subject, mode, rep))
        return {"runs": runs}

    def context(self, subject_id: str, mode: str, rep: int) -> context.Context:
        name = f"{subject_id}.{mode}.{rep + 1}"
        work = pathlib.Path(tempfile.mkdtemp(prefix=f"fdsup-bench-{name}-"))
        return context.Context(self.build, self.source, work, self.out / "logs" / "restarts" / name,
                               self.instances)

    def one(self, subject, mode: str, rep: int) -> dict:
        """One run: start the subject, drive it with fdsup-load, stop it, keep the JSON in raw/."""
        name = f"{subject.id}.{mode}.{rep + 1}"
        raw = self.out / "raw" / "restarts" / f"{name}.json"
        raw.parent.mkdir(parents=True, exist_ok=True)
        ctx = self.context(subject.id, mode, rep)
        started = time.monotonic()
        run = {"repetition": rep + 1, "raw": str(raw.relative_to(self.out)), "logs": str(ctx.logdir.relative_to(self.out))}
        try:
            target = subject.start(ctx, mode)
            run["restart_returns"] = target.restart_returns
            run["load"] = self.drive(ctx, target, mode, raw)
        except Exception as e:
            run["error"] = f"{type(e).__name__}: {e}"
            (ctx.logdir / "driver-error.log").write_text(traceback.format_exc())
        finally:
            try:
                subject.stop(ctx)
            except Exception as e:
                run.setdefault("error", f"stop: {type(e).__name__}: {e}")
            left = ctx.cleanup()
            if left:
                run["killed"] = left
            shutil.rmtree(ctx.workdir, ignore_errors=True)
        run["wall_s"] = round(time.monotonic() - started, 2)
        self.progress(f"  {name}: " + (f"ERROR {run['error']}" if "error" in run else summary_line(run["load"]))
                      + f" [{run['wall_s']} s]")
        return run

    def drive(self, ctx: context.Context, target, mode: str, raw: pathlib.Path) -> dict:
        host = f"[{target.host}]" if ":" in target.host else target.host
        argv = [self.load, "--target", f"{host}:{target.port}", "--mode", mode,
                "--connections", str(self.tier.connections), "--duration", f"{int(self.tier.duration_s * 1000)}ms",
                "--restart", target.restart, "--restarts", str(self.tier.restarts),
                "--timeout", self.tier.load_timeout, "--json", raw, "--quiet"]
        limit = self.tier.duration_s + 120
        try:
            ctx.run(argv, "fdsup-load", timeout=limit)
        except RuntimeError as e:
            raise RuntimeError(f"fdsup-load: {e}") from None
        data = json.loads(raw.read_text())
        if data.get("schema") != "fdsup-load/1":
            raise RuntimeError(f"{raw}: schema {data.get('schema')!r}, not fdsup-load/1")
        return data


def summary_line(load: dict) -> str:
    counts = load["counts"]
    bad = ", ".join(f"{k} {counts[k]}" for k in FAILURE_CLASSES if counts.get(k))
    return (f"ok {counts['ok']}, failures {load['failures']}" + (f" ({bad})" if bad else "")
            + f", forced reconnects {counts['forced_reconnects']}, longest gap {load['longest_gap_ms']:.0f} ms")
