// LoadClients: continuous HTTP load from real client processes (curl, wrk) while a test acts.
#include "load_clients.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace fdsup::test {
namespace {

constexpr std::size_t kFailureSamples = 10;
constexpr const char *kBash = "/bin/bash";
constexpr const char *kCurl = "/usr/bin/curl";
constexpr const char *kWrk = "/usr/bin/wrk";
// PR_SET_PDEATHSIG through exec: a client dies with the test process that
// spawned it, even when that one is killed and never runs a destructor.
constexpr const char *kSetpriv = "/usr/bin/setpriv";

// One client: curl once per request, one line per outcome appended to
// RESULTS: "CURL_EXIT HTTP_CODE BODY" on success, "CURL_EXIT HTTP_CODE
// MESSAGE" otherwise. Only builtins besides curl itself, so the loop costs one
// fork and exec a request. It ends at the stop file or after LIMIT seconds.
constexpr const char *kCurlLoop = R"(# A LoadClients curl client (tests/support/load_clients.hpp).
url=$1 stop=$2 results=$3 scratch=$4 timeout=$5 limit=$6 curl=$7
exec 3>>"$results"
while [[ ! -e $stop ]] && ((SECONDS < limit)); do
    : >"$scratch.body"
    "$curl" -sS --max-time "$timeout" -H 'Connection: close' -o "$scratch.body" -w '%{http_code}' "$url" \
        >"$scratch.code" 2>"$scratch.err" 3>&-
    rc=$?
    http= answer= why=
    read -r http <"$scratch.code"
    read -r answer <"$scratch.body"
    read -r why <"$scratch.err"
    if ((rc == 0)); then
        printf '%d %s %s\n' "$rc" "${http:-000}" "$answer" >&3
    else
        printf '%d %s %s\n' "$rc" "${http:-000}" "$why" >&3
    fi
done
)";

// wrk's script: a pause of delayMs before each request; one line per answer,
// as the curl loop writes it (transport status 0), line-buffered so the test
// sees the load while it runs; at the end (also on SIGINT) its totals on
// stdout.
std::string wrkScript(const std::string &results, long long delayMs)
{
    return "-- A LoadClients wrk script (tests/support/load_clients.hpp).\n"
           "local results = io.open([==[" +
           results +
           "]==], \"a\")\n"
           "results:setvbuf(\"line\")\n"
           "function delay()\n"
           "    return " +
           std::to_string(delayMs) + "\nend\n" + R"(function response(status, headers, body)
    results:write("0 ", status, " ", (body:gsub("\n", " ")), "\n")
end
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("fdsup-load requests %d connect %d read %d write %d timeout %d status %d\n",
        summary.requests, e.connect, e.read, e.write, e.timeout, e.status))
end
)";
}

void requireExecutable(const char *path, const char *package)
{
    if (access(path, X_OK) != 0) {
        throw std::runtime_error(std::string(path) + " is missing; install the Debian package " + package +
                                 " (.ci/lib.sh lists it)");
    }
}

// Parses one results line into an outcome; a failure also gets a sample line.
LoadOutcome parseLine(const std::string &line, std::string &why)
{
    std::istringstream in(line);
    int exit = -1;
    int http = 0;
    LoadOutcome outcome;
    if (!(in >> exit >> http)) {
        why = "unreadable result line: " + line;
        return outcome;
    }
    std::string rest;
    std::getline(in >> std::ws, rest);
    if (exit == 7) {
        outcome.kind = LoadOutcome::Kind::Refused;
        why = "refused (curl exit 7): " + rest;
        return outcome;
    }
    if (exit != 0) {
        why = "curl exit " + std::to_string(exit) + ": " + rest;
        return outcome;
    }
    if (http < 200 || http > 299) {
        why = "HTTP " + std::to_string(http) + ": " + rest;
        return outcome;
    }
    const auto body = nlohmann::json::parse(rest, nullptr, false);
    if (body.is_discarded() || !body.is_object() || !body.contains("pid") ||
        !body.at("pid").is_number_integer()) {
        why = "HTTP " + std::to_string(http) + " without the worker's JSON: " + rest;
        return outcome;
    }
    outcome.kind = LoadOutcome::Kind::Ok;
    outcome.pid = body.at("pid").get<pid_t>();
    if (const auto g = body.find("generation"); g != body.end() && g->is_number_integer()) {
        outcome.generation = g->get<int>();
    }
    return outcome;
}

