"""One SVG per subject (gnuplot): its modes as panels, ok responses and failures per 100 ms over
the first repetition, the restarts shaded."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

MODES = ("keepalive", "newconn", "think", "stream")


def available() -> str | None:
    """None when gnuplot is there, else why no plot is drawn."""
    return None if shutil.which("gnuplot") else "gnuplot is not installed (Debian package gnuplot-nox)"


def write_data(path: pathlib.Path, load: dict) -> None:
    tl = load["timeline"]
    step = tl.get("bucket_ms", 100) / 1000.0
    rows = zip(tl["ok"], tl["failures"], tl["forced_reconnects"])
    path.write_text("".join(f"{i * step:.3f} {ok} {bad} {fr}\n" for i, (ok, bad, fr) in enumerate(rows)))


def script(subject: dict, panels: list[tuple[str, pathlib.Path, dict]], svg: pathlib.Path) -> str:
    height = 260 * len(panels) + 40
    lines = [f"set terminal svg size 900,{height} font 'sans,11' background rgb 'white'",
             f"set output '{svg}'",
             f"set multiplot layout {len(panels)},1 title \"{subject['id']}: per 100 ms, repetition 1; "
             f"restarts shaded\"",
             "set xlabel 'seconds since the load started'", "set ylabel 'ok responses'",
             "set y2label 'failures, forced reconnects'", "set ytics nomirror", "set y2tics",
             "set yrange [0:*]", "set y2range [0:*]", "set key outside top center horizontal", "set grid"]
    for mode, data, load in panels:
        lines.append("unset object")
        for i, r in enumerate(load.get("restarts", []), start=1):
            lines.append(f"set object {i} rect from {r['start_ms'] / 1000:.3f}, graph 0 to "
                         f"{max(r['end_ms'], r['start_ms'] + 5) / 1000:.3f}, graph 1 "
                         "fc rgb '#dddddd' fs solid 0.6 noborder behind")
        lines.append(f"set title '{mode}'")
        lines.append(f"plot '{data}' using 1:2 axes x1y1 with steps lw 1.5 lc rgb '#1f77b4' title 'ok', "
                     f"'' using 1:3 axes x1y2 with impulses lw 2 lc rgb '#d62728' title 'failures', "
                     f"'' using 1:($4 > 0 ? $4 : 1/0) axes x1y2 with points pt 7 ps 0.8 lc rgb '#ff7f0e' title 'forced reconnects'")
    lines.append("unset multiplot")
    return "\n".join(lines) + "\n"


def draw(section: dict, out: pathlib.Path, log) -> dict[str, str]:
    """Draws every subject that has a run; returns subject id -> SVG path relative to out."""
    drawn = {}
    plots = out / "plots"
    (plots / "data").mkdir(parents=True, exist_ok=True)
    for subject in section.get("subjects", []):
        panels = []
        for mode in MODES:
            runs = [r for r in subject.get("modes", {}).get(mode, {}).get("runs", []) if "load" in r]
            if runs:
                data = plots / "data" / f"{subject['id']}.{mode}.dat"
                write_data(data, runs[0]["load"])
                panels.append((mode, data, runs[0]["load"]))
        if not panels:
            continue
        svg = plots / f"{subject['id']}.svg"
        gp = plots / "data" / f"{subject['id']}.gp"
        gp.write_text(script(subject, panels, svg))
        proc = subprocess.run(["gnuplot", str(gp)], capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0 or not svg.exists():
            log(f"  plot {subject['id']}: gnuplot failed: {proc.stderr.strip()[-300:]}")
            continue
        drawn[subject["id"]] = str(svg.relative_to(out))
    return drawn
