// soak-bench: consecutive rolling restarts of handoff services under continuous load (section `soak`).
//
// A real fdsupd runs two services of 4 instances each with `handoff = true`:
// `web` (the http-keepalive example) and `stream` (seqnum-echo). Two
// fdsup-load processes keep HTTP keep-alive requests and long-lived seqnum
// streams going at them while the soak rolls both services out N times, one
// after the other, with the real `fdsupctl restart SERVICE --wait` (each must
// exit 0). It reports fdsupd's descriptors and private dirty memory after the
// warm-up, every 100 restarts and at the end (the load stopped and
// settled), the requests and their failures by class, broken streams, the
// restarts' durations and fdsupd's CPU per restart, and whether memory is
// flat (soak_trend.hpp). Exit status 1 when a request failed, a stream broke,
// a restart failed, or fdsupd's descriptors did not come back to the
// baseline; 2 for a bad command line (docs/benchmark.md, "Soak").
//
//   soak-bench [--restarts N] [--tier smoke|quick|full] [--json FILE]
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "bench_report.hpp"
#include "core/fd.hpp"
#include "daemon_harness.hpp"
#include "soak_load.hpp"
#include "soak_report.hpp"
#include "soak_trend.hpp"
#include "test_support.hpp"

namespace {

using fdsup::bench::BenchArgs;
using fdsup::bench::BenchReport;
using fdsup::bench::Checkpoint;
using fdsup::bench::SoakLoad;
using fdsup::bench::SoakResult;
using fdsup::bench::Tier;
using fdsup::test::DaemonHarness;
using fdsup::test::quoted;

constexpr int kInstances = 4;
constexpr int kConnections = 32;
// Restarts before the baseline: the first rollouts size fdsupd's tables and the allocator's arenas.
constexpr int kWarmup = 10;
constexpr int kEvery = 100;
constexpr std::chrono::minutes kRestartDeadline{2};

int restartsOf(Tier tier)
{
    return tier == Tier::Smoke ? 10 : tier == Tier::Quick ? 100 : 1000;
}

std::string serviceTable(const std::string &name, const std::string &worker)
{
    return "\n[socket." + name + "]\nlisten = \"tcp://127.0.0.1:0\"\nbacklog = 1024\n\n[service." + name +
           "]\ncommand = [" + quoted(worker) + "]\nsockets = [" + quoted(name) +
           "]\ninstances = " + std::to_string(kInstances) +
           "\nready = \"channel\"\nhandoff = true\ndrain_timeout = \"10s\"\nready_timeout = \"10s\"\n";
}

// At the default log level (info), as deployed: the harness's own table asks for debug.
std::string configOf(const DaemonHarness &fdsupd)
{
    return "[supervisor]\ncontrol = " + quoted(fdsupd.controlPath()) + "\n" +
           serviceTable("web", fdsup::test::requireEnv("FDSUP_TEST_HTTP_KEEPALIVE")) +
           serviceTable("stream", fdsup::test::requireEnv("FDSUP_TEST_SEQNUM_ECHO"));
}

// fdsupd's ends of control connections: accepted sockets carry the control socket's path in /proc/net/unix
// (state 03, connected; the listener is 01).
int controlConnectionsOf(const DaemonHarness &fdsupd)
{
    std::set<std::string> connected;
    std::ifstream in("/proc/net/unix");
    std::string line;
    std::getline(in, line); // Num RefCount Protocol Flags Type St Inode Path
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string num, refs, protocol, flags, type, state, inode, path;
        fields >> num >> refs >> protocol >> flags >> type >> state >> inode >> path;
        if (state == "03" && path == fdsupd.controlPath()) {
            connected.insert("socket:[" + inode + "]");
        }
    }
    int n = 0;
    for (const auto &[fd, what] : fdsup::test::openFds(fdsupd.pid())) {
        n += static_cast<int>(connected.count(what));
    }
    return n;
}

// Rss of the [heap] mapping of /proc/PID/smaps, KiB (0 without one).
double heapKibOf(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
    bool heap = false;
    for (std::string line; std::getline(in, line);) {
        if (line.ends_with("[heap]")) {
            heap = true;
        } else if (heap && line.starts_with("Rss:")) {
            return std::stod(line.substr(4));
        }
    }
    return 0;
}

