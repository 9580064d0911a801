"""Section 1's figures (fdsup-bench/1 style, section "restarts") from the fdsup-load runs, with the
issue's targets: fdsup-handoff 0 failures of any kind and 0 forced reconnects in every mode (so 0
broken streams); fdsup-drain and fdsup-shim 0 refused. A restart target is met only when every
repetition meets it ("in every run"), not only the median."""

from __future__ import annotations

import statistics

from . import stats
from .restarts import FAILURE_CLASSES

ZERO = {"op": "==", "value": 0}
TARGETS = {
    "fdsup-handoff": {"failures": "0 failures of any kind", "forced_reconnects": "0 forced reconnects"},
    "fdsup-drain": {"refused": "0 refused connections"},
    "fdsup-shim": {"refused": "0 refused connections"},
}

# (key, label, unit, better, how to read it from one fdsup-load JSON)
MEASURES = [("failures", "failures (all classes)", "count", "lower", lambda d: d["failures"])]
MEASURES += [(c, c.replace("_", " "), "count", "lower", lambda d, c=c: d["counts"][c]) for c in FAILURE_CLASSES]
MEASURES += [
    ("ok", "ok responses", "count", "higher", lambda d: d["counts"]["ok"]),
    ("forced_reconnects", "forced reconnects", "count", "lower", lambda d: d["counts"]["forced_reconnects"]),
    ("longest_gap_ms", "longest gap without an ok response", "ms", "lower", lambda d: d["longest_gap_ms"]),
    ("throughput_before", "throughput before the first restart", "req/s", "higher", lambda d: d["throughput"]["before"]),
    ("throughput_during", "throughput during the restarts", "req/s", "higher", lambda d: d["throughput"]["during"]),
    ("throughput_after", "throughput after the last restart", "req/s", "higher", lambda d: _after(d)),
    ("latency_p99_ms", "latency p99 of ok responses", "ms", "lower", lambda d: d["latency_ms"]["p99"]),
    ("restart_ms", "one restart command's wall time (median of the run's)", "ms", "lower",
     lambda d: statistics.median([r["end_ms"] - r["start_ms"] for r in d["restarts"]]) if d["restarts"] else None),
    ("restart_failures", "restart commands that exited non-zero", "count", "lower",
     lambda d: sum(1 for r in d["restarts"] if r.get("exit_status") != 0)),
]


def _after(d: dict) -> float | None:
    """Throughput after the last restart, or None when the last restart ended with the run (a
    subject whose restarts take longer than the run's quarter): no window to measure, not 0 req/s."""
    last = max((r["end_ms"] for r in d["restarts"]), default=0.0)
    return d["throughput"]["after"] if d["duration_ms"] - last >= 100 else None


def figures(section: dict) -> list[dict]:
    """Every figure of every (subject, mode) that has runs, samples over the repetitions."""
    out = []
    for subject in section.get("subjects", []):
        for mode, m in subject.get("modes", {}).items():
            loads = [r["load"] for r in m.get("runs", []) if "load" in r]
            if not loads:
                continue
            for key, label, unit, better, read in MEASURES:
                samples = [v for v in (read(d) for d in loads) if v is not None]
                text = TARGETS.get(subject["id"], {}).get(key)
                raw = {"id": f"restarts.{subject['id']}.{mode}.{key}",
                       "label": f"{subject['id']}, {mode}: {label}", "unit": unit, "better": better,
                       "samples": samples, "target": dict(ZERO, text=text) if text else None}
                out.append(stats.figure(raw, every=True))
    return out


def by_id(figs: list[dict]) -> dict[str, dict]:
    return {f["id"]: f for f in figs}
