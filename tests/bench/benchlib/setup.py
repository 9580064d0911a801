"""Installing what is missing (.ci/lib.sh's FDSUP_PACKAGES, gnuplot-nox among them) and the release build."""

from __future__ import annotations

import os
import pathlib
import subprocess

RELEASE = ["--buildtype=release", "-Db_ndebug=true", "-Dtests=enabled"]


def install(source: pathlib.Path, progress) -> None:
    progress("==> installing what is missing (.ci/lib.sh: fdsup_install_missing)")
    subprocess.run(["bash", "-c", ". .ci/lib.sh && fdsup_install_missing"], cwd=source, check=True)


def build(source: pathlib.Path, build_dir: pathlib.Path, progress) -> None:
    """Configures (or reconfigures) build_dir as a release build and builds it."""
    progress(f"==> release build in {build_dir} ({' '.join(RELEASE)})")
    env = dict(os.environ)
    env.setdefault("CCACHE_DIR", str(pathlib.Path.home() / ".cache" / "fdsup-ci" / "ccache"))
    env.setdefault("CCACHE_BASEDIR", str(source))
    if (build_dir / "build.ninja").exists():
        subprocess.run(["meson", "configure", str(build_dir)] + RELEASE, cwd=source, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    else:
        subprocess.run(["meson", "setup", str(build_dir)] + RELEASE, cwd=source, env=env, check=True)
    subprocess.run(["ninja", "-C", str(build_dir)], cwd=source, env=env, check=True)