// fdsupd's descriptors and memory between two restarts. fdsupctl has exited, but fdsupd may not have
// read its hang-up yet (on a busy machine it often has not): waits until it closed that connection.
Checkpoint checkpoint(const DaemonHarness &fdsupd, int restarts)
{
    if (!fdsup::test::waitUntil([&] { return controlConnectionsOf(fdsupd) == 0; })) {
        throw std::runtime_error("fdsupd kept a connection of an fdsupctl that exited");
    }
    return {restarts, fdsup::test::countFdsOf(fdsupd.pid()), fdsup::bench::privateDirtyKibOf(fdsupd.pid()),
            heapKibOf(fdsupd.pid())};
}

double msSince(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// The time process pid ran on a CPU, in ms: /proc/PID/schedstat counts nanoseconds, where /proc/PID/stat
// counts clock ticks (10 ms), longer than what fdsupd spends on a restart.
double cpuMsOf(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/schedstat");
    double ns = 0;
    if (!(in >> ns)) {
        throw std::runtime_error("cannot read /proc/" + std::to_string(pid) + "/schedstat");
    }
    return ns / 1e6;
}

// One rolling restart of each service, one after the other; false (with fdsupctl's words) when one failed.
bool restartBoth(DaemonHarness &fdsupd, SoakResult &result, bool measured)
{
    const double cpu0 = cpuMsOf(fdsupd.pid());
    for (const char *service : {"web", "stream"}) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto r = fdsupd.fdsupctl({"restart", service, "--wait"}, kRestartDeadline);
        const double ms = msSince(t0);
        if (r.exitCode != 0) {
            result.failedRestart =
                std::string("fdsupctl restart ") + service + " --wait exited with " +
                (r.timedOut ? "no status (killed at the deadline)" : "status " + std::to_string(r.exitCode)) +
                ": " + r.out + r.err;
            return false;
        }
        if (measured) {
            result.restartMs[service].push_back(ms);
        }
    }
    if (measured) {
        result.cpuMsPerRestart.push_back(cpuMsOf(fdsupd.pid()) - cpu0);
    }
    return true;
}

void progress(const Checkpoint &c, const char *what)
{
    (void)std::fprintf(stderr,
                       "soak-bench: %s %5d restarts: fdsupd %d fds, %.0f KiB private dirty (heap %.0f)\n",
                       what, c.restarts, c.fds, c.privateKib, c.heapKib);
}

// The warm-up, the baseline, then `restarts` restarts with a checkpoint every kEvery.
bool rollOut(DaemonHarness &fdsupd, SoakResult &result, int restarts)
{
    for (int i = 0; i < kWarmup; ++i) {
        if (!restartBoth(fdsupd, result, false)) {
            return false;
        }
    }
    result.points.push_back(checkpoint(fdsupd, 0));
    result.baseline = fdsup::test::openFds(fdsupd.pid());
    progress(result.points.back(), "after the warm-up,");
    const auto t0 = std::chrono::steady_clock::now();
    const auto cpu0 = fdsup::test::cpuTimesOf(fdsupd.pid());
    // Read when the loop ends, however it ends.
    const auto measure = [&] {
        result.wallS = msSince(t0) / 1000.0;
        const auto cpu = fdsup::test::cpuTimesOf(fdsupd.pid());
        result.cpuUserS = cpu.user - cpu0.user;
        result.cpuSystemS = cpu.system - cpu0.system;
    };
    for (int i = 1; i <= restarts; ++i) {
        if (!restartBoth(fdsupd, result, true)) {
            measure();
            return false;
        }
        result.restartsDone = i;
        if (i % kEvery == 0 || i == restarts) {
            result.points.push_back(checkpoint(fdsupd, i));
            progress(result.points.back(), "after");
        }
    }
    measure();
    return true;
}

