// LoadClients: continuous HTTP load from real client processes (curl, wrk) while a test acts.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <sys/types.h>

#include "core/fd.hpp"
#include "test_support.hpp"

namespace fdsup::test {

// One request's outcome, in the order a client made them.
struct LoadOutcome {
    enum class Kind { Ok, Refused, Failed };
    Kind kind = Kind::Failed;
    pid_t pid = 0;                 // Ok: the "pid" of the JSON answer
    std::optional<int> generation; // Ok: its "generation" (nullopt for null)
};

// How many outcomes each client had recorded at a moment (LoadClients::mark()).
struct LoadMark {
    std::vector<std::size_t> outcomes;
};

// What the clients saw. requests == ok + refused + failed.
struct LoadReport {
    std::size_t requests = 0;
    std::size_t ok = 0;      // a 2xx answer whose body is the test worker's JSON
    std::size_t refused = 0; // the connection was refused
    std::size_t failed = 0;  // every other failure (reset, empty reply, timeout, non-2xx, bad body)
    // The first 10 failures (refused included), one line each, naming the client.
    std::vector<std::string> failures;
    std::set<pid_t> pids;                     // every pid that answered
    std::set<std::optional<int>> generations; // every generation that answered
    std::chrono::duration<double> elapsed{};  // start() to stop()
    // Per client, every outcome in order (wrk: its answers; its socket errors are only counted).
    std::vector<std::vector<LoadOutcome>> outcomes;

    [[nodiscard]] double requestsPerSecond() const;
    // The pids and generations that answered after a mark, e.g. once a restart finished.
    [[nodiscard]] std::set<pid_t> pidsAfter(const LoadMark &mark) const;
    [[nodiscard]] std::set<std::optional<int>> generationsAfter(const LoadMark &mark) const;
    // One paragraph for assertion messages: the counts, the pids and the failure samples.
    [[nodiscard]] std::string summary() const;

private:
    template <typename F>
    void forEachOkAfter(const LoadMark &mark, F f) const;
};

// Drives http://127.0.0.1:PORT/ with real client processes, each opening a new
// connection per request, from start() until stop(); everything lives in a
// temporary directory. The destructor kills (SIGKILL, whole process group) and
// reaps every client still running, so a failed test leaves no process behind.
//
//   Tool::Curl: each client is a bash loop running curl once per request and
//     appending one line per outcome to its results file. curl's exit code
//     decides: 0 with a 2xx and the worker's JSON is ok, 7 (could not connect:
//     on loopback, refused) is refused, anything else (52 empty reply, 56
//     reset, 28 timeout, 18 short body...) is failed, with curl's message.
//   Tool::Wrk: one wrk process (one thread, `clients` connections, header
//     Connection: close) whose Lua script appends one line per answer; at
//     stop() it gets SIGINT and prints its totals. Its connect errors are
//     refused; read, write and timeout errors and non-2xx answers are failed.
//     wrk probes the address once before it starts and exits if that fails:
//     one refusal (or failure), no totals.
//     wrk does not retry a connection whose connect() failed, so each refusal
//     also takes one connection out of the load; socket errors carry no sample
//     beyond their counts. Each connection pauses Options::wrkDelay before
//     each request (once connected, as a slow client does).
//
// Both bound themselves (Options::limit) and are spawned with a parent-death
// signal, so nothing outlives even a test process that was killed.
class LoadClients {
public:
    enum class Tool { Curl, Wrk };
    struct Options {
        std::chrono::seconds requestTimeout{5}; // curl --max-time, wrk --timeout
        std::chrono::seconds limit{120};        // the longest the clients run, whatever happens
        // wrk's pause before each request: the load stays continuous, but at
        // most clients / wrkDelay requests a second. Unbounded, wrk answered
        // more than the test process could read (a JSON parse per answer,
        // ~0.1 ms under ASan) on a busy machine: the backlog grew with every
        // mark() until the limit ended wrk mid-test. (curl needs no pause: a
        // process per request is slower than reading its answer.)
        std::chrono::milliseconds wrkDelay{5};
    };

    LoadClients();
    explicit LoadClients(Options options);
    ~LoadClients();
    LoadClients(const LoadClients &) = delete;
    LoadClients &operator=(const LoadClients &) = delete;

    // Starts the clients; throws if a tool is missing or cannot be spawned.
    void start(int port, int clients, Tool tool);
    // The outcomes recorded so far, per client.
    LoadMark mark();
    // Waits until at least n outcomes (wrk: answers) were recorded after since;
    // false at the deadline or once every client has exited.
    bool waitForRequests(std::size_t n, std::chrono::milliseconds deadline, const LoadMark &since = {});
    // Asks the clients to finish (curl: after the request in flight; wrk:
    // SIGINT), waits for them (SIGKILL past the deadline) and reports.
    LoadReport stop(std::chrono::milliseconds deadline = std::chrono::seconds(30));

private:
    // A spawned client process, leader of its own process group.
    struct Process {
        pid_t pid = -1; // -1 once reaped
        UniqueFd pidfd;
        std::string out; // its stdout file
        std::string err; // its stderr file
    };
    // A results file, read incrementally: one line per outcome.
    struct Results {
        std::string path;
        std::string name; // "curl 2", "wrk"
        std::size_t offset = 0;
        std::string partial; // a line not yet complete
        std::vector<LoadOutcome> outcomes;
    };

    void spawn(const std::vector<std::string> &argv);
    void collect();
    [[nodiscard]] std::size_t countSince(const LoadMark &since) const;
    bool reapExited();
    void waitAll(std::chrono::milliseconds deadline);
    void addWrkTotals(LoadReport &report) const;

    Options options_;
    TempDir dir_;
    Tool tool_ = Tool::Curl;
    std::vector<Process> processes_;
    std::vector<Results> results_;
    std::vector<std::string> failures_; // the first samples, in the order they were read
    std::size_t killed_ = 0;            // clients that did not stop in time
    UniqueFd inotify_;
    std::chrono::steady_clock::time_point started_;
};

} // namespace fdsup::test
