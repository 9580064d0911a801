"""The tiers of tests/bench/run: how long each section may take and how big it runs."""

from __future__ import annotations

import dataclasses

# The sections of the report, in its order; restarts is built from fdsup-load runs,
# the others from the benchmark programs' fdsup-bench/1 JSON (soak: soak-bench, 10, 100 or
# 1,000 restarts by tier).
SECTIONS = ("restarts", "handoff", "datapath", "rollout", "footprint", "soak")


@dataclasses.dataclass(frozen=True)
class Tier:
    name: str
    duration_s: float  # one fdsup-load run
    repetitions: int  # fdsup-load runs per (subject, mode)
    modes: tuple[str, ...]  # the load modes section 1 runs
    restarts_budget_s: float  # section 1 as a whole: what is left over is skipped and says so
    # One benchmark program: twice the contract's budget for smoke and quick (on a busy 2-core
    # machine handoff-bench quick took over 90 s), a minute more for full; the report gives each
    # program's wall time, so an overrun shows.
    program_timeout_s: float
    connections: int = 64
    restarts: int = 3
    load_timeout: str = "5s"


TIERS = {
    # The CI smoke test: proves the machinery in tiny sizes, never the figures.
    "smoke": Tier("smoke", duration_s=0.8, repetitions=1, modes=("keepalive", "stream"),
                  restarts_budget_s=30, program_timeout_s=20, load_timeout="2s"),
    # The default: under 5 minutes on 2 cores after the build. The four programs take up to
    # 60 s each (rollout-bench took 55 s), so section 1 gets about a third: 29 runs of 2.5 s.
    "quick": Tier("quick", duration_s=2.5, repetitions=1,
                  modes=("keepalive", "newconn", "think", "stream"),
                  restarts_budget_s=110, program_timeout_s=120),
    # Under 45 minutes: medians over 3 repetitions of 10 s.
    "full": Tier("full", duration_s=10, repetitions=3,
                 modes=("keepalive", "newconn", "think", "stream"),
                 restarts_budget_s=1200, program_timeout_s=540),
}
