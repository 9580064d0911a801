// A service and its worker instances: spawning, readiness, deadlines, restarts, stopping.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "event_loop.hpp"
#include "fdsup/config.hpp"
#include "fdsup/fd.hpp"
#include "notify.hpp"
#include "sockets.hpp"
#include "spawn.hpp"

namespace fdsup {

// Each state but the final ones has a deadline: Starting (start_timeout until
// exec, then ready_timeout until ready), Ready (watchdog_timeout, when set),
// Stopping (stop_timeout, then SIGKILL).
enum class InstanceState : std::uint8_t { Starting, Ready, Stopping, Exited, Failed };
enum class ServiceState : std::uint8_t { Starting, Running, Stopping, Stopped, Failed };

const char *instanceStateName(InstanceState state);
const char *serviceStateName(ServiceState state);

// What the service needs from the daemon around it.
struct ServiceContext {
    EventLoop &loop;
    const SocketSet &sockets;
    // A prefix unique to this fdsupd, for the services' abstract notify sockets.
    std::string notifyPrefix;
    // RLIMIT_NOFILE as fdsupd found it, before raising its own: what workers
    // get unless their [limits] say otherwise (select() breaks above 1024).
    config::ResourceLimit originalNofile;
};

class Service;

// One worker process. Owned by its Service; every event source it holds dies
// with it, so no callback can reach a reaped instance.
class Instance {
public:
    Instance(Service &service, unsigned slot, unsigned generation);
    ~Instance();
    Instance(const Instance &) = delete;
    Instance &operator=(const Instance &) = delete;

    [[nodiscard]] pid_t pid() const { return pid_; }
    [[nodiscard]] InstanceState state() const { return state_; }
    [[nodiscard]] unsigned slot() const { return slot_; }
    [[nodiscard]] unsigned generation() const { return generation_; }
    [[nodiscard]] nlohmann::json toJson(Duration now) const;

private:
    friend class Service;

    Service &service_;
    unsigned slot_;
    unsigned generation_;
    pid_t pid_ = 0;
    UniqueFd pidfd_;
    InstanceState state_ = InstanceState::Starting;
    Duration since_{};     // when state_ was entered
    Duration startedAt_{}; // when spawned
    Duration readyAt_{};
    bool execDone_ = false;
    bool failed_ = false;               // a deadline or the watchdog fired: the exit counts as a failure
    bool stopRequested_ = false;        // fdsupd asked it to stop: the exit is expected
    std::string error_;                 // why it failed, when fdsupd knows better than the exit status
    std::optional<std::string> status_; // STATUS=
    std::optional<int> errno_;          // ERRNO=
    Duration watchdogTimeout_{};

    UniqueFd stdout_;
    UniqueFd stderr_;
    UniqueFd statusPipe_;
    LineSplitter stdoutLines_;
    LineSplitter stderrLines_;

    EventSource childSource_;
    EventSource stdoutSource_;
    EventSource stderrSource_;
    EventSource statusSource_;
    EventSource deadline_;
    EventSource watchdog_;
};

// A descriptor held in the service's store (FDSTORE=1), given to every
// instance started later, after its listeners.
struct StoredFd {
    std::string name;
    UniqueFd fd;
    EventSource poll; // FDPOLL: dropped when the fd reports EPOLLHUP/EPOLLERR
};

class Service {
public:
    using ChangeHandler = std::function<void(Service &)>;

    static Result<std::unique_ptr<Service>> create(ServiceContext &context,
                                                   const config::ServiceConfig &config);
    ~Service();
    Service(const Service &) = delete;
    Service &operator=(const Service &) = delete;

    [[nodiscard]] const std::string &name() const { return config_.name; }
    [[nodiscard]] const config::ServiceConfig &config() const { return config_; }
    [[nodiscard]] ServiceState state() const;
    [[nodiscard]] const std::string &failedReason() const { return failedReason_; }
    [[nodiscard]] const std::string &notifySocket() const { return notify_->socketPath(); }
    [[nodiscard]] std::size_t liveInstances() const { return instances_.size(); }
    [[nodiscard]] nlohmann::json toJson() const;

    // Brings every slot up (clearing a failed state and its counters).
    void start();
    // Stops every instance (stop signal, SIGKILL at stop_timeout) and keeps
    // the service down until start().
    void stop();
    // Called after every state change of the service or one of its instances.
    void setChangeHandler(ChangeHandler handler) { onChange_ = std::move(handler); }

    // The most recent lines the workers printed (newest last), for status.
    [[nodiscard]] const std::deque<std::string> &recentOutput() const { return output_; }

private:
    friend class Instance;

    struct Slot {
        unsigned generation = 0;
        unsigned restarts = 0;
        unsigned consecutiveFailures = 0;
        bool done = false;       // exited cleanly and the policy does not restart it
        bool lastFailed = false; // the last exit counted as a failure
        EventSource restartTimer;
        std::string lastExit;
        std::string lastError;
    };

    Service(ServiceContext &context, config::ServiceConfig config);

    void spawnInstance(unsigned slot);
    void onStatusPipe(Instance &instance);
    void onExecDone(Instance &instance);
    void onChildExit(Instance &instance, const siginfo_t &info);
    void onOutput(Instance &instance, bool isStderr);
    void drainOutput(Instance &instance);
    void onDeadline(Instance &instance);
    void onWatchdog(Instance &instance);
    void onNotify(NotifyMessage &&message);
    void becomeReady(Instance &instance);
    void setState(Instance &instance, InstanceState state);
    void armDeadline(Instance &instance, Duration after);
    void signalInstance(Instance &instance, int sig);
    void stopInstance(Instance &instance);
    void failInstance(Instance &instance, std::string reason);
    void scheduleRestart(unsigned slot, bool failure);
    void giveUp(std::string reason);
    void storeFds(NotifyMessage &message);
    void logLine(const Instance &instance, bool isStderr, std::string_view line);
    void changed();
    Instance *findByPid(pid_t pid);
    void remove(Instance &instance);

    ServiceContext &context_;
    config::ServiceConfig config_;
    std::unique_ptr<NotifyServer> notify_;
    std::vector<Slot> slots_;
    std::vector<std::unique_ptr<Instance>> instances_;
    std::vector<StoredFd> fdStore_;
    std::deque<Duration> restartTimes_; // automatic restarts within start_limit_interval
    std::deque<std::string> output_;
    std::vector<std::string> baseEnvironment_; // prepared once: pass_environment + environment + PATH
    Credentials credentials_;
    std::string executable_;
    bool active_ = false; // wanted up
    bool failed_ = false; // gave up restarting
    std::string failedReason_;
    unsigned restartsTotal_ = 0;
    ChangeHandler onChange_;
};

} // namespace fdsup
