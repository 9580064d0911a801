// The daemon: holds the sockets and runs the services, reloads, handles signals and its own manager.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "daemon/reexec_state.hpp"
#include "daemon/reload.hpp"
#include "io/event_loop.hpp"
#include "io/manager_notify.hpp"
#include "io/orphan_reaper.hpp"
#include "io/sockets.hpp"
#include "model/service.hpp"

namespace fdsup {

// What the daemon reports to whoever answers for it (the control API):
// everything its services report, and its own events.
class DaemonObserver : public ServiceObserver {
public:
    // A reload changed allow_users or allow_groups.
    virtual void accessChanged(const config::SupervisorConfig &supervisor) = 0;
    // A reload removed the service and it is gone.
    virtual void serviceRemoved(const std::string &name) = 0;
    // SIGTERM/SIGINT: every service is about to be stopped.
    virtual void shutdownBegun() = 0;
    // Every service stopped: the loop exits next.
    virtual void shutdownDone() = 0;

protected:
    ~DaemonObserver() = default;
};

class Daemon final : private ServiceObserver {
public:
    // Binds (or adopts) every socket, then prepares every service; nothing
    // is started yet. On error nothing is left bound or running, and the
    // error names what failed.
    static Result<std::unique_ptr<Daemon>> create(EventLoop &loop, config::Config config,
                                                  InheritedFds inherited);
    ~Daemon();
    Daemon(const Daemon &) = delete;
    Daemon &operator=(const Daemon &) = delete;

    void setObserver(DaemonObserver *observer) { observer_ = observer; }
    // Starts every service, tells our own manager READY=1, and runs the loop
    // until SIGTERM/SIGINT have stopped everything. Returns the exit code.
    int run();
    // Reads the configuration file again and applies the difference
    // (docs/reload.md): validate, plan, prepare (everything that can fail),
    // then apply. `done` (may be null: SIGHUP) gets the outcome once every
    // change is done.
    void reload(ReloadCallback done);
    // Stops every service and exits once they are down.
    void beginShutdown(const char *why);

    // Re-exec (daemon_snapshot.cpp): what blocks a re-exec now ("" when
    // nothing; `unsupported`: the state format cannot carry it, waiting will
    // not help), the daemon's part of the state, and the daemon of the new
    // image made from it (nothing bound, nothing spawned; on error every
    // descriptor of the state's sockets and services is closed).
    [[nodiscard]] std::string reexecBusy(bool &unsupported) const;
    void snapshot(ReexecState &state) const;
    static Result<std::unique_ptr<Daemon>> restore(EventLoop &loop, config::Config config,
                                                   ReexecState &state);

    [[nodiscard]] bool shuttingDown() const { return shuttingDown_; }
    [[nodiscard]] const config::Config &config() const { return config_; }
    [[nodiscard]] const SocketSet &sockets() const { return sockets_; }
    [[nodiscard]] const std::vector<std::unique_ptr<Service>> &services() const { return services_; }
    [[nodiscard]] Service *findService(std::string_view name) const;

private:
    Daemon(EventLoop &loop, config::Config config);

    // ServiceObserver: the daemon's own bookkeeping, then the observer.
    void serviceChanged(Service &service) override;
    void rolloutEvent(Service &service, const Rollout &rollout, const std::string &event) override;
    void rolloutFinished(Service &service, const RolloutRecord &record) override;
    void queuedBegan(Service &service, std::uint64_t ticket, std::uint64_t id) override;
    void queuedEnded(Service &service, std::uint64_t ticket, const Error &why) override;
    void outputLine(Service &service, const LogEntry &entry) override;

    // Reload steps (reload.cpp).
    void refuseReload(const ReloadCallback &done, const std::string &file, std::vector<std::string> reasons);
    [[nodiscard]] std::vector<std::string> prepareReload(const config::Config &next, const ReloadPlan &plan,
                                                         PreparedReload &prepared);
    void applyReload(config::Config next, const ReloadPlan &plan, PreparedReload prepared,
                     ReloadCallback done);
    void checkReload();
    void reapServices();
    void closeUnusedSockets();

    void checkShutdown();
    void updateStatus();
    [[nodiscard]] Result<std::unique_ptr<Service>> makeService(const config::ServiceConfig &config);

    EventLoop &loop_;
    config::Config config_;
    SocketSet sockets_;
    std::unique_ptr<ServiceContext> context_;
    std::vector<std::unique_ptr<Service>> services_;
    DaemonObserver *observer_ = nullptr;
    std::vector<EventSource> signals_;
    std::unique_ptr<OrphanReaper> orphans_;
    std::unique_ptr<ReloadOperation> reload_;
    std::vector<std::string> removing_;        // services a reload removed, stopping
    std::vector<std::string> retiringSockets_; // closed once no instance uses them
    EventSource reaper_;
    EventSource watchdog_;
    ManagerNotifier manager_;
    bool committing_ = false; // a reload is applying its changes: it answers after
    bool shuttingDown_ = false;
    bool notifiedReady_ = false;
    bool restored_ = false; // made by restore(): run() starts nothing
};

} // namespace fdsup
