// A daemonising server's pid file: waiting for it, and checking the pid it names is the instance's daemon.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <sys/types.h>

#include "common/result.hpp"
#include "core/fd.hpp"
#include "io/clock.hpp"
#include "io/event_loop.hpp"

namespace fdsup {

// Reads `path` and checks the pid it names (systemd's Type=forking rules,
// with fdsupd a child subreaper): a number above 1, a live process, a child
// of fdsupd (its parents exited, so it was reparented to fdsupd) and, when its
// starting environment can be read and names a service, that of `service`
// instance `slot`. ENOENT while the file does not exist (yet) or is empty;
// EAGAIN while it names the daemon of another generation of the same slot
// (the file the previous generation's daemon wrote, not rewritten yet).
// The pid a pid file's text names (its first line, trailing spaces and '\r'
// ignored): ENOENT when empty (created, not written yet), EINVAL when it is
// not a decimal above 1 that fits a pid_t; the error names `path`. Pure (fuzz target `pid-file`).
Result<pid_t> parsePidFile(std::string_view text, const std::string &path);

Result<pid_t> readDaemonPid(const std::string &path, const std::string &service, unsigned slot,
                            unsigned generation);

// Waits for the pid file: reads it at once and again whenever a file is
// written or moved into its directory (inotify), until readDaemonPid()
// succeeds or fails with anything but ENOENT or EAGAIN, or `deadline` passes
// (ETIMEDOUT). The callback runs once; destroying the watch cancels it.
class PidFileWatch {
public:
    using Done = std::function<void(Result<pid_t>)>;
    static std::unique_ptr<PidFileWatch> start(EventLoop &loop, Clock &clock, std::string path,
                                               std::string service, unsigned slot, unsigned generation,
                                               Duration deadline, Done done);
    PidFileWatch(const PidFileWatch &) = delete;
    PidFileWatch &operator=(const PidFileWatch &) = delete;

private:
    PidFileWatch(std::string path, std::string service, unsigned slot, unsigned generation, Done done)
        : path_(std::move(path)), service_(std::move(service)), slot_(slot), generation_(generation),
          done_(std::move(done))
    {}
    // True when finished (done_ was called).
    bool attempt();
    void finish(Result<pid_t> result);

    std::string path_;
    std::string service_;
    unsigned slot_;
    unsigned generation_;
    Done done_;
    UniqueFd inotify_;
    EventSource io_;
    Timer deadline_;
    EventSource first_;
};

} // namespace fdsup
