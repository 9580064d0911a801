#!/usr/bin/env python3
"""The driver's arithmetic and report from given figures (suite bench): medians, ratios measured
repetition by repetition, targets, and a report that says what is missing instead of guessing."""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from benchlib import fleet, programs, report, restart_figures, stats  # noqa: E402
from benchlib.tiers import SECTIONS  # noqa: E402


def load(failures: int = 0, forced: int = 0, refused: int = 0) -> dict:
    counts = {k: 0 for k in ("refused", "fresh_reset", "fresh_eof", "keepalive_race", "mid_response", "timeout",
                             "non_2xx", "broken_stream", "other", "connections_opened")}
    counts.update(ok=1000, forced_reconnects=forced, refused=refused, keepalive_race=failures - refused)
    return {"schema": "fdsup-load/1", "duration_ms": 1000, "counts": counts, "failures": failures, "longest_gap_ms": 3.0,
            "latency_ms": {"p50": 0.1, "p99": 1.0, "max": 2.0}, "throughput": {"before": 10, "during": 9, "after": 10},
            "restarts": [{"start_ms": 100, "end_ms": 150, "exit_status": 0}] * 3,
            "timeline": {"bucket_ms": 100, "ok": [1], "failures": [0], "forced_reconnects": [0]}}


def restarts_section(loads: dict[str, list[dict]]) -> dict:
    return {"connections": 64, "duration_s": 1, "restarts": 3, "repetitions": 2, "instances": 2,
            "subjects": [{"id": sid, "title": sid, "description": "", "order": 0,
                          "modes": {"keepalive": {"runs": [{"repetition": i + 1, "load": d, "logs": "l"}
                                                           for i, d in enumerate(runs)]}}}
                         for sid, runs in loads.items()]}


class Stats(unittest.TestCase):
    def test_median_min_max(self):
        f = stats.figure({"id": "a", "samples": [3, 1, 2], "target": {"op": ">=", "value": 2}})
        self.assertEqual((f["median"], f["min"], f["max"], f["met"]), (2, 1, 3, True))

    def test_target_on_median_or_every_sample(self):
        raw = {"id": "a", "samples": [0, 0, 1], "target": {"op": "==", "value": 0}}
        self.assertTrue(stats.figure(raw)["met"])
        self.assertFalse(stats.figure(raw, every=True)["met"])

    def test_ratio_is_taken_repetition_by_repetition(self):
        figs = {f["id"]: f for f in (stats.figure({"id": "n", "samples": [10, 30, 20]}),
                                     stats.figure({"id": "d", "samples": [10, 10, 40]}))}
        r = stats.ratio({"id": "r", "numerator": "n", "denominator": "d",
                         "target": {"op": ">=", "value": 0.99}}, figs)
        self.assertEqual(r["samples"], [1.0, 3.0, 0.5])
        self.assertEqual((r["median"], r["min"], r["max"], r["met"]), (1.0, 0.5, 3.0, True))

    def test_ratio_of_unequal_sample_counts_is_an_error(self):
        figs = {f["id"]: f for f in (stats.figure({"id": "n", "samples": [1, 2]}),
                                     stats.figure({"id": "d", "samples": [1]}))}
        r = stats.ratio({"id": "r", "numerator": "n", "denominator": "d"}, figs)
        self.assertIn("same repetitions", r["error"])
        self.assertIsNone(r["median"])

    def test_unknown_op_is_refused(self):
        with self.assertRaises(ValueError):
            stats.figure({"id": "a", "samples": [1], "target": {"op": ">", "value": 0}})


class Programs(unittest.TestCase):
    def test_reads_fdsup_bench_json(self):
        with tempfile.TemporaryDirectory() as tmp:
            raw = pathlib.Path(tmp) / "x.json"
            raw.write_text(json.dumps({"schema": "fdsup-bench/1", "section": "handoff", "figures": [
                {"id": "handoff.fdsupd.16384.rate", "unit": "conn/s", "samples": [1e5, 3e5, 2e5]}]}))
            got = programs.read(raw)
            self.assertEqual(got["figures"][0]["median"], 2e5)
            raw.write_text(json.dumps({"schema": "fdsup-bench/1", "section": "restarts"}))
            with self.assertRaisesRegex(ValueError, "section 'restarts'"):
                programs.read(raw)


class Report(unittest.TestCase):
    def results(self, loads) -> dict:
        sec = restarts_section(loads)
        sec["figures"] = restart_figures.figures(sec)
        sections = {name: {"status": "not run", "why": "test"} for name in SECTIONS}
        sections["restarts"] = sec
        return {"tier": "smoke", "date": "d", "command": "c", "wall_s": 1, "sections": sections,
                "machine": {"cpu": "c", "cores": 2, "memory": "m", "kernel": "k", "debian": "12",
                            "rlimit_nofile": "1 / 2", "versions": {}},
                "load_average": {"start": "0", "end": "0"}, "plots_missing": "test"}

    def test_handoff_targets_are_judged_on_every_repetition(self):
        res = self.results({"fdsup-handoff": [load(), load(failures=2)], "fdsup-drain": [load(), load()]})
        figs = {f["id"]: f for f in res["sections"]["restarts"]["figures"]}
        self.assertFalse(figs["restarts.fdsup-handoff.keepalive.failures"]["met"])
        self.assertEqual(figs["restarts.fdsup-handoff.keepalive.failures"]["median"], 1)
        self.assertTrue(figs["restarts.fdsup-drain.keepalive.refused"]["met"])
        self.assertIsNone(figs["restarts.fdsup-drain.keepalive.failures"]["met"])  # no target

    def test_no_throughput_after_when_the_last_restart_ended_with_the_run(self):
        late = load()
        late["restarts"] = [{"start_ms": 250, "end_ms": 990, "exit_status": 0}]
        late["throughput"]["after"] = 0.0
        figs = {f["id"]: f for f in self.results({"slow": [late], "fast": [load()]})["sections"]["restarts"]["figures"]}
        self.assertIsNone(figs["restarts.slow.keepalive.throughput_after"]["median"])
        self.assertEqual(figs["restarts.fast.keepalive.throughput_after"]["median"], 10)

    def test_report_says_what_is_missing(self):
        res = self.results({"fdsup-handoff": [load(), load()]})
        with tempfile.TemporaryDirectory() as tmp:
            report.write_md(res, pathlib.Path(tmp) / "report.md")
            text = (pathlib.Path(tmp) / "report.md").read_text()
        self.assertIn("| fdsup-handoff | keepalive | 0 failures of any kind | 0 | met |", text)
        self.assertIn("not measured in this run* (`handoff.fdsupd.16384.rate`", text)
        self.assertIn("6 restarts of 2 instances", text)

    def test_fleet_fills_in_a_measured_rollout(self):
        res = self.results({})
        res["sections"]["rollout"] = {"figures": [stats.figure(
            {"id": "rollout.64.batch4.ms_per_instance", "samples": [1.0, 2.0, 3.0]})]}
        text = "\n".join(fleet.markdown(res))
        self.assertIn("128 ms for a host of 64 instances", text)


if __name__ == "__main__":
    unittest.main()
