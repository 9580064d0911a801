// Orphaned workers: a dead predecessor's workers found on our listeners, judged, watched and replaced.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "config/config.hpp"
#include "core/fd.hpp"
#include "io/clock.hpp"
#include "io/event_loop.hpp"

namespace fdsup {

// The variable that names the fdsupd a worker belongs to (its control
// socket path), so that a second, unrelated fdsupd's workers are never
// mistaken for ours.
inline constexpr const char *kSupervisorVariable = "FDSUP_SUPERVISOR";

// A process found holding one of our listeners, as /proc shows it.
struct HolderInfo {
    pid_t pid = 0;
    std::string command;
    // Its starting environment; nullopt with `environmentError` when unreadable.
    std::optional<std::vector<std::string>> environment;
    std::string environmentError;
};

// Whose worker a holder is (`service`), or why fdsupd will not take it
// over (`refusal`, a sentence ending the log line): exactly one is set.
struct HolderVerdict {
    std::string service;
    std::string refusal;
};

// Pure: a holder is an orphan of our predecessor when its environment has
// FDSUP_SERVICE naming one of `services` and FDSUP_SUPERVISOR equal to
// `supervisor` (our control socket). Whether that predecessor is still
// alive is asked of the control socket, not here.
HolderVerdict judgeHolder(const HolderInfo &holder, const std::vector<std::string> &services,
                          const std::string &supervisor);

// The orphaned workers of one service: processes a dead fdsupd started,
// still serving on the listeners this fdsupd took over. They are not our
// children: each is watched through a pidfd (readable when it exits, never
// waited for). retire() sends the service's stop signal (to each process
// group with kill_mode = "process-group", else to each process) and
// SIGKILL at stop_timeout; they stay listed until their pidfds say they
// exited. `changed` is called when one is gone (not from retire()).
class OrphanedWorkers {
public:
    struct Orphan {
        pid_t pid = 0;
        pid_t pgid = 0;
        std::string command;
        UniqueFd pidfd;
        EventSource watch;
    };

    OrphanedWorkers(EventLoop &loop, Clock &clock, std::string service, std::function<void()> changed);
    OrphanedWorkers(const OrphanedWorkers &) = delete;
    OrphanedWorkers &operator=(const OrphanedWorkers &) = delete;

    // Starts watching pid (gone already: ignored, false).
    bool add(pid_t pid, pid_t pgid, std::string command);
    // Stop signal now, SIGKILL at stop_timeout; once (later calls do nothing).
    void retire(const config::ServiceConfig &config, const std::string &why);

    [[nodiscard]] const std::vector<Orphan> &orphans() const { return orphans_; }
    [[nodiscard]] bool empty() const { return orphans_.empty(); }
    [[nodiscard]] bool retiring() const { return retiring_; }
    // CLOCK_MONOTONIC when retire() was called.
    [[nodiscard]] Duration retiredAt() const { return retiredAt_; }
    [[nodiscard]] int stopSignal() const { return stopSignal_; }

private:
    void exited(pid_t pid);
    void signalAll(int sig, bool groups);

    EventLoop &loop_;
    Clock &clock_;
    std::string service_;
    std::function<void()> changed_;
    std::vector<Orphan> orphans_;
    Timer kill_;
    bool retiring_ = false;
    Duration retiredAt_{};
    int stopSignal_ = 0;
    config::KillMode killMode_ = config::KillMode::ProcessGroup;
};

} // namespace fdsup
