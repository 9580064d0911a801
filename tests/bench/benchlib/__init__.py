"""The benchmark driver behind tests/bench/run (docs/benchmark.md).

tiers: sizes and time budgets; setup: install and build; context: what a
subject gets (base.Context); restarts: section 1 (subjects under fdsup-load);
programs: the benchmark programs' fdsup-bench/1 figures; stats: medians,
ratios, targets; machine: the machine and versions; plots: gnuplot SVGs;
fleet: section 5; report: results.json, results.csv, report.md.
"""
