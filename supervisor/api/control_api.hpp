// The control API: the io.fdsup.Manager methods (control_methods.hpp) and what answers them
// (docs/control-api.md).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/access.hpp"
#include "api/control_methods.hpp"
#include "api/control_server.hpp"
#include "api/event_stream.hpp"
#include "config/config.hpp"
#include "daemon/daemon.hpp"
#include "io/event_loop.hpp"
#include "io/reexec_preflight.hpp"

namespace fdsup {

// Serves the control socket for a daemon: every call is decoded once by the
// table (InvalidParameter names the parameter), its service looked up
// (NoSuchService), then handled; long calls (start, stop, scale, restart
// with wait, cancel, reload, logs with follow) are answered when the
// daemon's events say they are done. A client that hangs up cancels nothing.
class ControlApi final : public DaemonObserver {
public:
    static Result<std::unique_ptr<ControlApi>> create(EventLoop &loop, Daemon &daemon);
    ~ControlApi();

    // The io.fdsup.Manager methods; the unit tests check it against the
    // published interface description.
    static const std::vector<MethodSpec> &methods();

    // Re-exec (control_reexec.cpp). The API of the new image: serves the
    // control socket the old one listened on and takes the Reexec call that
    // was waiting; answerReexec() answers it once the restore is complete
    // (or, when the new binary rejected the state and this is the old one
    // re-entered, fails it with `rejected`).
    static Result<std::unique_ptr<ControlApi>> restore(EventLoop &loop, Daemon &daemon, ReexecState &state);
    void answerReexec(const std::optional<std::string> &rejected);
    // A `Logs --follow` of the previous image, followed on.
    void resumeFollower(UniqueFd fd, const std::string &service);
    // SIGUSR2 (and Reexec): re-execs the binary fdsupd was started from.
    void requestReexec(const std::shared_ptr<PendingCall> &call, const std::optional<std::string> &binary,
                       Duration timeout);

private:
    explicit ControlApi(Daemon &daemon)
        : daemon_(daemon), access_(resolveAccessPolicy(daemon.config().supervisor))
    {}
    [[nodiscard]] ControlOptions optionsFor(const config::SupervisorConfig &supervisor) const;
    static bool refusedWhileReexecuting(std::string_view method);
    Result<void> watchSigusr2(EventLoop &loop);
    // A pending re-exec: checked, then waiting for quiet, then exec.
    struct ReexecOperation {
        std::shared_ptr<PendingCall> call; // null: SIGUSR2
        std::string binaryPath;
        UniqueFd binary; // what is checked is what is exec'd
        std::unique_ptr<ReexecPreflight> preflight;
        std::string version; // the new binary's, from the check
        bool checked = false;
        Timer deadline;
        Timer recheck;
        EventSource defer;
        std::string busy; // what it waits for (logged when it changes)
    };
    void reexecChecked(Result<PreflightAnswer> answer);
    void reexecProgress();
    void reexecFail(const std::string &reason);
    void reexecNow();
    void dispatch(const std::shared_ptr<PendingCall> &call);
    // Per-command access (docs/access.md): false when the call was refused
    // (and answered with PermissionDenied).
    bool allowed(const std::shared_ptr<PendingCall> &call, const MethodSpec &spec, const CallParams &params);

    void callStatus(const std::shared_ptr<PendingCall> &call, const CallParams &params, Service *service);
    void callSockets(const std::shared_ptr<PendingCall> &call, const CallParams &params, Service *service);
    void callConnections(const std::shared_ptr<PendingCall> &call, const CallParams &params,
                         Service *service);
    void callStart(const std::shared_ptr<PendingCall> &call, const CallParams &params, Service *service);
    void callStop(const std::shared_ptr<PendingCall> &call, const CallParams &params, Service *service);
    void callRestart(const std::shared_ptr<PendingCall> &call, const CallParams &params, Service *service);
    void callRolloutStatus(const std::shared_ptr<PendingCall> &call, const CallParams &params,
                           Service *service);
    void callRolloutCancel(const std::shared_ptr<PendingCall> &call, const CallParams &params,
                           Service *service);
    void callScale(const std::shared_ptr<PendingCall> &call, const CallParams &params, Service *service);
    void callReload(const std::shared_ptr<PendingCall> &call, const CallParams &params, Service *service);
    void callLogs(const std::shared_ptr<PendingCall> &call, const CallParams &params, Service *service);
    void callEvents(const std::shared_ptr<PendingCall> &call, const CallParams &params, Service *service);
    // Transfer (transfer_api.cpp, docs/transfer.md).
    void callExport(const std::shared_ptr<PendingCall> &call, const CallParams &params, Service *service);
    void callImport(const std::shared_ptr<PendingCall> &call, const CallParams &params, Service *service);
    void callRelease(const std::shared_ptr<PendingCall> &call, const CallParams &params, Service *service);
    // Answers the Imports whose started services are all running (or one failed).
    void checkImports();
    void callReexec(const std::shared_ptr<PendingCall> &call, const CallParams &params, Service *service);

    // DaemonObserver
    void serviceChanged(Service &service) override;
    void rolloutEvent(Service &service, const Rollout &rollout, const std::string &event) override;
    void rolloutFinished(Service &service, const RolloutRecord &record) override;
    void queuedBegan(Service &service, std::uint64_t ticket, std::uint64_t id) override;
    void queuedEnded(Service &service, std::uint64_t ticket, const Error &why) override;
    void outputLine(Service &service, const LogLine &line) override;
    void accessChanged(const config::SupervisorConfig &supervisor) override;
    void serviceRemoved(const std::string &name) override;
    void shutdownBegun() override;
    void shutdownDone() override;
    void instanceEvent(Service &service, const InstanceEvent &event) override;
    void reloadBegun(const std::string &file) override;
    void reloadFinished(const ReloadOutcome &outcome) override;

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
    // A Restart with wait, queued behind another rollout: it becomes a
    // RolloutWaiter when its rollout begins.
    struct QueuedWaiter {
        std::shared_ptr<PendingCall> call;
        std::string service;
        std::uint64_t ticket = 0;
        RolloutOptions options;
        bool progress = false;
    };
    // Logs with follow: each new line of the service is sent as it comes.
    struct Follower {
        std::shared_ptr<PendingCall> call;
        std::string service;
    };

    // An Import answered once the services it started are running, so the
    // source lets go only when the target serves (transfer_api.cpp).
    struct ImportWaiter {
        std::shared_ptr<PendingCall> call;
        std::vector<std::string> sockets;
        std::vector<std::string> services;
        std::size_t connections = 0;
        std::vector<std::string> refusedConnections;
    };

    Daemon &daemon_;
    AccessPolicy access_; // the configuration's, replaced on reload
    std::unique_ptr<ControlServer> server_;
    std::vector<ImportWaiter> importWaiters_;
    std::vector<Waiter> waiters_;
    std::vector<RolloutWaiter> rolloutWaiters_;
    std::vector<QueuedWaiter> queuedWaiters_;
    std::vector<Follower> followers_;
    EventStream events_; // Events: who follows them
    EventLoop *loop_ = nullptr;
    EventSource sigusr2_;
    std::unique_ptr<ReexecOperation> reexec_; // while one is pending
    std::shared_ptr<PendingCall> resumed_;    // the new image's Reexec call, until answered
};

} // namespace fdsup
