// The daemon: holds the sockets and runs the services, reloads, handles signals and its own manager.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "daemon/held_store.hpp"
#include "daemon/reexec_state.hpp"
#include "daemon/reload.hpp"
#include "daemon/takeover.hpp"
#include "io/event_loop.hpp"
#include "io/manager_notify.hpp"
#include "io/metrics_server.hpp"
#include "io/orphan_reaper.hpp"
#include "io/sockets.hpp"
#include "model/orphans.hpp"
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
    // A reload (control call or SIGHUP) read its file, and its outcome.
    virtual void reloadBegun(const std::string &file) = 0;
    virtual void reloadFinished(const ReloadOutcome &outcome) = 0;

protected:
    ~DaemonObserver() = default;
};

// Transfer (transfer.cpp, docs/transfer.md): a socket as Export gives it
// (borrowed: the daemon keeps its copies) and as Import takes it.
struct ExportedSocket {
    std::string name;
    std::vector<std::string> addresses;
    std::vector<BorrowedFd> fds;
};
struct ImportedSocket {
    std::string name;
    std::vector<UniqueFd> fds;
};
// A held connection on its way, with what is left of its hold.
struct TransferredConnection {
    std::string service;
    std::unique_ptr<HeldConnection> held;
    Duration remaining{};
};
struct ImportOutcome {
    std::vector<std::string> started;            // services that waited for the sockets
    std::size_t connections = 0;                 // held here now
    std::vector<std::string> refusedConnections; // "connection 7 of 'web': why" (closed)
};

class Daemon final : private ServiceObserver {
public:
    // run()'s result when SIGTERM/SIGINT stopped every service, but at least
    // one instance had to be killed: its drain_timeout or stop_timeout passed
    // (fdsupd(8), EXIT STATUS).
    static constexpr int kExitStopKilled = 5;

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
    // READY=1 with MAINPID= and STATUS= to our own manager: once every
    // service's first start is over, after each reload, and after a
    // re-exec restored the daemon (docs/systemd.md).
    void notifyReady();
    // READY=1 now, and again after retryAfter while the manager's queue is full.

    // Every socket it holds descriptors of, in configuration order.
    [[nodiscard]] std::vector<ExportedSocket> exportSockets() const;
    // Takes the sockets, all or nothing (the error names the socket and why;
    // nothing changed then), and starts the services that waited for them.
    // Returns the services started.
    // The connections go to the brokers of the services of the same names
    // once the sockets are in: refused as a whole, before anything is taken,
    // when such a service is missing or has no handoff; one a broker refuses
    // (its checks, its limits) is closed and reported.
    Result<ImportOutcome> importSockets(std::vector<ImportedSocket> sockets,
                                        std::vector<TransferredConnection> connections = {});
    // Every connection the services' brokers hold, taken out of them.
    [[nodiscard]] std::vector<TransferredConnection> exportConnections();
    // Stops every service that uses one of the sockets (their ordinary stop)
    // and closes fdsupd's copies. Refused, with nothing changed, when a name
    // is unknown. Returns the services stopped.
    Result<std::vector<std::string>> releaseSockets(const std::vector<std::string> &names);

    // Re-exec (daemon_snapshot.cpp): what blocks a re-exec now ("" when
    // nothing; `unsupported`: the state format cannot carry it, waiting will
    // not help), the daemon's part of the state, and the daemon of the new
    // image made from it (nothing bound, nothing spawned; on error every
    // descriptor of the state's sockets and services is closed).
    [[nodiscard]] std::string reexecBusy(bool &unsupported) const;
    void snapshot(ReexecState &state) const;
    // What restore() requires of a state, checked without side effects: every
    // configured socket (a receive = true one may have no descriptors yet)
    // and service is in it. The old image checks its own state with it
    // before it execs, so a state no image can take is never handed over.
    static Result<void> checkState(const config::Config &config, const ReexecState &state);
    static Result<std::unique_ptr<Daemon>> restore(EventLoop &loop, config::Config config,
                                                   ReexecState &state);

