"""results.json, results.csv and report.md from what the sections measured."""

from __future__ import annotations

import csv
import json
import pathlib

from . import fleet, stats
from .restart_figures import TARGETS
from .restarts import FAILURE_CLASSES
from .tiers import SECTIONS

MODES = ("keepalive", "newconn", "think", "stream")
TITLES = {"restarts": "1. Restarts under load, against the alternatives",
          "handoff": "2. Handoff throughput against the kernel's limit",
          "datapath": "3a. Cost: the data path", "rollout": "3b. Cost: rollout",
          "footprint": "3c. Cost: footprint",
          "soak": "4. Soak: consecutive rolling restarts under load"}


def all_figures(results: dict) -> list[dict]:
    out = []
    for name in SECTIONS:
        sec = results["sections"][name]
        out += [dict(f, section=name, kind="figure") for f in sec.get("figures", [])]
        out += [dict(r, section=name, kind="ratio") for r in sec.get("ratios", [])]
    return out


def write_json(results: dict, path: pathlib.Path) -> None:
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")


def write_csv(results: dict, path: pathlib.Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["section", "kind", "id", "label", "unit", "better", "median", "min", "max",
                    "samples", "target", "met"])
        for fig in all_figures(results):
            t = fig.get("target") or {}
            w.writerow([fig["section"], fig["kind"], fig["id"], fig.get("label", ""), fig.get("unit", ""),
                        fig.get("better", ""), fig.get("median"), fig.get("min"), fig.get("max"),
                        ";".join(repr(s) for s in fig.get("samples", [])),
                        f"{t.get('op', '')} {t.get('value', '')}".strip(), _met_word(fig.get("met"), "")])


def _met_word(met, none="–") -> str:
    return {True: "met", False: "not met"}.get(met, none)


def _target_text(t: dict | None) -> str:
    if not t:
        return "–"
    return t.get("text") or f"{t['op']} {stats.fmt(t['value'])}"


def machine_md(results: dict) -> list[str]:
    m = results["machine"]
    v = m["versions"]
    rows = [("CPU", f"{m['cpu']} ({m['cores']} cores)"), ("memory", m["memory"]), ("kernel", m["kernel"]),
            ("Debian", m["debian"]), ("RLIMIT_NOFILE (soft / hard)", m["rlimit_nofile"]),
            ("load average at start / end", f"{results['load_average']['start']} / {results['load_average']['end']}")]
    rows += [(k, val) for k, val in v.items()]
    return ["## The machine", "", "| | |", "|---|---|"] + [f"| {k} | {val} |" for k, val in rows] + [""]


def subjects_md(sec: dict) -> list[str]:
    lines = ["### Subjects", "", "| subject | what runs, what a restart is | the restart command returns | status |",
             "|---|---|---|---|"]
    for s in sec.get("subjects", []):
        runs = [r for m in s.get("modes", {}).values() for r in m.get("runs", [])]
        returns = next((r["restart_returns"] for r in runs if "restart_returns" in r), "–")
        returns = {"complete": "when the restart is complete", "triggered": "once it was triggered"}.get(returns, returns)
        status = f"n/a: {s['unavailable']}" if "unavailable" in s else "ran" if runs else "not run"
        lines.append(f"| **{s['id']}** ({s['title']}) | {s['description']} | {returns} | {status} |")
    lines += [f"- module error: {e}" for e in sec.get("module_errors", [])]
    return lines + [""]


def _cell(figs: dict, sid: str, mode: str, key: str) -> str:
    f = figs.get(f"restarts.{sid}.{mode}.{key}")
    return stats.spread(f) if f else "–"


def mode_table(sec: dict, figs: dict, mode: str) -> list[str]:
    ran = [s for s in sec.get("subjects", []) if s.get("modes", {}).get(mode, {}).get("runs")]
    classes = [c for c in FAILURE_CLASSES
               if any((figs.get(f"restarts.{s['id']}.{mode}.{c}") or {}).get("max") for s in ran)]
    cols = (["ok", "failures"] + classes + ["forced_reconnects", "longest_gap_ms", "throughput_before",
                                             "throughput_during", "throughput_after", "restart_ms"])
    heads = (["ok", "**failures**"] + [c.replace("_", " ") for c in classes] +
             ["forced reconnects", "longest gap ms", "req/s before", "req/s during", "req/s after", "restart ms"])
    lines = [f"### Mode {mode}", "", "| subject | " + " | ".join(heads) + " |",
             "|---|" + "---:|" * len(heads)]
    for s in sec.get("subjects", []):
        m = s.get("modes", {}).get(mode, {})
        if m.get("runs") and any("load" in r for r in m["runs"]):
            row = [_cell(figs, s["id"], mode, c) for c in cols]
        else:
            row = [_why_not(s, m)] + [""] * (len(cols) - 1)
        lines.append(f"| {s['id']} | " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Failure classes not shown were 0 for every subject in this mode." if
                 len(classes) < len(FAILURE_CLASSES) else "")
    errors = [(s["id"], r) for s in sec.get("subjects", []) for r in s.get("modes", {}).get(mode, {}).get("runs", [])
              if "error" in r]
    lines += [f"- {sid}, repetition {r['repetition']}: **failed to run**: {r['error']} (logs: `{r['logs']}`)"
              for sid, r in errors]
    return lines + [""]


