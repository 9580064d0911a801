// footprint-bench: what fdsupd itself costs, idle and holding things (section `footprint`).
//
// fdsupd's private memory (Private_Clean + Private_Dirty of
// /proc/PID/smaps_rollup) and open descriptors: idle with the shipped demo
// (units/demo.toml, its ports rewritten to ephemeral ones), with 1,000
// listeners and 100 services, and holding connections in the handoff broker
// (a stop-first rollout of a handoff service whose replacement is held
// before exec until this program lets it go). System calls fdsupd makes
// while idle (perf's raw_syscalls:sys_enter on fdsupd's pid), and start-up
// time with 1,000 listeners (exec to READY=1 on the harness's notify socket).
//
//   footprint-bench [--tier smoke|quick|full] [--json FILE]     (bench-contract.md section 1)
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_report.hpp"
#include "daemon_harness.hpp"
#include "footprint_held.hpp"
#include "test_support.hpp"

namespace {

using fdsup::bench::BenchArgs;
using fdsup::bench::BenchReport;
using fdsup::bench::privateKibOf;
using fdsup::bench::Target;
using fdsup::bench::Tier;
using fdsup::test::DaemonHarness;
using fdsup::test::quoted;

struct Plan {
    int repeats;
    int idleSeconds;
    int held;
    int heldRepeats; // 16k connections take ~30 s a repetition on this machine
};

Plan planOf(Tier tier)
{
    switch (tier) {
    case Tier::Smoke:
        return {1, 1, 1024, 1};
    case Tier::Quick:
        return {3, 10, 16384, 1};
    case Tier::Full:
        return {5, 10, 16384, 3};
    }
    return {3, 10, 16384, 1};
}

// [supervisor] at the default log level (info), as deployed: the harness's own table asks for debug.
std::string supervisorTable(const DaemonHarness &fdsupd, const std::string &limits = "")
{
    return "[supervisor]\ncontrol = " + quoted(fdsupd.controlPath()) + "\n" + limits + "\n";
}

void startOrThrow(DaemonHarness &fdsupd, const std::string &config, const char *what,
                  const std::vector<std::string> &env = {})
{
    std::string why;
    if (!fdsupd.start(config, why, {}, env)) {
        throw std::runtime_error(std::string("fdsupd with ") + what + " did not start: " + why);
    }
}

void sample(BenchReport &report, const std::string &base, pid_t pid)
{
    report.add(base + ".private_kib", privateKibOf(pid));
    report.add(base + ".fds", fdsup::test::countFdsOf(pid));
}

void declareFootprint(BenchReport &report, const std::string &base, const std::string &what)
{
    report.figure(base + ".private_kib", "fdsupd private memory, " + what, "KiB", false);
    report.figure(base + ".fds", "fdsupd open descriptors, " + what, "fds", false);
}

// System calls fdsupd makes in `seconds` (perf stat on its pid; "<not counted>" means it never ran: 0).
double idleSyscalls(pid_t pid, int seconds)
{
    const auto r = fdsup::test::runProcess({fdsup::bench::programPath("perf"), "stat", "-x,", "-e",
                                            "raw_syscalls:sys_enter", "-p", std::to_string(pid), "--",
                                            "sleep", std::to_string(seconds)},
                                           {}, std::chrono::seconds(seconds + 30));
    std::smatch m;
    static const std::regex line(R"((<not counted>|[0-9]+),[^,]*,raw_syscalls:sys_enter)");
    if (r.exitCode != 0 || !std::regex_search(r.err, m, line)) {
        throw std::runtime_error("perf stat failed (exit " + std::to_string(r.exitCode) + "): " + r.err);
    }
    return m[1] == "<not counted>" ? 0.0 : std::stod(m[1]);
}

// units/demo.toml in a temporary directory: its own control socket, ephemeral ports, `demo/` linked.
std::string demoConfig(const DaemonHarness &fdsupd)
{
    const std::string units = fdsup::test::requireEnv("FDSUP_UNITS_DIR");
    std::ifstream in(units + "/demo.toml");
    std::stringstream text;
    text << in.rdbuf();
    if (!in) {
        throw std::runtime_error("cannot read " + units + "/demo.toml");
    }
    std::filesystem::create_directory_symlink(units + "/demo", fdsupd.dir() / "demo");
    std::string config =
        std::regex_replace(text.str(), std::regex(R"(tcp://127\.0\.0\.1:[0-9]+)"), "tcp://127.0.0.1:0");
    return std::regex_replace(config, std::regex(R"((^|\n)control\s*=\s*"[^"]*")"),
                              "$1control = " + quoted(fdsupd.controlPath()));
}

void demo(BenchReport &report, const Plan &plan)
{
    declareFootprint(report, "footprint.demo", "idle with the demo (units/demo.toml)");
    report.figure("footprint.idle_syscalls_10s",
                  "fdsupd system calls while idle with the demo, over " + std::to_string(plan.idleSeconds) +
                      " s",
                  "syscalls", false, Target{"==", 0, "0"});
    for (int i = 0; i < plan.repeats; ++i) {
        DaemonHarness fdsupd;
        // The demo's handoff worker (units/demo/http-keepalive) runs the example of this build.
        startOrThrow(fdsupd, demoConfig(fdsupd), "the demo",
                     {"FDSUP_DEMO_BUILD=" + fdsup::test::requireEnv("FDSUP_BUILD_ROOT")});
        sample(report, "footprint.demo", fdsupd.pid());
        if (i == 0) {
            // One window: 10 s each would not fit the tier's time.
            report.add("footprint.idle_syscalls_10s", idleSyscalls(fdsupd.pid(), plan.idleSeconds));
        }
        // A worker that exited while measured (one that cannot start restarts again and again)
        // would make every figure above one of a busy fdsupd, not an idle one.
        if (const std::string log = fdsupd.log(); log.find(" exited ") != std::string::npos) {
            throw std::runtime_error("a demo worker exited while fdsupd was measured idle:\n" + log);
        }
        fdsupd.stop();
    }
}

// `listeners` sockets on 127.0.0.1:0, shared out among `services` services of one sd-worker each.
std::string manyConfig(const DaemonHarness &fdsupd, int listeners, int services)
{
    std::string config = supervisorTable(fdsupd);
    for (int s = 0; s < listeners; ++s) {
        config += "[socket.s" + std::to_string(s) + "]\nlisten = \"tcp://127.0.0.1:0\"\n";
    }
    const std::string worker = "[" + quoted(fdsup::test::requireEnv("FDSUP_TEST_SD_WORKER")) + "]";
    for (int v = 0; v < services; ++v) {
        config += "\n[service.v" + std::to_string(v) + "]\ncommand = " + worker + "\nsockets = [";
        for (int s = v; s < listeners; s += services) {
            config += (s == v ? "\"s" : ", \"s") + std::to_string(s) + "\"";
        }
        config += "]\n";
    }
    return config;
}

void listeners(BenchReport &report, const Plan &plan)
{
    report.figure("footprint.startup_1000_listeners.ms",
                  "start-up with 1,000 listeners and one service (exec to READY=1)", "ms", false,
                  Target{"<=", 100, "≤ 100 ms"});
    report.figure("footprint.startup_1000_listeners_100_services.ms",
                  "start-up with 1,000 listeners and 100 services, their workers ready (exec to READY=1)",
                  "ms", false);
    declareFootprint(report, "footprint.1000_listeners_100_services", "1,000 listeners and 100 services");
    for (int i = 0; i < plan.repeats; ++i) {
        for (const int services : {1, 100}) {
            DaemonHarness fdsupd;
            const std::string config = manyConfig(fdsupd, 1000, services);
            const auto t0 = std::chrono::steady_clock::now();
            startOrThrow(fdsupd, config, "1,000 listeners");
            const double ms =
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            if (services == 1) {
                report.add("footprint.startup_1000_listeners.ms", ms);
            } else {
                report.add("footprint.startup_1000_listeners_100_services.ms", ms);
                sample(report, "footprint.1000_listeners_100_services", fdsupd.pid());
            }
            fdsupd.stop();
        }
    }
}

int body(const BenchArgs &args, BenchReport &report)
{
    const Plan plan = planOf(args.tier);
    rlimit nofile{};
    (void)getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = nofile.rlim_max; // the client ends of the held connections are this program's
    (void)setrlimit(RLIMIT_NOFILE, &nofile);
    report.fact("RLIMIT_NOFILE (hard)", std::to_string(nofile.rlim_max));
    report.fact("demo ports", "units/demo.toml with its tcp:// ports rewritten to 127.0.0.1:0 (ephemeral)");
    demo(report, plan);
    listeners(report, plan);
    fdsup::bench::held(report, plan.held, plan.heldRepeats);
    report.note("Memory is fdsupd's private memory (Private_Clean + Private_Dirty, /proc/PID/smaps_rollup): "
                "what it costs beyond the shared libraries. Start-up is measured from the harness's exec of "
                "fdsupd to its READY=1 on the notify socket (the configuration is written just before). The "
                "idle system calls are counted over one window (" +
                std::to_string(plan.idleSeconds) + " s) with `perf stat -e raw_syscalls:sys_enter -p`.");
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    return fdsup::bench::benchMain(argc, argv, "footprint-bench", "footprint", body);
}
