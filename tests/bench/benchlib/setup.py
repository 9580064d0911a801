"""Installing what is missing (.ci/lib.sh's FDSUP_PACKAGES, gnuplot-nox among them) and the release build."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

RELEASE = ["--buildtype=release", "-Db_ndebug=true", "-Dtests=enabled"]


def install(source: pathlib.Path, progress) -> None:
    progress("==> installing what is missing (.ci/lib.sh: fdsup_install_missing)")
    subprocess.run(["bash", "-c", ". .ci/lib.sh && fdsup_install_missing"], cwd=source, check=True)


def _introspect(build_dir: pathlib.Path, what: str) -> list:
    out = subprocess.run(["meson", "introspect", what, str(build_dir)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def bench_targets(build_dir: pathlib.Path) -> list[str]:
    """What the benchmark runs, as ninja targets: the smoke test's dependencies (fdsupd, fdsupctl,
    fdsup-load, the workers, the shim) and every benchmark program with its own; not the test suites."""
    files = {t["id"]: t["filename"] for t in _introspect(build_dir, "--targets")}
    ids = set()
    for test in _introspect(build_dir, "--tests"):
        if test["name"] == "bench-smoke":
            ids.update(test["depends"])
    for bench in _introspect(build_dir, "--benchmarks"):
        ids.update(bench["depends"])
    return sorted(os.path.relpath(f, build_dir) for i in ids for f in files.get(i, []))


def build(source: pathlib.Path, build_dir: pathlib.Path, progress) -> None:
    """Configures (or reconfigures) build_dir as a release build and builds what the benchmark runs."""
    progress(f"==> release build in {build_dir} ({' '.join(RELEASE)})")
    env = dict(os.environ)
    env.setdefault("CCACHE_DIR", str(pathlib.Path.home() / ".cache" / "fdsup-ci" / "ccache"))
    env.setdefault("CCACHE_BASEDIR", str(source))
    if (build_dir / "build.ninja").exists():
        subprocess.run(["meson", "configure", str(build_dir)] + RELEASE, cwd=source, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["ninja", "-C", str(build_dir), "build.ninja"], cwd=source, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    else:
        subprocess.run(["meson", "setup", str(build_dir)] + RELEASE, cwd=source, env=env, check=True)
    try:
        targets = bench_targets(build_dir)
    except (subprocess.CalledProcessError, ValueError, KeyError) as e:
        progress(f"  meson introspect failed ({e}): building everything")
        targets = []
    subprocess.run(["ninja", "-C", str(build_dir)] + targets, cwd=source, env=env, check=True)
