// The daemon: holds the sockets and runs the services, reloads, handles signals and its own manager.
#include "daemon/daemon.hpp"

#include <algorithm>
#include <random>

#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "fdsup_build_config.h"
#include "io/reexec_preflight.hpp"

namespace fdsup {
namespace {

std::string randomTag()
{
    std::random_device rd;
    std::uniform_int_distribution<unsigned> dist;
    return fmt::format("{:08x}", dist(rd));
}

// fdsupd's own descriptors beside its workers': loop, control, logs, notify sockets.
constexpr std::size_t kOwnFds = 64;

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
    std::size_t needed = kOwnFds;
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
        ServiceContext{loop, loop, daemon->sockets_, "fdsupd/" + std::to_string(getpid()) + "-" + randomTag(),
                       config::ResourceLimit{RLIMIT_NOFILE, original.rlim_cur, original.rlim_max}, 1,
                       HandoffLimits{}, cfg.supervisor.preloadLibrary});
    HandoffLimits &handoff = daemon->context_->handoff;
    handoff.heldLimit = cfg.supervisor.limits.heldConnections;
    handoff.heldLimitPerService = cfg.supervisor.limits.heldConnectionsPerService;
    handoff.stateLimit = cfg.supervisor.limits.stateSize;
    for (const auto &serviceConfig : cfg.services) {
        auto service = daemon->makeService(serviceConfig);
        if (!service) {
            return service.error();
        }
        daemon->services_.push_back(std::move(*service));
    }
    return daemon;
}

Result<std::unique_ptr<Service>> Daemon::makeService(const config::ServiceConfig &config)
{
    ServiceObserver &observer = *this;
    return Service::create(*context_, config, observer);
}

int Daemon::run()
{
    for (const int sig : {SIGTERM, SIGINT, SIGHUP}) {
        auto source = loop_.addSignal(sig, [this](const signalfd_siginfo &info) {
            if (info.ssi_signo == SIGHUP) {
                spdlog::info("SIGHUP: reloading the configuration");
                reload(nullptr);
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
    // A daemonising server's process stays fdsupd's child (pid_file), and
    // whatever a worker leaves behind is reaped.
    auto reaper = OrphanReaper::start(loop_, [this](pid_t pid) {
        return ReexecPreflight::isRunning(pid) ||
               std::any_of(services_.begin(), services_.end(), [pid](const auto &service) {
                   return std::any_of(service->instances().begin(), service->instances().end(),
                                      [pid](const auto &instance) { return instance->pid() == pid; });
               });
    });
    if (!reaper) {
        spdlog::warn("{}, ignoring: a daemonising server cannot be followed", reaper.error().message);
    } else {
        orphans_ = std::move(*reaper);
    }
    // Our own manager's watchdog (WatchdogSec=): WATCHDOG=1 at half the
    // interval, through the non-blocking notifier.
    std::uint64_t watchdogUsec = 0;
    if (sd_watchdog_enabled(1, &watchdogUsec) > 0 && watchdogUsec > 0) {
        const Duration interval(static_cast<Duration::rep>(watchdogUsec / 2));
        if (auto t = loop_.addTimer(interval, [this, interval] {
                manager_.send("WATCHDOG=1");
                watchdog_.rearm(interval);
            })) {
            watchdog_ = std::move(*t);
        }
    }

    for (auto &service : services_) {
        if (service->config().instances > 0 && !restored_) {
            service->start();
        }
    }
    // Sockets are bound and every worker is on its way: connections queue in
    // the kernel from here on, which is what READY means for a socket holder.
    notifiedReady_ = true;
    // After a re-exec our manager sees the same pid: MAINPID says so anyway.
    manager_.send(restored_ ? "MAINPID=" + std::to_string(getpid()) + "\nREADY=1" : std::string("READY=1"));
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
    if (observer_ != nullptr) {
        observer_->shutdownBegun();
    }
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
    if (!done) {
        return;
    }
    spdlog::info("Every service stopped, exiting");
    if (observer_ != nullptr) {
        observer_->shutdownDone();
    }
    if (reload_) {
        const std::unique_ptr<ReloadOperation> op = std::move(reload_);
        if (op->callback()) {
            op->callback()(ReloadOutcome{ReloadOutcome::Kind::ShuttingDown, op->file(), {}, {}, {}});
        }
    }
    loop_.exit(0);
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

Service *Daemon::findService(std::string_view name) const
{
    const auto it =
        std::find_if(services_.begin(), services_.end(), [&](const auto &s) { return s->name() == name; });
    return it == services_.end() ? nullptr : it->get();
}

void Daemon::serviceChanged(Service &service)
{
    if (observer_ != nullptr) {
        observer_->serviceChanged(service);
    }
    if (std::find(removing_.begin(), removing_.end(), service.name()) != removing_.end() &&
        service.liveInstances() == 0 && !reaper_) {
        // Not from inside the service's own callback: it would destroy itself.
        if (auto defer = loop_.addDefer([this] { reapServices(); })) {
            reaper_ = std::move(*defer);
        }
    }
    closeUnusedSockets();
    checkReload();
    updateStatus();
    checkShutdown();
}

void Daemon::rolloutEvent(Service &service, const Rollout &rollout, const std::string &event)
{
    if (observer_ != nullptr) {
        observer_->rolloutEvent(service, rollout, event);
    }
}

void Daemon::rolloutFinished(Service &service, const RolloutRecord &record)
{
    if (observer_ != nullptr) {
        observer_->rolloutFinished(service, record);
    }
    if (reload_) {
        reload_->rolloutFinished(service.name(), record.state == RolloutState::Succeeded,
                                 record.reason.empty() ? rolloutStateName(record.state) : record.reason,
                                 config_);
        checkReload();
    }
}

void Daemon::queuedBegan(Service &service, std::uint64_t ticket, std::uint64_t id)
{
    if (observer_ != nullptr) {
        observer_->queuedBegan(service, ticket, id);
    }
}

void Daemon::queuedEnded(Service &service, std::uint64_t ticket, const Error &why)
{
    if (observer_ != nullptr) {
        observer_->queuedEnded(service, ticket, why);
    }
}

void Daemon::outputLine(Service &service, const LogEntry &entry)
{
    if (observer_ != nullptr) {
        observer_->outputLine(service, entry);
    }
}

} // namespace fdsup