def _why_not(s: dict, m: dict) -> str:
    if "unavailable" in s:
        return f"n/a: {s['unavailable']}"
    for key in ("unsupported", "skipped"):
        if key in m:
            return f"{'n/a' if key == 'unsupported' else 'not run'}: {m[key]}"
    if m.get("runs"):
        return "failed to run (below)"
    return "not run"


def targets_md(sec: dict, figs: dict) -> list[str]:
    lines = ["### Targets", "", "Judged on every repetition (a target of 0 holds in every run).", "",
             "| subject | mode | target | worst run | met |", "|---|---|---|---:|---|"]
    for s in sec.get("subjects", []):
        for key, text in TARGETS.get(s["id"], {}).items():
            for mode in MODES:
                f = figs.get(f"restarts.{s['id']}.{mode}.{key}")
                if f:
                    lines.append(f"| {s['id']} | {mode} | {text} | {stats.fmt(f['max'])} | {_met_word(f['met'])} |")
                else:
                    why = _why_not(s, s.get("modes", {}).get(mode, {}))
                    lines.append(f"| {s['id']} | {mode} | {text} | – | not measured ({why}) |")
    return lines + [""]


def restarts_md(results: dict) -> list[str]:
    sec = results["sections"]["restarts"]
    lines = [f"## {TITLES['restarts']}", ""]
    if sec.get("status") == "not run":
        return lines + [f"Not run: {sec.get('why', '')}", ""]
    lines += [f"Each run: {sec['connections']} connections for {sec['duration_s']:g} s while the subject is "
              f"restarted {sec['restarts']} times; {sec['repetitions']} repetition(s) per subject and mode, "
              f"each cell the median (min–max over repetitions); {sec['instances']} worker processes where the "
              f"subject can choose. Raw fdsup-load JSON: `raw/restarts/`, logs: `logs/restarts/`.", ""]
    if sec.get("error"):
        lines += [f"**Section 1 could not run: {sec['error']}**", ""]
    figs = {f["id"]: f for f in sec.get("figures", [])}
    lines += subjects_md(sec) + targets_md(sec, figs)
    for mode in MODES:
        lines += mode_table(sec, figs, mode)
    lines += plots_md(sec, results)
    return lines


def plots_md(sec: dict, results: dict) -> list[str]:
    lines = ["### Over time", ""]
    if results.get("plots_missing"):
        return lines + [f"No plots: {results['plots_missing']}", ""]
    for s in sec.get("subjects", []):
        svg = results.get("plots", {}).get(s["id"])
        if svg:
            lines += [f"![{s['id']}: ok and failures per 100 ms, restarts shaded]({svg})", ""]
    return lines


def program_md(results: dict, name: str) -> list[str]:
    sec = results["sections"][name]
    lines = [f"## {TITLES[name]}", ""]
    if sec.get("status") == "not run":
        return lines + [f"Not run: {sec.get('why', '')}", ""]
    for p in sec.get("failed", []):
        lines.append(f"- **{p['name']} did not measure**: {p['error']} (log: `{p['log']}`)")
    for p in sec.get("ran", []):
        lines.append(f"- `{p['command']}`: {p['wall_s']:.0f} s (log: `{p['log']}`, JSON: `{p['raw']}`)")
    if sec.get("figures"):
        lines += ["", "| figure | median (min–max) | unit | n | target | met |", "|---|---:|---|---:|---|---|"]
        lines += [f"| {f.get('label', f['id'])} `{f['id']}` | {stats.spread(f)} | {f.get('unit', '')} | "
                  f"{len(f['samples'])} | {_target_text(f.get('target'))} | {_met_word(f.get('met'))} |"
                  for f in sec["figures"]]
    if sec.get("ratios"):
        lines += ["", "| ratio | median (min–max) | target | met |", "|---|---:|---|---|"]
        lines += [f"| {r.get('label', r['id'])} `{r['id']}` | {r.get('error') or stats.spread(r)} | "
                  f"{_target_text(r.get('target'))} | {_met_word(r.get('met'))} |" for r in sec["ratios"]]
    if sec.get("facts"):
        lines += ["", "| fact | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in sec["facts"].items()]
    lines.append("")
    for note in sec.get("notes", []):
        lines += [note, ""]
    if not sec.get("figures") and not sec.get("failed"):
        lines += ["No program of this build reported figures of this section.", ""]
    return lines


def write_md(results: dict, path: pathlib.Path) -> None:
    lines = [f"# fdsup benchmark report ({results['tier']})", "",
             f"{results['date']}, `{results['command']}`, {results['wall_s']:.0f} s. "
             "How to read it: docs/benchmark.md in the source tree. Every figure is the median of "
             "repeated runs with its spread (min–max).", ""]
    lines += machine_md(results) + restarts_md(results)
    for name in SECTIONS[1:]:
        lines += program_md(results, name)
    lines += fleet.markdown(results)
    path.write_text("\n".join(lines) + "\n")
