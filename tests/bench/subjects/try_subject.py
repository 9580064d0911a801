"""Try one subject by hand, without the report (no subject here):

    python3 tests/bench/subjects/try_subject.py [--build DIR] [--mode MODE] [--duration 6s]
                                                [--connections 64] [--instances 2] [--dir DIR] SUBJECT_ID

starts the subject, runs fdsup-load against it with its restart command three times, stops it, and
checks that nothing of it is left: no process of the subject, nothing accepting on its port.
Prints fdsup-load's summary; logs in DIR/logs (--dir DIR is emptied first; default: a new
/tmp/fdsup-try-SUBJECT-MODE-* directory, kept and named at the end). Exit 0 when the run went through and nothing was left, 1 otherwise.
The test bench-try-subject (suite bench) runs it as written here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import shutil
import socket
import sys
import tempfile

SUBJECTS: list = []  # the driver imports every module of this directory; this one defines none

HERE = pathlib.Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # nothing written into the source tree


def find(subject_id: str):
    for path in sorted(HERE.glob("*.py")):
        if path.stem in ("try_subject",):
            continue
        for s in getattr(importlib.import_module(path.stem), "SUBJECTS", []):
            if s.id == subject_id:
                return s
    raise SystemExit(f"no subject {subject_id}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("subject")
    p.add_argument("--build", default=str(HERE.parent.parent.parent / "build"))
    p.add_argument("--mode", default="keepalive")
    p.add_argument("--duration", default="6s")
    p.add_argument("--connections", default="64")
    p.add_argument("--instances", type=int, default=2)
    p.add_argument("--dir", help="where the work directory and the logs go, emptied first (default: a new one in /tmp)")
    a = p.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    from benchlib import context  # noqa: E402

    subject = find(a.subject)
    if a.dir:
        shutil.rmtree(a.dir, ignore_errors=True)
    top = pathlib.Path(a.dir or tempfile.mkdtemp(prefix=f"fdsup-try-{a.subject}-{a.mode}-"))
    ctx = context.Context(pathlib.Path(a.build).resolve(), HERE.parent.parent.parent, top / "work",
                          top / "logs", a.instances)
    why = subject.unavailable(ctx) or subject.unsupported(ctx, a.mode)
    if why:
        print(f"{a.subject} {a.mode}: n/a: {why}")
        return 0
    raw = top / "load.json"
    status = 1
    try:
        target = subject.start(ctx, a.mode)
        host = f"[{target.host}]" if ":" in target.host else target.host
        ctx.run([ctx.binary("fdsup-load"), "--target", f"{host}:{target.port}", "--mode", a.mode,
                 "--connections", a.connections, "--duration", a.duration, "--restart", target.restart,
                 "--restarts", "3", "--json", raw], "fdsup-load", timeout=300)
        print((top / "logs" / "fdsup-load.log").read_text())
        data = json.loads(raw.read_text())
        fails = {k: v for k, v in data["counts"].items() if v and k not in ("ok", "connections_opened")}
        print(f"{a.subject} {a.mode}: ok {data['counts']['ok']} {fails} "
              f"restarts {[round(r['end_ms'] - r['start_ms']) for r in data['restarts']]} ms, "
              f"status {[r['exit_status'] for r in data['restarts']]}, restart returns {target.restart_returns}")
        status = 0
    finally:
        subject.stop(ctx)
        left = ctx.cleanup()
        if left:
            print(f"LEFT RUNNING after stop(): {left}")
            status = 1
        print(f"logs: {top / 'logs'}")
        if "target" in locals():
            try:
                with socket.create_connection((target.host, target.port), timeout=1):
                    print(f"STILL ACCEPTING on {target.port} after stop()")
                    status = 1
            except OSError:
                pass
    return status


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main(sys.argv[1:]))
