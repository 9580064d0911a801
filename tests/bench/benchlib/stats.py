"""Medians, spreads, ratios and targets: computed here and nowhere else."""

from __future__ import annotations

import statistics

OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b}


def summary(samples: list[float]) -> dict:
    """median, min, max of samples (None when there are none)."""
    if not samples:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def met(target: dict | None, value: float | None, samples: list[float] | None = None,
        every: bool = False) -> bool | None:
    """Whether target holds for the median (or, with every, for every sample); None without one."""
    if not target or value is None:
        return None
    op = OPS.get(target.get("op"))
    if op is None:
        raise ValueError(f"target op {target.get('op')!r} is not one of {', '.join(OPS)}")
    if every and samples:
        return all(op(s, target["value"]) for s in samples)
    return op(value, target["value"])


def figure(raw: dict, every: bool = False) -> dict:
    """A figure of fdsup-bench/1 with its median, min, max and met added."""
    samples = [float(s) for s in raw.get("samples", [])]
    out = dict(raw)
    out["samples"] = samples
    out.update(summary(samples))
    out["target"] = raw.get("target")
    out["met"] = met(out["target"], out["median"], samples, every)
    if every and out["target"]:
        out["judged"] = "every sample"
    return out


def ratio(raw: dict, figures: dict[str, dict]) -> dict:
    """A ratio of fdsup-bench/1: numerator[i] / denominator[i], then median, min, max."""
    out = dict(raw)
    num = figures.get(raw.get("numerator"))
    den = figures.get(raw.get("denominator"))
    if num is None or den is None:
        out.update(summary([]))
        out["error"] = "numerator or denominator is not a figure of this program"
    elif len(num["samples"]) != len(den["samples"]):
        out.update(summary([]))
        out["error"] = (f"{len(num['samples'])} samples of {num['id']} against "
                        f"{len(den['samples'])} of {den['id']}: not measured in the same repetitions")
    else:
        out["samples"] = [n / d if d else float("nan") for n, d in zip(num["samples"], den["samples"])]
        out.update(summary([s for s in out["samples"] if s == s]))
    out["unit"] = "ratio"
    out["target"] = raw.get("target")
    out["met"] = met(out["target"], out.get("median"))
    return out


def fmt(value: float | None) -> str:
    """A number for the report: thousands separated, about three significant digits."""
    if value is None:
        return "–"
    if value != value:
        return "nan"
    a = abs(value)
    if a >= 1000 or value == int(value):
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def spread(f: dict) -> str:
    """median (min–max), or the median alone when all samples agree."""
    if f.get("median") is None:
        return "–"
    if fmt(f["min"]) == fmt(f["max"]):  # the same as printed: no spread to show
        return fmt(f["median"])
    return f"{fmt(f['median'])} ({fmt(f['min'])}–{fmt(f['max'])})"