std::string joined(const std::set<pid_t> &pids)
{
    std::string out;
    for (const pid_t pid : pids) {
        out += (out.empty() ? "" : " ") + std::to_string(pid);
    }
    return out;
}

} // namespace

double LoadReport::requestsPerSecond() const
{
    return elapsed.count() > 0 ? static_cast<double>(requests) / elapsed.count() : 0.0;
}

// Calls f with every ok outcome recorded after mark.
template <typename F>
void LoadReport::forEachOkAfter(const LoadMark &mark, F f) const
{
    for (std::size_t c = 0; c < outcomes.size(); ++c) {
        const std::size_t from = c < mark.outcomes.size() ? mark.outcomes[c] : 0;
        for (std::size_t i = from; i < outcomes[c].size(); ++i) {
            if (outcomes[c][i].kind == LoadOutcome::Kind::Ok) {
                f(outcomes[c][i]);
            }
        }
    }
}

std::set<pid_t> LoadReport::pidsAfter(const LoadMark &mark) const
{
    std::set<pid_t> out;
    forEachOkAfter(mark, [&](const LoadOutcome &o) { out.insert(o.pid); });
    return out;
}

std::set<std::optional<int>> LoadReport::generationsAfter(const LoadMark &mark) const
{
    std::set<std::optional<int>> out;
    forEachOkAfter(mark, [&](const LoadOutcome &o) { out.insert(o.generation); });
    return out;
}

std::string LoadReport::summary() const
{
    std::ostringstream out;
    out << requests << " requests in " << elapsed.count() << " s (" << static_cast<long>(requestsPerSecond())
        << "/s): " << ok << " ok, " << refused << " refused, " << failed << " failed; pids: " << joined(pids)
        << "\n";
    for (const auto &f : failures) {
        out << "  " << f << "\n";
    }
    return out.str();
}

LoadClients::LoadClients() : LoadClients(Options{})
{}

LoadClients::LoadClients(Options options) : options_(options)
{
    std::filesystem::create_directory(dir_ / "results");
}

LoadClients::~LoadClients()
{
    for (auto &p : processes_) {
        if (p.pid > 0) {
            kill(-p.pid, SIGKILL);
            waitpid(p.pid, nullptr, 0);
        }
    }
}

void LoadClients::spawn(const std::vector<std::string> &argv)
{
    const std::size_t index = processes_.size();
    Process process;
    process.out = (dir_ / ("process-" + std::to_string(index) + ".out")).string();
    process.err = (dir_ / ("process-" + std::to_string(index) + ".err")).string();
    std::vector<std::string> args{kSetpriv, "--pdeathsig", "KILL", "--"};
    args.insert(args.end(), argv.begin(), argv.end());
    std::vector<char *> argp = pointersTo(args);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, process.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, process.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // Its own process group, so killing it also kills the curl it runs.
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    const int rc = posix_spawn(&process.pid, argp[0], &actions, &attr, argp.data(), environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
        throw std::system_error(rc, std::generic_category(), "posix_spawn " + args.at(4));
    }
    process.pidfd = UniqueFd(static_cast<int>(syscall(SYS_pidfd_open, process.pid, 0)));
    const int error = errno;
    processes_.push_back(std::move(process));
    if (!processes_.back().pidfd) {
        throw std::system_error(error, std::generic_category(), "pidfd_open");
    }
}