    // The metrics endpoint ([supervisor] metrics, docs/metrics.md): what it
    // answers a scrape with (set by the API layer before run()), and the
    // endpoint itself (null when not configured).
    void setMetricsRender(MetricsServer::Render render) { metricsRender_ = std::move(render); }
    [[nodiscard]] const MetricsServer *metricsServer() const { return metrics_.get(); }
    // Reloads by outcome (indexed by ReloadOutcome::Kind), since this image started.
    [[nodiscard]] const std::array<std::uint64_t, ReloadOutcome::kKinds> &reloadsByResult() const
    {
        return reloads_;
    }

    [[nodiscard]] bool shuttingDown() const { return shuttingDown_; }
    [[nodiscard]] const config::Config &config() const { return config_; }
    [[nodiscard]] const SocketSet &sockets() const { return sockets_; }
    [[nodiscard]] const std::vector<std::unique_ptr<Service>> &services() const { return services_; }
    [[nodiscard]] Service *findService(std::string_view name) const;
    // A service's orphaned workers (a dead predecessor's, taken over at
    // start: docs/fdsupd.md), null when it has none.
    [[nodiscard]] const OrphanedWorkers *orphansOf(std::string_view service) const;

private:
    Daemon(EventLoop &loop, config::Config config);

    // ServiceObserver: the daemon's own bookkeeping, then the observer.
    void serviceChanged(Service &service) override;
    void rolloutEvent(Service &service, const Rollout &rollout, const std::string &event) override;
    void rolloutFinished(Service &service, const RolloutRecord &record) override;
    void queuedBegan(Service &service, std::uint64_t ticket, std::uint64_t id) override;
    void queuedEnded(Service &service, std::uint64_t ticket, const Error &why) override;
    void outputLine(Service &service, const LogLine &line) override;
    void instanceEvent(Service &service, const InstanceEvent &event) override;

    // Reload steps (reload.cpp).
    void refuseReload(const ReloadCallback &done, const std::string &file, std::vector<std::string> reasons);
    [[nodiscard]] std::vector<std::string> prepareReload(const config::Config &next, const ReloadPlan &plan,
                                                         PreparedReload &prepared);
    void applyReload(config::Config next, const ReloadPlan &plan, PreparedReload prepared,
                     ReloadCallback done);
    void checkReload();
    // Serves the metrics endpoint at supervisor.metrics from `bound` (or
    // stops serving it when unset); Done, or Failed with the error logged.
    ReloadChange::Status applyMetrics(const config::SupervisorConfig &supervisor, UniqueFd bound);
    // daemon_metrics.cpp: binds the endpoint the configuration names (none:
    // nothing), or serves one already bound at it (a reload's, a re-exec's).
    Result<void> openMetrics();
    Result<void> serveMetrics(UniqueFd listener);
    void reapServices();
    void closeUnusedSockets();

    void checkShutdown();
    // daemon_orphans.cpp: Takeover's orphans become the services' orphaned workers; each
    // service's are stopped once it runs (or is stopped).
    void adoptOrphans(const std::map<std::string, std::vector<FoundOrphan>> &found);
    void retireOrphans(const Service &service);
    [[nodiscard]] unsigned killedLeavingTotal() const;
    void checkReady();
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
    // Present only from a start that took over, until every orphan is gone.
    std::map<std::string, std::unique_ptr<OrphanedWorkers>, std::less<>> orphaned_;
    EventSource orphanSweep_;
    std::vector<std::string> removing_;        // services a reload removed, stopping
    std::vector<std::string> retiringSockets_; // closed once no instance uses them
    EventSource reaper_;
    EventSource watchdog_;
    ManagerNotifier manager_;
    // Held connections in manager_'s store (daemon/held_store.hpp).
    std::unique_ptr<HeldStore> heldStore_;
    std::unique_ptr<MetricsServer> metrics_;
    MetricsServer::Render metricsRender_;
    std::array<std::uint64_t, ReloadOutcome::kKinds> reloads_{};
    bool committing_ = false; // a reload is applying its changes: it answers after
    bool shuttingDown_ = false;
    unsigned killedBeforeShutdown_ = 0; // killedLeavingTotal() of every service at beginShutdown()
    bool started_ = false;              // run() started the services; READY=1 once they settle
    bool notifiedReady_ = false;
    bool restored_ = false; // made by restore(): run() starts nothing
};

} // namespace fdsup
