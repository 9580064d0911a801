"""Section 5, "Past one machine": on paper, with this run's figures filled in where they were measured."""

from __future__ import annotations

from . import stats

HOSTS, INSTANCES, CONNECTIONS = 1000, 64, 16384


def _find(results: dict, fid: str) -> dict | None:
    for sec in results["sections"].values():
        for f in sec.get("figures", []) + sec.get("ratios", []):
            if f["id"] == fid and f.get("median") is not None:
                return f
    return None


def _missing(fid: str, section: str) -> str:
    return f"*not measured in this run* (`{fid}`: section {section} did not report it)"


def rollout_lines(results: dict) -> list[str]:
    lines = []
    for fid in ("rollout.64.batch4.ms_per_instance", "rollout.1000.batch4.ms_per_instance"):
        f = _find(results, fid)
        if not f:
            lines.append(f"- Rollout wall time: {_missing(fid, 'rollout')}.")
            continue
        host_ms = f["median"] * INSTANCES
        lines.append(
            f"- Rollout wall time, `{fid}` = {stats.spread(f)} ms per instance (workers that are ready at once): "
            f"{stats.fmt(host_ms)} ms for a host of {INSTANCES} instances, so {stats.fmt(host_ms * HOSTS / 1000)} s "
            f"for {HOSTS:,} hosts one after another, {stats.fmt(host_ms * HOSTS / 1000 / 20)} s 20 hosts at a time. "
            "A real worker's start-up and readiness come on top and usually dominate.")
    return lines


def cpu_lines(results: dict) -> list[str]:
    f = _find(results, "rollout.64.batch4.cpu_ms_per_instance")
    if not f:
        return []
    return [f"- fdsupd's CPU per instance replaced (`rollout.64.batch4.cpu_ms_per_instance`): {stats.spread(f)} ms, "
            f"{stats.fmt(f['median'] * INSTANCES)} ms of one core per host rollout: the supervisor is not what a "
            "fleet rollout waits for."]


def handoff_lines(results: dict) -> list[str]:
    f = _find(results, "handoff.fdsupd.16384.rate")
    if not f:
        return [f"- Handoff: {_missing('handoff.fdsupd.16384.rate', 'handoff')}."]
    secs = CONNECTIONS / f["median"] if f["median"] else float("inf")
    return [f"- Handoff: {stats.spread(f)} connections/s through fdsupd (`handoff.fdsupd.16384.rate`): a host "
            f"holding {CONNECTIONS:,} client connections moves them all in {stats.fmt(secs * 1000)} ms per "
            f"restart, {stats.fmt(secs * HOSTS)} s of handoff summed over {HOSTS:,} hosts."]


def restart_lines(results: dict) -> list[str]:
    sec = results["sections"]["restarts"]
    runs = [r["load"] for s in sec.get("subjects", []) if s["id"] == "fdsup-handoff"
            for m in s.get("modes", {}).values() for r in m.get("runs", []) if "load" in r]
    if not runs:
        return ["- Restarts under load: *not measured in this run* (section 1 has no fdsup-handoff run)."]
    restarts = sum(len(d["restarts"]) for d in runs)
    failed_cmds = sum(1 for d in runs for r in d["restarts"] if r.get("exit_status") != 0)
    failures = sum(d["failures"] for d in runs)
    forced = sum(d["counts"]["forced_reconnects"] for d in runs)
    ok = sum(d["counts"]["ok"] for d in runs)
    walls = sorted(r["end_ms"] - r["start_ms"] for d in runs for r in d["restarts"])
    wall = walls[len(walls) // 2] if walls else None
    lines = [f"- Restarts under load (fdsup-handoff, every mode of section 1): {restarts} restarts of "
             f"{sec.get('instances')} instances, {failed_cmds} restart command(s) failed, {failures} failed "
             f"requests and {forced} forced reconnects among {ok:,} ok responses; one `fdsupctl restart --wait` "
             f"took {stats.fmt(wall)} ms (median)."]
    if failures == 0 and restarts:
        lines.append(f"  No failure in {restarts} restarts bounds the rate of a failing restart below about "
                     f"{stats.fmt(3 / restarts)} per restart (rule of three, 95 %): this run alone cannot promise "
                     f"zero over the {HOSTS:,} host restarts of a fleet rollout, only that failures are rare.")
    elif restarts:
        lines.append(f"  At this rate a rollout of {HOSTS:,} hosts would see about "
                     f"{stats.fmt(failures / restarts * HOSTS)} failed requests.")
    return lines


def markdown(results: dict) -> list[str]:
    return ["## 5. Past one machine", "",
            "On paper: how an existing orchestrator rolls a fleet of hosts that run fdsupd, with the figures of "
            f"this run extrapolated to {HOSTS:,} hosts × {INSTANCES} instances. A figure this run did not "
            "measure is said to be missing, not guessed.", "",
            "**What fdsupd gives an orchestrator.** `fdsupctl restart SERVICE --wait` is synchronous: it returns "
            "when the rollout is complete, or has failed and been rolled back (the old generation keeps serving), "
            "with fixed exit codes (0 success, 1 the operation failed, 2 bad command line, 3 cannot connect to "
            "fdsupd, 4 refused, 5 no such service: docs/fdsupctl.md). `--timeout` is also sent as the rollout's "
            "deadline, after which fdsupd rolls back by itself; `--batch` and `--order` override the service's "
            "rollout settings. `status --json`, `rollout status --json` and `connections --json` are "
            "machine-readable state (generation, instances, the rollout's steps, the handoff counters), and "
            "`rollout cancel` rolls back on the orchestrator's say-so. The listening sockets never close, so a "
            "host does not have to be taken out of its load balancer to be restarted.", "",
            "**How it is driven.** A deploy tool (Ansible, Salt, a shell loop over ssh) ships the new binary or "
            "configuration, then calls `fdsupctl restart web --wait` host by host or a few hosts at a time, and "
            "stops the fleet rollout at the first non-zero exit. Under Kubernetes fdsupd is the container's "
            "entrypoint: a new *image* is still a new pod (a new network namespace, new sockets: the pod rollout, "
            "readiness gates and connection draining of the Service are Kubernetes' business), but a new "
            "*version on a volume* or a new configuration is rolled inside the running pod with "
            "`kubectl exec POD -- fdsupctl restart web --wait`, which keeps the pod, its IP and its clients' "
            "connections.", "",
            "**What it leaves to the orchestrator.** Which hosts, in what order and how many at once; canaries "
            "and the health of the service beyond readiness (error rates, latency); distributing binaries and "
            "configuration (`fdsupctl reload` applies a new file); rolling back hosts already done when a later "
            "host fails (fdsupd rolls back only the host whose rollout failed); and everything between hosts: "
            "load balancers, DNS, a host that is down.", "",
            "**The figures, extrapolated.**", ""] + rollout_lines(results) + cpu_lines(results) + handoff_lines(results) + \
        restart_lines(results) + [""]