void LoadClients::start(int port, int clients, Tool tool)
{
    if (!processes_.empty()) {
        throw std::logic_error("LoadClients::start: already started");
    }
    if (clients < 1) {
        throw std::invalid_argument("LoadClients::start: at least one client");
    }
    requireExecutable(kSetpriv, "util-linux");
    tool_ = tool;
    const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/";
    const std::string limit = std::to_string(options_.limit.count());
    const std::string timeout = std::to_string(options_.requestTimeout.count());
    inotify_ = UniqueFd(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    if (!inotify_ || inotify_add_watch(inotify_.get(), (dir_ / "results").c_str(), IN_MODIFY) < 0) {
        throw std::system_error(errno, std::generic_category(), "inotify");
    }
    started_ = std::chrono::steady_clock::now();
    if (tool == Tool::Curl) {
        requireExecutable(kBash, "bash");
        requireExecutable(kCurl, "curl");
        const auto script = dir_ / "curl-loop.sh";
        writeFile(script, kCurlLoop);
        for (int c = 0; c < clients; ++c) {
            const std::string name = "curl-" + std::to_string(c);
            const std::string results = (dir_ / "results" / name).string();
            writeFile(results, "");
            results_.push_back(Results{results, name, 0, {}, {}});
            spawn({kBash, script.string(), url, (dir_ / "stop").string(), results, (dir_ / name).string(),
                   timeout, limit, kCurl});
        }
        return;
    }
    requireExecutable(kWrk, "wrk");
    const std::string results = (dir_ / "results" / "wrk").string();
    writeFile(results, "");
    results_.push_back(Results{results, "wrk", 0, {}, {}});
    const auto script = dir_ / "wrk.lua";
    writeFile(script, wrkScript(results, options_.wrkDelay.count()));
    spawn({kWrk, "-t1", "-c", std::to_string(clients), "-d", limit + "s", "--timeout", timeout + "s", "-H",
           "Connection: close", "--latency", "-s", script.string(), url});
}

void LoadClients::collect()
{
    for (auto &r : results_) {
        std::ifstream in(r.path, std::ios::binary);
        in.seekg(static_cast<std::streamoff>(r.offset));
        std::array<char, 65536> buffer{};
        while (in.read(buffer.data(), buffer.size()) || in.gcount() > 0) {
            const auto n = static_cast<std::size_t>(in.gcount());
            r.offset += n;
            r.partial.append(buffer.data(), n);
        }
        std::size_t begin = 0;
        for (std::size_t end = r.partial.find('\n'); end != std::string::npos;
             end = r.partial.find('\n', begin)) {
            std::string why;
            r.outcomes.push_back(parseLine(r.partial.substr(begin, end - begin), why));
            if (r.outcomes.back().kind != LoadOutcome::Kind::Ok) {
                if (failures_.size() < kFailureSamples) {
                    failures_.push_back(r.name + " request " + std::to_string(r.outcomes.size()) + ": " +
                                        why);
                }
            }
            begin = end + 1;
        }
        r.partial.erase(0, begin);
    }
}

std::size_t LoadClients::countSince(const LoadMark &since) const
{
    std::size_t count = 0;
    for (std::size_t c = 0; c < results_.size(); ++c) {
        const std::size_t from = c < since.outcomes.size() ? since.outcomes[c] : 0;
        count += results_[c].outcomes.size() - std::min(from, results_[c].outcomes.size());
    }
    return count;
}

LoadMark LoadClients::mark()
{
    collect();
    LoadMark mark;
    for (const auto &r : results_) {
        mark.outcomes.push_back(r.outcomes.size());
    }
    return mark;
}

bool LoadClients::reapExited()
{
    bool running = false;
    for (auto &p : processes_) {
        if (p.pid > 0 && waitpid(p.pid, nullptr, WNOHANG) == p.pid) {
            p.pid = -1;
            p.pidfd.reset();
        }
        running = running || p.pid > 0;
    }
    return running;
}

// Woken by inotify (a results file grew) or a pidfd (a client exited), never
// by a timer: the deadline only bounds the wait.
bool LoadClients::waitForRequests(std::size_t n, std::chrono::milliseconds deadline, const LoadMark &since)
{
    const auto until = std::chrono::steady_clock::now() + deadline;
    for (;;) {
        collect();
        if (countSince(since) >= n) {
            return true;
        }
        if (!reapExited()) {
            collect();
            return countSince(since) >= n;
        }
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            return false;
        }
        std::vector<pollfd> pfds{pollfd{inotify_.get(), POLLIN, 0}};
        for (const auto &p : processes_) {
            if (p.pid > 0) {
                pfds.push_back(pollfd{p.pidfd.get(), POLLIN, 0});
            }
        }
        (void)poll(pfds.data(), pfds.size(), static_cast<int>(left.count()));
        std::array<char, 4096> events{};
        while (read(inotify_.get(), events.data(), events.size()) > 0) {
        }
    }
}

