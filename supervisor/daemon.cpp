// The daemon: holds the sockets, runs the services, answers the control API, handles signals.
#include "daemon.hpp"

#include <algorithm>
#include <cerrno>
#include <random>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "fdsup/users.hpp"
#include "fdsup_build_config.h"

namespace fdsup {
namespace {

std::string randomTag()
{
    std::random_device rd;
    std::uniform_int_distribution<unsigned> dist;
    return fmt::format("{:08x}", dist(rd));
}

// allow_users/allow_groups were checked at load; resolve them now to ids.
void resolveAccess(const config::SupervisorConfig &supervisor, ControlOptions &options)
{
    for (const auto &name : supervisor.allowUsers) {
        if (const auto id = parseNumericId(name)) {
            options.allowUids.push_back(*id);
        } else if (auto entry = lookUpUser(name); entry && *entry) {
            options.allowUids.push_back((*entry)->uid);
        } else {
            spdlog::warn("allow_users: unknown user '{}', ignoring", name);
        }
    }
    for (const auto &name : supervisor.allowGroups) {
        if (auto gid = lookUpGroup(name)) {
            options.allowGids.push_back(*gid);
        } else {
            spdlog::warn("allow_groups: {}, ignoring", gid.error().message);
        }
    }
}

} // namespace

Daemon::Daemon(EventLoop &loop, config::Config config) : loop_(loop), config_(std::move(config))
{}

Daemon::~Daemon() = default;

Result<std::unique_ptr<Daemon>> Daemon::create(EventLoop &loop, config::Config config, InheritedFds inherited)
{
    std::unique_ptr<Daemon> daemon(new Daemon(loop, std::move(config)));
    const config::Config &cfg = daemon->config_;

    rlimit original{};
    getrlimit(RLIMIT_NOFILE, &original);
    const std::uint64_t limit = raiseFileLimit(cfg.supervisor.limits.nofile);
    std::size_t needed = 64; // fdsupd's own: loop, control, logs, notify sockets
    for (const auto &service : cfg.services) {
        // pidfd, two output pipes and the status pipe per worker, plus its listeners.
        needed += static_cast<std::size_t>(service.instances) * 4 + 1;
    }
    needed += cfg.supervisor.limits.controlClients;
    if (limit < needed) {
        spdlog::warn("RLIMIT_NOFILE is {}, but this configuration may need about {} descriptors", limit,
                     needed);
    }

    auto sockets = SocketSet::open(cfg, std::move(inherited));
    if (!sockets) {
        return sockets.error();
    }
    daemon->sockets_ = std::move(*sockets);

    daemon->context_ = std::make_unique<ServiceContext>(
        ServiceContext{loop, daemon->sockets_, "fdsupd/" + std::to_string(getpid()) + "-" + randomTag(),
                       config::ResourceLimit{RLIMIT_NOFILE, original.rlim_cur, original.rlim_max}});
    for (const auto &serviceConfig : cfg.services) {
        auto service = Service::create(*daemon->context_, serviceConfig);
        if (!service) {
            return service.error();
        }
        Daemon *self = daemon.get();
        (*service)->setChangeHandler([self](Service &s) { self->onServiceChanged(s); });
        daemon->services_.push_back(std::move(*service));
    }

    ControlOptions options;
    options.path = cfg.supervisor.control;
    options.mode = cfg.supervisor.controlMode;
    options.maxRequest = cfg.supervisor.limits.controlRequestSize;
    options.maxClients = cfg.supervisor.limits.controlClients;
    options.version = FDSUP_VERSION;
    resolveAccess(cfg.supervisor, options);
    Daemon *self = daemon.get();
    auto control = ControlServer::create(
        loop, options, [self](const std::shared_ptr<PendingCall> &call) { self->onControlCall(call); });
    if (!control) {
        return Error{control.error().code,
                     "Failed to open the control socket " + options.path + ": " + control.error().message};
    }
    daemon->control_ = std::move(*control);
    return daemon;
}

int Daemon::run()
{
    for (const int sig : {SIGTERM, SIGINT, SIGHUP}) {
        auto source = loop_.addSignal(sig, [this](const signalfd_siginfo &info) {
            if (info.ssi_signo == SIGHUP) {
                // Reload arrives with the rollout work; until then a SIGHUP
                // must never hurt a running daemon.
                spdlog::warn("SIGHUP: reload is not supported by this fdsupd yet, ignoring");
                return;
            }
            beginShutdown(info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        });
        if (!source) {
            spdlog::error("{}", source.error().message);
            return 1;
        }
        signals_.push_back(std::move(*source));
    }
    // Our own manager's watchdog (WatchdogSec=): WATCHDOG=1 at half the
    // interval, through the non-blocking notifier.
    std::uint64_t watchdogUsec = 0;
    if (sd_watchdog_enabled(1, &watchdogUsec) > 0 && watchdogUsec > 0) {
        const Duration interval(static_cast<Duration::rep>(watchdogUsec / 2));
        std::function<void()> ping;
        ping = [this, interval] {
            manager_.send("WATCHDOG=1");
            watchdog_.rearm(interval);
        };
        if (auto t = loop_.addTimer(interval, ping)) {
            watchdog_ = std::move(*t);
        }
    }

    for (auto &service : services_) {
        if (service->config().instances > 0) {
            service->start();
        }
    }
    // Sockets are bound and every worker is on its way: connections queue in
    // the kernel from here on, which is what READY means for a socket holder.
    notifiedReady_ = true;
    manager_.send("READY=1");
    updateStatus();
    spdlog::info("fdsupd {} running: {} socket{}, {} service{}, control at {}", FDSUP_VERSION,
                 sockets_.sockets().size(), sockets_.sockets().size() == 1 ? "" : "s", services_.size(),
                 services_.size() == 1 ? "" : "s", config_.supervisor.control);
    const int r = loop_.run();
    manager_.status("stopped");
    return r < 0 ? 1 : r;
}

void Daemon::beginShutdown(const char *why)
{
    if (shuttingDown_) {
        spdlog::info("{}: already stopping", why);
        return;
    }
    shuttingDown_ = true;
    spdlog::info("{}: stopping every service", why);
    manager_.send("STOPPING=1\nSTATUS=stopping");
    for (auto &service : services_) {
        service->stop();
    }
    checkShutdown();
}

void Daemon::checkShutdown()
{
    if (!shuttingDown_) {
        return;
    }
    const bool done = std::all_of(services_.begin(), services_.end(),
                                  [](const auto &s) { return s->liveInstances() == 0; });
    if (done) {
        spdlog::info("Every service stopped, exiting");
        loop_.exit(0);
    }
}

void Daemon::updateStatus()
{
    if (!notifiedReady_ || shuttingDown_) {
        return;
    }
    std::size_t running = 0;
    std::size_t failed = 0;
    for (const auto &service : services_) {
        running += service->state() == ServiceState::Running ? 1 : 0;
        failed += service->state() == ServiceState::Failed ? 1 : 0;
    }
    manager_.status(std::to_string(running) + "/" + std::to_string(services_.size()) + " services running" +
                    (failed > 0 ? ", " + std::to_string(failed) + " failed" : ""));
}

void Daemon::onServiceChanged(Service &service)
{
    const ServiceState state = service.state();
    for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (it->service != service.name() || it->call->done()) {
            it = it->call->done() ? waiters_.erase(it) : std::next(it);
            continue;
        }
        const ServiceState goal = it->forStart ? ServiceState::Running : ServiceState::Stopped;
        bool finished = true;
        if (state == goal) {
            it->call->reply({{"service", service.name()}, {"state", serviceStateName(state)}});
        } else if (it->forStart && state == ServiceState::Failed) {
            it->call->fail(varlink::kErrorServiceFailed,
                           {{"service", service.name()}, {"reason", service.failedReason()}});
        } else {
            finished = false;
        }
        it = finished ? waiters_.erase(it) : std::next(it);
    }
    updateStatus();
    checkShutdown();
}

Service *Daemon::findService(std::string_view name)
{
    for (auto &service : services_) {
        if (service->name() == name) {
            return service.get();
        }
    }
    return nullptr;
}

nlohmann::json Daemon::socketsJson() const
{
    nlohmann::json sockets = nlohmann::json::array();
    for (const auto &held : sockets_.sockets()) {
        nlohmann::json listen = nlohmann::json::array();
        for (const auto &address : held.config.listen) {
            listen.push_back(formatAddress(address));
        }
        nlohmann::json bound = nlohmann::json::array();
        for (std::size_t i = 0; i < held.fds.size(); ++i) {
            bound.push_back({{"address", held.addresses.at(i)},
                             {"fd", held.fds[i].get()},
                             {"origin", held.adopted ? "adopted" : "bound"}});
        }
        nlohmann::json users = nlohmann::json::array();
        for (const auto &service : services_) {
            const auto &names = service->config().sockets;
            if (std::find(names.begin(), names.end(), held.config.name) != names.end()) {
                users.push_back(service->name());
            }
        }
        sockets.push_back(
            {{"name", held.config.name}, {"listen", listen}, {"bound", bound}, {"services", users}});
    }
    return {{"sockets", sockets}};
}

void Daemon::onControlCall(const std::shared_ptr<PendingCall> &call)
{
    const std::string &method = call->call().method;
    const nlohmann::json &params = call->call().parameters;
    const std::string prefix = std::string(varlink::kInterface) + ".";
    const std::string name = method.substr(prefix.size());

    auto serviceParam = [&](bool required) -> std::optional<std::string> {
        const auto it = params.find("service");
        if (it == params.end() || it->is_null()) {
            if (required) {
                call->fail(varlink::kErrorInvalidParameter, {{"parameter", "service"}});
            }
            return std::nullopt;
        }
        if (!it->is_string()) {
            call->fail(varlink::kErrorInvalidParameter, {{"parameter", "service"}});
            return std::nullopt;
        }
        return it->get<std::string>();
    };

    if (name == "Status") {
        auto wanted = serviceParam(false);
        if (call->done()) {
            return;
        }
        nlohmann::json list = nlohmann::json::array();
        if (wanted) {
            Service *service = findService(*wanted);
            if (service == nullptr) {
                call->fail(varlink::kErrorNoSuchService, {{"service", *wanted}});
                return;
            }
            list.push_back(service->toJson());
        } else {
            for (const auto &service : services_) {
                list.push_back(service->toJson());
            }
        }
        call->reply({{"services", list}});
        return;
    }
    if (name == "Sockets") {
        call->reply(socketsJson());
        return;
    }
    if (name == "Start" || name == "Stop") {
        auto wanted = serviceParam(true);
        if (!wanted) {
            return;
        }
        Service *service = findService(*wanted);
        if (service == nullptr) {
            call->fail(varlink::kErrorNoSuchService, {{"service", *wanted}});
            return;
        }
        if (shuttingDown_) {
            call->fail(varlink::kErrorShuttingDown);
            return;
        }
        const bool start = name == "Start";
        spdlog::info("{} {} requested by uid {} (pid {})", start ? "Start" : "Stop", *wanted,
                     call->peer().uid, call->peer().pid);
        waiters_.push_back(Waiter{call, *wanted, start});
        if (start) {
            service->start();
        } else {
            service->stop();
        }
        onServiceChanged(*service); // answers at once when already there
        return;
    }
    call->fail(varlink::kErrorMethodNotFound, {{"method", method}});
}

} // namespace fdsup