// The load stopped: waits (with a deadline) for fdsupd's descriptors to come back to the baseline.
void settle(DaemonHarness &fdsupd, SoakResult &result)
{
    const auto baseline = static_cast<int>(result.baseline.size());
    const pid_t pid = fdsupd.pid();
    result.settled = fdsup::test::waitUntil([&] { return fdsup::test::countFdsOf(pid) == baseline; });
    result.end = checkpoint(fdsupd, result.restartsDone);
    if (!result.settled) {
        const auto now = fdsup::test::openFds(pid);
        std::map<int, std::string> gone;
        for (const auto &[fd, what] : result.baseline) {
            if (auto it = now.find(fd); it == now.end() || it->second != what) {
                gone.emplace(fd, what);
            }
        }
        result.fdsOpened = "open now, not after the warm-up:\n" +
                           fdsup::test::describeFds(fdsup::test::fdsOpenedSince(result.baseline, pid)) +
                           "open after the warm-up, not now:\n" + fdsup::test::describeFds(gone);
    }
    progress(result.end, "the load stopped, settled:");
}

// A page of fdsupd's binary that the page cache still holds dirty (the
// linker's writes, not yet written back) counts as fdsupd's Private_Dirty:
// 2.7 MB of it right after a build (docs/benchmark.md). Writing the binary
// back first makes the figures fdsupd's own.
void writeBack(const std::string &path)
{
    const fdsup::UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd || fsync(fd.get()) < 0) {
        throw std::runtime_error("cannot write back " + path + ": " + std::strerror(errno));
    }
}

int body(const BenchArgs &args, BenchReport &report, std::optional<int> restartsAsked)
{
    const int restarts = restartsAsked.value_or(restartsOf(args.tier));
    writeBack(fdsup::test::requireEnv("FDSUPD"));
    DaemonHarness fdsupd;
    std::string why;
    if (!fdsupd.start(configOf(fdsupd), why)) {
        throw std::runtime_error("fdsupd did not start: " + why);
    }
    SoakLoad http("keepalive", fdsupd.port("web"), kConnections, fdsupd.dir().path());
    SoakLoad streams("stream", fdsupd.port("stream"), kConnections, fdsupd.dir().path());
    if (!http.waitRunning() || !streams.waitRunning()) {
        throw std::runtime_error("fdsup-load did not open its connections");
    }
    SoakResult result;
    result.restartsAsked = restarts;
    result.warmup = kWarmup;
    rollOut(fdsupd, result, restarts);
    result.http = http.stop();
    result.streams = streams.stop();
    if (!result.baseline.empty()) {
        settle(fdsupd, result);
    }
    const auto broker = fdsupd.fdsupctl({"connections", "--json"});
    result.broker = broker.exitCode == 0 ? nlohmann::json::parse(broker.out) : nlohmann::json::object();
    const int status = fdsup::bench::reportSoak(report, result);
    if (status != 0) {
        const std::string log = fdsupd.log();
        const std::size_t from = log.size() > 8000 ? log.size() - 8000 : 0;
        (void)std::fprintf(stderr, "---- fdsupd log (its end) ----\n%s\n", log.substr(from).c_str());
    }
    fdsupd.stop();
    return status;
}

} // namespace

int main(int argc, char **argv)
{
    std::vector<char *> rest{argv[0]};
    std::optional<int> restarts;
    for (int i = 1; i < argc; ++i) {
        if (std::string(argv[i]) != "--restarts") {
            rest.push_back(argv[i]);
            continue;
        }
        char *end = nullptr;
        const long n = i + 1 < argc ? std::strtol(argv[i + 1], &end, 10) : 0;
        if (i + 1 >= argc || *end != '\0' || n < 1 || n > 100000) {
            (void)std::fprintf(stderr,
                               "soak-bench: --restarts %s: expected a whole number from 1 to 100000\n",
                               i + 1 < argc ? argv[i + 1] : "(missing)");
            return 2;
        }
        restarts = static_cast<int>(n);
        ++i;
    }
    return fdsup::bench::benchMain(
        static_cast<int>(rest.size()), rest.data(), "soak-bench", "soak",
        [&](const BenchArgs &args, BenchReport &report) { return body(args, report, restarts); });
}
