"""Runs clang-tidy over FILEs, skipping those whose last check was clean and whose inputs have not changed since.

usage: tidy.py BUILD_DIR CACHE_DIR FILE...

A file's key hashes everything its result depends on: the clang-tidy version
and arguments, every .clang-tidy from its directory up to the repository's
root, the file's compile commands (with the clone's and build dir's paths
taken out, so that a clone elsewhere finds the same key), and the content of
every file its compilation read, as ninja recorded them (`ninja -t deps`: the
project headers and the system ones). Only a clean result (exit status 0, no
diagnostic) is recorded, as an empty file named by the key under CACHE_DIR;
a finding is never cached, so a file with findings is checked, and fails,
every time. A file whose dependencies ninja does not know (not built in
BUILD_DIR) is always checked.
"""

import concurrent.futures
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

TIDY = "clang-tidy"
TIDY_ARGS = ["--quiet"]
# Results not used for this long are deleted.
MAX_AGE_DAYS = 30


def sha256_file(path, memo):
    if path not in memo:
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            memo[path] = h.hexdigest()
        except OSError:
            memo[path] = None
    return memo[path]


def ninja_deps(build_dir):
    """{output: [input paths as ninja recorded them]} from the ninja deps log."""
    out = subprocess.run(["ninja", "-C", build_dir, "-t", "deps"], check=True,
                         capture_output=True, text=True).stdout
    deps, current = {}, None
    for line in out.splitlines():
        if not line.strip():
            current = None
        elif not line.startswith(" "):
            current = line.split(":", 1)[0]
            deps[current] = []
        elif current is not None:
            deps[current].append(line.strip())
    return deps


def per_output_args(args):
    """The arguments that name this one compilation's outputs or private dir, which differ between two
    targets that compile the same file with the same flags."""
    skip, out = False, []
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MQ", "-MF", "-MT"):
            skip = True
            continue
        if a.startswith("-I") and a.endswith(".p"):
            continue
        out.append(a)
    return out


def main():
    started = time.monotonic()
    build_dir, cache_dir, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    root = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
    build_abs = os.path.realpath(build_dir)
    os.makedirs(cache_dir, exist_ok=True)

    def neutral(text):
        # The same checkout in another place must give the same key.
        return text.replace(build_abs, "@BUILD@").replace(root, "@ROOT@")

    with open(os.path.join(build_dir, "compile_commands.json")) as f:
        entries = {}
        for e in json.load(f):
            path = os.path.realpath(os.path.join(e["directory"], e["file"]))
            entries.setdefault(path, []).append(e)
    deps = ninja_deps(build_dir)
    memo = {}

    version = subprocess.run([TIDY, "--version"], check=True, capture_output=True, text=True).stdout
    common = hashlib.sha256()
    common.update(b"fdsup tidy cache 1\0" + version.encode() + b"\0" + " ".join(TIDY_ARGS).encode() + b"\0")

    def configs(path):
        """Every .clang-tidy from the file's directory up to the root: the ones clang-tidy may read."""
        found, d = [], os.path.dirname(path)
        while True:
            c = os.path.join(d, ".clang-tidy")
            if os.path.exists(c):
                found.append(c)
            if d == root or os.path.dirname(d) == d:
                return found
            d = os.path.dirname(d)

    todo, jobs, hits = [], [], 0
    for name in files:
        path = os.path.realpath(os.path.join(root, name))
        found = entries.get(path)
        if not found:
            print(f"clang-tidy: {name} has no compile command in {build_dir}")
            return 1
        # One entry per distinct set of flags: the fuzz targets' shared main() is compiled once per
        # target with the same flags, and checking it once is enough.
        unique = {}
        for e in found:
            argv = e["arguments"] if "arguments" in e else shlex.split(e["command"])
            unique.setdefault(tuple(per_output_args(argv)), e)
        chosen = list(unique.values())
        key = common.copy()
        key.update(name.encode() + b"\0" + (sha256_file(path, memo) or "-").encode() + b"\0")
        for c in configs(path):
            key.update(neutral(c).encode() + b"\0" + (sha256_file(c, memo) or "-").encode() + b"\0")
        cacheable = True
        for e in chosen:
            key.update(neutral(e.get("command", " ".join(e.get("arguments", [])))).encode() + b"\0")
            inputs = deps.get(e["output"]) if "output" in e else None
            if not inputs:
                cacheable = False
                continue
            for dep in sorted(inputs):
                dep_abs = os.path.normpath(os.path.join(e["directory"], dep))
                digest = sha256_file(dep_abs, memo)
                if digest is None:
                    cacheable = False
                key.update(neutral(dep_abs).encode() + b"\0" + (digest or "-").encode() + b"\0")
        stamp = os.path.join(cache_dir, key.hexdigest()) if cacheable else None
        if stamp and os.path.exists(stamp):
            os.utime(stamp)
            hits += 1
            continue
        todo.extend(chosen)
        jobs.append((name, stamp))

    status = 0
    if jobs:
        # Longest first, by the time each file took last time, so no core idles at the end.
        timings_path = os.path.join(cache_dir, "timings.json")
        try:
            with open(timings_path) as f:
                timings = json.load(f)
        except (OSError, ValueError):
            timings = {}
        jobs.sort(key=lambda j: -timings.get(j[0], 0.0))
        with tempfile.TemporaryDirectory() as db:
            with open(os.path.join(db, "compile_commands.json"), "w") as f:
                json.dump(todo, f)

            def check(job):
                start = time.monotonic()
                r = subprocess.run([TIDY, "-p", db, *TIDY_ARGS, job[0]], cwd=root,
                                   capture_output=True, text=True)
                return job, r, time.monotonic() - start

            with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                for (name, stamp), r, seconds in pool.map(check, jobs):
                    timings[name] = round(seconds, 1)
                    clean = r.returncode == 0 and "warning:" not in r.stdout and "error:" not in r.stdout
                    if clean:
                        if stamp:
                            open(stamp, "w").close()
                        continue
                    status = 1
                    sys.stdout.write(r.stdout)
                    if not r.stdout.strip():
                        sys.stdout.write(r.stderr)
                    sys.stdout.flush()
        with open(timings_path, "w") as f:
            json.dump(timings, f, indent=0, sort_keys=True)

    cutoff = time.time() - MAX_AGE_DAYS * 86400
    for entry in os.scandir(cache_dir):
        if entry.name != "timings.json" and entry.stat().st_mtime < cutoff:
            os.unlink(entry.path)
    print(f"clang-tidy: {len(files)} files, {hits} unchanged since a clean check, {len(jobs)} checked"
          f" ({time.monotonic() - started:.0f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
