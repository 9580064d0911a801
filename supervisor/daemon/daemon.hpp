// The daemon: holds the sockets, runs the services, answers the control API, handles signals.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "api/control_server.hpp"
#include "config/config.hpp"
#include "io/event_loop.hpp"
#include "io/manager_notify.hpp"
#include "io/sockets.hpp"
#include "model/service.hpp"

namespace fdsup {

// allow_users/allow_groups (checked at load) resolved to ids.
void resolveControlAccess(const config::SupervisorConfig &supervisor, ControlOptions &options);

class Daemon {
public:
    // Binds (or adopts) every socket, then prepares every service and the
    // control socket; nothing is started yet. On error nothing is left
    // bound or running, and the error names what failed.
    static Result<std::unique_ptr<Daemon>> create(EventLoop &loop, config::Config config,
                                                  InheritedFds inherited);
    ~Daemon();
    Daemon(const Daemon &) = delete;
    Daemon &operator=(const Daemon &) = delete;

    // Starts every service, tells our own manager READY=1, and runs the loop
    // until SIGTERM/SIGINT have stopped everything. Returns the exit code.
    int run();

    // Reads the configuration file again and applies the difference
    // (docs/reload.md). Answers `call` when every change is done; null for
    // SIGHUP, whose outcome is only logged.
    void reload(const std::shared_ptr<PendingCall> &call);

private:
    explicit Daemon(EventLoop &loop, config::Config config);

    void onControlCall(const std::shared_ptr<PendingCall> &call);
    void onServiceChanged(Service &service);
    void onRollout(Service &service, std::uint64_t id, const std::function<nlohmann::json()> &record,
                   const std::string &event, bool finished);
    void onOutputLine(Service &service, const LogEntry &entry);
    void watch(Service &service);

    // The rollout methods (Restart, RolloutStatus, RolloutCancel), Scale and Logs.
    void callRestart(const std::shared_ptr<PendingCall> &call, Service &service);
    void callRolloutCancel(const std::shared_ptr<PendingCall> &call, Service &service);
    void callScale(const std::shared_ptr<PendingCall> &call, Service &service);
    void callLogs(const std::shared_ptr<PendingCall> &call, Service &service);

    struct QueuedRestart {
        std::shared_ptr<PendingCall> call; // null once answered (not waiting)
        std::string service;
        RolloutOptions options;
        bool wait = false;
    };
    void startRestart(Service &service, const std::shared_ptr<PendingCall> &call,
                      const RolloutOptions &options, bool wait);
    void startQueued(Service &service);
    [[nodiscard]] std::size_t queuedFor(const std::string &service) const;

    struct ReloadChange {
        enum class Status : std::uint8_t { Pending, Done, Failed };
        std::string kind; // supervisor, socket, service
        std::string name;
        std::string action; // added, removed, changed, restarted, scaled
        Status status = Status::Done;
        std::string reason;
        std::uint64_t rollout = 0; // restarted: 0 until it begins
    };
    struct ReloadOperation {
        std::shared_ptr<PendingCall> call;
        std::string file;
        std::vector<ReloadChange> changes;
        // Services rolled out, with the configuration they ran before: kept
        // when their rollout fails, so the running config says what runs.
        std::map<std::string, config::ServiceConfig> previous;
        bool committing = true;
    };
    void refuseReload(const std::shared_ptr<PendingCall> &call, const std::string &file,
                      const std::vector<std::string> &reasons);
    void checkReload();
    void onReloadRollout(Service &service, const nlohmann::json &rollout);
    void reapServices();
    void closeUnusedSockets();
    void beginShutdown(const char *why);
    void checkShutdown();
    void updateStatus();
    Service *findService(std::string_view name);
    nlohmann::json socketsJson() const;

    // A call answered when its service reaches a state.
    struct Waiter {
        enum class Goal : std::uint8_t { Running, Stopped, Settled };
        std::shared_ptr<PendingCall> call;
        std::string service;
        Goal goal = Goal::Running;
    };
    // A call answered when a rollout finishes (Restart with wait, RolloutCancel).
    struct RolloutWaiter {
        std::shared_ptr<PendingCall> call;
        std::string service;
        std::uint64_t rollout = 0; // 0: the next rollout of the service to begin
        bool progress = false;     // send every event (a `more` call)
        bool cancel = false;       // RolloutCancel: the result is a success either way
    };

    EventLoop &loop_;
    config::Config config_;
    SocketSet sockets_;
    std::unique_ptr<ServiceContext> context_;
    std::vector<std::unique_ptr<Service>> services_;
    std::unique_ptr<ControlServer> control_;
    std::vector<Waiter> waiters_;
    std::vector<RolloutWaiter> rolloutWaiters_;
    std::vector<QueuedRestart> queue_;
    // Logs with follow: each new line of the service is sent as it comes.
    std::vector<std::pair<std::shared_ptr<PendingCall>, std::string>> followers_;
    std::vector<EventSource> signals_;
    std::unique_ptr<ReloadOperation> reload_;
    std::vector<std::string> removing_;        // services a reload removed, stopping
    std::vector<std::string> retiringSockets_; // closed once no instance uses them
    EventSource reaper_;
    EventSource watchdog_;
    ManagerNotifier manager_;
    bool shuttingDown_ = false;
    bool notifiedReady_ = false;
};

} // namespace fdsup
