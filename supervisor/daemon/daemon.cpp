// The daemon: holds the sockets and runs the services, reloads, handles signals and its own manager.
#include "daemon/daemon.hpp"

#include <algorithm>
#include <random>

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "daemon/manager.hpp"
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
// READY=1 refused by a full manager queue is sent again after these, doubling.

} // namespace

Daemon::Daemon(EventLoop &loop, config::Config config) : loop_(loop), config_(std::move(config))
{}

Daemon::~Daemon() = default;

Result<std::unique_ptr<Daemon>> Daemon::create(EventLoop &loop, config::Config config, InheritedFds inherited)
{
    std::unique_ptr<Daemon> daemon(new Daemon(loop, std::move(config)));
    const config::Config &cfg = daemon->config_;
    // What the manager's full queue refuses (FDSTORE= of many listeners at
    // once, READY=1 behind them) waits and goes in order (io/manager_notify.hpp).
    daemon->manager_.attach(loop);

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

    auto storedHeld = takeStoredHeld(daemon->manager_, inherited);
    reclaimStored(daemon->manager_, cfg, inherited);
    forgetUnmatched(daemon->manager_, cfg, inherited);
    // An address in use may be a dead predecessor's listener, still held
    // by its workers: taken over rather than refused (docs/fdsupd.md).
    Takeover takeover(cfg);
    auto sockets = SocketSet::open(cfg, std::move(inherited), &takeover);
    if (!sockets) {
        return sockets.error();
    }
    daemon->sockets_ = std::move(*sockets);
    storeListeners(daemon->manager_, daemon->sockets_);

    daemon->context_ = std::make_unique<ServiceContext>(
        ServiceContext{loop, loop, daemon->sockets_, "fdsupd/" + std::to_string(getpid()) + "-" + randomTag(),
                       config::ResourceLimit{RLIMIT_NOFILE, original.rlim_cur, original.rlim_max}, 1,
                       HandoffLimits{}, cfg.supervisor.preloadLibrary});
    HandoffLimits &handoff = daemon->context_->handoff;
    handoff.heldLimit = cfg.supervisor.limits.heldConnections;
    handoff.heldLimitPerService = cfg.supervisor.limits.heldConnectionsPerService;
    handoff.stateLimit = cfg.supervisor.limits.stateSize;
    daemon->context_->supervisorId = cfg.supervisor.control;
    daemon->heldStore_ = std::make_unique<HeldStore>(daemon->manager_, heldStoreCapacity(daemon->sockets_));
    handoff.store = daemon->heldStore_.get();
    for (const auto &serviceConfig : cfg.services) {
        auto service = daemon->makeService(serviceConfig);
        if (!service) {
            return service.error();
        }
        daemon->services_.push_back(std::move(*service));
    }
    restoreHeld(*daemon->heldStore_, daemon->manager_, std::move(storedHeld), daemon->services_);
    daemon->adoptOrphans(takeover.orphans());
    if (auto metrics = daemon->openMetrics(); !metrics) {
        return metrics.error();
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
        if (restored_) {
            continue; // a re-exec's services run already
        }
        if (service->config().instances > 0) {
            service->start();
        } else {
            retireOrphans(*service); // nothing is to serve it
        }
    }
    // Connections queue in the kernel from here on; READY=1 once every
    // service's first start is over (checkReady).
    started_ = true;
    checkReady();
    updateStatus(); // "0/2 services running" while the manager says "activating"
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
    killedBeforeShutdown_ = killedLeavingTotal();
    spdlog::info("{}: stopping every service", why);
    manager_.stopping("stopping");
    if (observer_ != nullptr) {
        observer_->shutdownBegun();
    }
    for (auto &service : services_) {
        service->stop();
        retireOrphans(*service);
    }
    checkShutdown();
}

void Daemon::checkShutdown()
{
    if (!shuttingDown_) {
        return;
    }
    const bool done = std::all_of(services_.begin(), services_.end(),
                                  [](const auto &s) { return s->liveInstances() == 0; }) &&
                      orphaned_.empty();
    if (!done) {
        return;
    }
    // A service a reload removed may be gone by now, with its count.
    const unsigned total = killedLeavingTotal();
    const unsigned killed = total > killedBeforeShutdown_ ? total - killedBeforeShutdown_ : 0;
    if (killed > 0) {
        spdlog::warn("Every service stopped, {} instance{} killed after its stop deadline, exiting with "
                     "status {}",
                     killed, killed == 1 ? "" : "s", kExitStopKilled);
    } else {
        spdlog::info("Every service stopped, exiting");
    }
    if (observer_ != nullptr) {
        observer_->shutdownDone();
    }
    if (reload_) {
        const std::unique_ptr<ReloadOperation> op = std::move(reload_);
        if (op->callback()) {
            op->callback()(ReloadOutcome{ReloadOutcome::Kind::ShuttingDown, op->file(), {}, {}, {}});
        }
    }
    loop_.exit(killed > 0 ? kExitStopKilled : 0);
}

unsigned Daemon::killedLeavingTotal() const
{
    unsigned total = 0;
    for (const auto &service : services_) {
        total += service->killedLeavingTotal();
    }
    return total;
}

void Daemon::notifyReady()
{
    notifiedReady_ = true;
    // Never lost to a full queue: it waits behind what came before it.
    (void)manager_.ready(statusLine(services_));
}

void Daemon::checkReady()
{
    if (!started_ || notifiedReady_ || shuttingDown_) {
        return;
    }
    if (std::all_of(services_.begin(), services_.end(),
                    [](const auto &s) { return firstStartSettled(*s); })) {
        notifyReady();
    }
}

void Daemon::updateStatus()
{
    if (!started_ || shuttingDown_ || reload_) {
        return;
    }
    manager_.status(statusLine(services_));
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
    retireOrphans(service);
    closeUnusedSockets();
    checkReload();
    checkReady();
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
    // A rollout frees what its old instances used (buffers, channel queues,
    // parked connections); glibc keeps freed heap pages resident unless
    // asked, so a long-lived fdsupd's private memory crept up by about
    // 10 KiB per 100 rollouts with a flat live heap (the soak, docs/benchmark.md).
    // One malloc_trim() per rollout returns them: microseconds, next to the
    // milliseconds a rollout takes.
    (void)malloc_trim(0);
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

void Daemon::outputLine(Service &service, const LogLine &line)
{
    if (observer_ != nullptr) {
        observer_->outputLine(service, line);
    }
}

void Daemon::instanceEvent(Service &service, const InstanceEvent &event)
{
    if (observer_ != nullptr) {
        observer_->instanceEvent(service, event);
    }
}

} // namespace fdsup
