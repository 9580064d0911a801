"""Prints the ninja targets of BUILD_DIR to build: all of them but the executables of the excluded tests.

usage: targets.py BUILD_DIR [--no-suite SUITE]... [--no-benchmarks]

CI builds each target where it is used: the integration suites run only in
the sanitized build, so the other build need not link their executables; the
benchmarks run in neither, so they are built (and compiled with -Werror)
once, in the other build. Whatever a kept test needs (fdsupd, the helpers)
stays, since it is a target of its own.
"""

import json
import os
import subprocess
import sys


def introspect(build_dir, what):
    out = subprocess.run(["meson", "introspect", what, build_dir], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    build_dir, args = sys.argv[1], sys.argv[2:]
    suites, benchmarks = set(), False
    while args:
        if args[0] == "--no-suite" and len(args) > 1:
            suites.add(args[1])
            args = args[2:]
        elif args[0] == "--no-benchmarks":
            benchmarks = True
            args = args[1:]
        else:
            sys.exit(__doc__)
    tests = introspect(build_dir, "--tests")
    skipped = [t for t in tests if any(s.split(":")[-1] in suites for s in t["suite"])]
    excluded = {os.path.normpath(t["cmd"][0]) for t in skipped}
    if benchmarks:
        excluded.update(os.path.normpath(b["cmd"][0]) for b in introspect(build_dir, "--benchmarks"))
    # An executable that a kept test runs stays.
    excluded.difference_update(os.path.normpath(t["cmd"][0]) for t in tests if t not in skipped)
    root = os.path.abspath(build_dir)
    for target in introspect(build_dir, "--targets"):
        if target["build_by_default"]:
            for f in target["filename"]:
                if os.path.normpath(f) not in excluded:
                    print(os.path.relpath(f, root))


if __name__ == "__main__":
    main()
