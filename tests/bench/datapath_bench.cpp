// datapath-bench: is fdsupd on the data path? (section `datapath`)
//
// The same worker (libactivate/examples/http-keepalive, one process) under
// the same load (wrk -t1 -c64, a real client) twice per repetition,
// interleaved: once as fdsupd's instance (fdsupd binds and passes the
// listener), once on a socket this program binds and passes with
// LISTEN_FDS=1/LISTEN_PID (no supervisor anywhere). The ratio is the
// contract's `datapath.ratio`; fdsupd's CPU time during each loaded run is
// reported too (it should be about 0: workers accept from the listener
// themselves).
//
//   datapath-bench [--tier smoke|quick|full] [--json FILE]     (bench-contract.md section 1)
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_report.hpp"
#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace {

using fdsup::bench::BenchArgs;
using fdsup::bench::BenchReport;
using fdsup::bench::Target;
using fdsup::bench::Tier;
using fdsup::test::DaemonHarness;
using fdsup::test::quoted;

constexpr int kBacklog = 4096; // fdsupd's default `backlog`, so both listeners are alike

struct Plan {
    int repeats;
    int seconds;
};

Plan planOf(Tier tier)
{
    switch (tier) {
    case Tier::Smoke:
        return {1, 1};
    case Tier::Quick:
        return {3, 5};
    case Tier::Full:
        return {7, 15};
    }
    return {3, 5};
}

// Requests/sec from wrk's output; throws when wrk failed or said nothing.
double runWrk(int port, int seconds)
{
    const auto r = fdsup::test::runProcess({fdsup::bench::programPath("wrk"), "-t1", "-c64",
                                            "-d" + std::to_string(seconds) + "s",
                                            "http://127.0.0.1:" + std::to_string(port) + "/"},
                                           {}, std::chrono::seconds(seconds + 30));
    std::smatch m;
    static const std::regex rate(R"(Requests/sec:\s+([0-9.]+))");
    if (r.exitCode != 0 || !std::regex_search(r.out, m, rate)) {
        throw std::runtime_error("wrk failed (exit " + std::to_string(r.exitCode) + "): " + r.out + r.err);
    }
    static const std::regex errors(R"(Non-2xx or 3xx responses|Socket errors)");
    if (std::regex_search(r.out, errors)) {
        (void)std::fprintf(stderr, "datapath-bench: wrk saw errors:\n%s", r.out.c_str());
    }
    return std::stod(m[1]);
}