void LoadClients::waitAll(std::chrono::milliseconds deadline)
{
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (reapExited()) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            break;
        }
        std::vector<pollfd> pfds;
        for (const auto &p : processes_) {
            if (p.pid > 0) {
                pfds.push_back(pollfd{p.pidfd.get(), POLLIN, 0});
            }
        }
        (void)poll(pfds.data(), pfds.size(), static_cast<int>(left.count()));
    }
    for (auto &p : processes_) {
        if (p.pid > 0) {
            kill(-p.pid, SIGKILL);
            waitpid(p.pid, nullptr, 0);
            p.pid = -1;
            p.pidfd.reset();
            ++killed_;
            failures_.insert(failures_.begin(), "a client did not stop in time and was killed");
        }
    }
}

// wrk's socket errors never reach its script: they come from its totals line.
void LoadClients::addWrkTotals(LoadReport &report) const
{
    std::string out;
    std::string err;
    try {
        out = readFile(processes_.at(0).out);
        err = readFile(processes_.at(0).err);
    } catch (const std::exception &) {
    }
    const auto at = out.find("fdsup-load requests ");
    std::istringstream in(at == std::string::npos ? "" : out.substr(at));
    std::string word;
    std::size_t requests = 0;
    std::size_t connect = 0;
    std::size_t read = 0;
    std::size_t write = 0;
    std::size_t timeout = 0;
    std::size_t status = 0;
    in >> word >> word >> requests >> word >> connect >> word >> read >> word >> write >> word >> timeout >>
        word >> status;
    if (in.fail()) {
        // wrk probes the address once before it starts and exits 1 if that fails.
        ++(err.find("Connection refused") != std::string::npos ? report.refused : report.failed);
        report.failures.insert(report.failures.begin(), "wrk printed no totals: " + out + err);
        return;
    }
    std::size_t answers = 0;
    for (const auto &o : report.outcomes) {
        answers += o.size();
    }
    report.refused += connect;
    report.failed += read + write + timeout;
    const std::string totals = "wrk totals: " + std::to_string(requests) +
                               " answers, socket errors connect " + std::to_string(connect) + ", read " +
                               std::to_string(read) + ", write " + std::to_string(write) + ", timeout " +
                               std::to_string(timeout) + ", non-2xx " + std::to_string(status);
    if (connect + read + write + timeout > 0) {
        report.failures.insert(report.failures.begin(), totals);
    }
    // The script saw every answer wrk counted; a difference is a bug here, not load to ignore.
    if (requests != answers) {
        ++report.failed;
        report.failures.insert(report.failures.begin(),
                               totals + ", but " + std::to_string(answers) + " recorded by its script");
    }
}

LoadReport LoadClients::stop(std::chrono::milliseconds deadline)
{
    LoadReport report;
    if (processes_.empty()) {
        return report;
    }
    const auto stopping = std::chrono::steady_clock::now();
    if (tool_ == Tool::Curl) {
        writeFile(dir_ / "stop", "");
    } else if (processes_.front().pid > 0) {
        kill(processes_.front().pid, SIGINT);
    }
    waitAll(deadline);
    collect();
    report.elapsed = stopping - started_;
    for (const auto &r : results_) {
        for (const auto &o : r.outcomes) {
            switch (o.kind) {
            case LoadOutcome::Kind::Ok:
                ++report.ok;
                report.pids.insert(o.pid);
                report.generations.insert(o.generation);
                break;
            case LoadOutcome::Kind::Refused:
                ++report.refused;
                break;
            case LoadOutcome::Kind::Failed:
                ++report.failed;
                break;
            }
        }
        if (!r.partial.empty()) {
            ++report.failed;
            failures_.push_back(r.name + ": an unfinished result line: " + r.partial);
        }
        report.outcomes.push_back(r.outcomes);
    }
    report.failed += killed_;
    report.failures = failures_;
    if (tool_ == Tool::Wrk) {
        addWrkTotals(report);
    }
    report.failures.resize(std::min(report.failures.size(), kFailureSamples));
    report.requests = report.ok + report.refused + report.failed;
    return report;
}

} // namespace fdsup::test
