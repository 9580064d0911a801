// The daemon: holds the sockets, runs the services, answers the control API, handles signals.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "control_server.hpp"
#include "event_loop.hpp"
#include "fdsup/config.hpp"
#include "manager_notify.hpp"
#include "service.hpp"
#include "sockets.hpp"

namespace fdsup {

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

private:
    explicit Daemon(EventLoop &loop, config::Config config);

    void onControlCall(const std::shared_ptr<PendingCall> &call);
    void onServiceChanged(Service &service);
    void beginShutdown(const char *why);
    void checkShutdown();
    void updateStatus();
    Service *findService(std::string_view name);
    nlohmann::json socketsJson() const;

    struct Waiter {
        std::shared_ptr<PendingCall> call;
        std::string service;
        bool forStart = false;
    };

    EventLoop &loop_;
    config::Config config_;
    SocketSet sockets_;
    std::unique_ptr<ServiceContext> context_;
    std::vector<std::unique_ptr<Service>> services_;
    std::unique_ptr<ControlServer> control_;
    std::vector<Waiter> waiters_;
    std::vector<EventSource> signals_;
    EventSource watchdog_;
    ManagerNotifier manager_;
    bool shuttingDown_ = false;
    bool notifiedReady_ = false;
};

} // namespace fdsup