// The worker on its own socket: bound here, passed as fd 3 with LISTEN_FDS=1 and LISTEN_PID.
class OwnSocketWorker {
public:
    OwnSocketWorker()
    {
        fd_ = fdsup::UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        const int one = 1;
        sockaddr_in a = fdsup::test::loopbackAddress(0);
        socklen_t len = sizeof(a);
        if (!fd_ || setsockopt(fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            bind(fd_.get(), reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0 ||
            listen(fd_.get(), kBacklog) != 0 ||
            getsockname(fd_.get(), reinterpret_cast<sockaddr *>(&a), &len) != 0) {
            throw std::runtime_error(std::string("cannot bind the worker's own socket: ") +
                                     std::strerror(errno));
        }
        port_ = ntohs(a.sin_port);
        const std::string binary = fdsup::test::requireEnv("FDSUP_TEST_HTTP_KEEPALIVE");
        pid_ = fork();
        if (pid_ == 0) {
            child(binary);
        }
        if (pid_ < 0) {
            throw std::runtime_error("fork failed");
        }
        fd_.reset(); // the worker holds it now, as under fdsupd only the worker accepts
        if (!fdsup::test::waitUntil([this] { return fdsup::test::loopbackAccepts(port_); })) {
            throw std::runtime_error("the worker on its own socket does not answer");
        }
    }
    ~OwnSocketWorker()
    {
        if (pid_ > 0) {
            (void)kill(pid_, SIGKILL);
            (void)waitpid(pid_, nullptr, 0);
        }
    }
    OwnSocketWorker(const OwnSocketWorker &) = delete;
    OwnSocketWorker &operator=(const OwnSocketWorker &) = delete;
    [[nodiscard]] int port() const { return port_; }

private:
    // Between fork and exec: this program is single-threaded here.
    [[noreturn]] void child(const std::string &binary)
    {
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        const int devnull = open("/dev/null", O_RDWR);
        (void)dup2(devnull, 0);
        (void)dup2(devnull, 1);
        (void)dup2(devnull, 2);
        if (dup2(fd_.get(), 3) != 3) {
            _exit(127);
        }
        (void)close_range(4, ~0U, 0);
        (void)setenv("LISTEN_FDS", "1", 1);
        (void)setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
        (void)unsetenv("LISTEN_FDNAMES");
        execl(binary.c_str(), binary.c_str(), static_cast<char *>(nullptr));
        _exit(127);
    }

    fdsup::UniqueFd fd_;
    int port_ = 0;
    pid_t pid_ = -1;
};

std::string configOf(const DaemonHarness &fdsupd)
{
    return fdsupd.supervisorTable() +
           "\n[socket.web]\nlisten = \"tcp://127.0.0.1:0\"\nbacklog = " + std::to_string(kBacklog) +
           "\n\n[service.web]\ncommand = [" + quoted(fdsup::test::requireEnv("FDSUP_TEST_HTTP_KEEPALIVE")) +
           "]\nsockets = [\"web\"]\ninstances = 1\nready = \"started\"\n";
}

void declare(BenchReport &report)
{
    report.figure("datapath.fdsupd.rate", "http-keepalive under fdsupd, wrk -t1 -c64", "req/s", true);
    report.figure("datapath.own.rate", "http-keepalive on its own socket, wrk -t1 -c64", "req/s", true);
    report.figure("datapath.fdsupd.cpu_ms", "fdsupd's CPU time during the load under it", "ms", false,
                  Target{"<=", 10, "≈ 0 (fdsupd is not on the data path)"});
    report.ratio("datapath.ratio", "under fdsupd / own socket (same worker, same load)",
                 "datapath.fdsupd.rate", "datapath.own.rate", Target{">=", 0.99, "≥ 0.99"});
}

int body(const BenchArgs &args, BenchReport &report)
{
    const Plan plan = planOf(args.tier);
    declare(report);
    DaemonHarness fdsupd;
    std::string why;
    if (!fdsupd.start(configOf(fdsupd), why)) {
        (void)std::fprintf(stderr, "datapath-bench: fdsupd did not start: %s\n", why.c_str());
        return 1;
    }
    const int port = fdsupd.port("web");
    OwnSocketWorker own;
    for (int i = 0; i < plan.repeats; ++i) {
        // Alternate which goes first, so a drift of the machine's load weighs on both alike.
        for (int k = 0; k < 2; ++k) {
            if ((i + k) % 2 == 0) {
                const double cpu0 = fdsup::test::cpuSecondsOf(fdsupd.pid());
                report.add("datapath.fdsupd.rate", runWrk(port, plan.seconds));
                report.add("datapath.fdsupd.cpu_ms",
                           (fdsup::test::cpuSecondsOf(fdsupd.pid()) - cpu0) * 1000.0);
            } else {
                report.add("datapath.own.rate", runWrk(own.port(), plan.seconds));
            }
        }
        (void)std::fprintf(stderr, "datapath-bench: repetition %d of %d done\n", i + 1, plan.repeats);
    }
    report.fact("load", "wrk -t1 -c64 -d" + std::to_string(plan.seconds) + "s, keep-alive GET /");
    report.note(
        "The same http-keepalive binary, one process, serves both runs of a repetition; under fdsupd it "
        "is an instance (`ready = \"started\"`, no channel), on its own socket this program binds "
        "127.0.0.1:0 with the same backlog and execs it with `LISTEN_FDS=1`. fdsupd only holds the "
        "listener: the worker accepts from it, so its CPU time during the load is the cost of "
        "supervision.");
    fdsupd.stop();
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    return fdsup::bench::benchMain(argc, argv, "datapath-bench", "datapath", body);
}
