// The daemon: holds the sockets, runs the services, answers the control API, handles signals.
#include "daemon/daemon.hpp"

#include <algorithm>
#include <cerrno>
#include <limits>
#include <random>
#include <type_traits>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "common/users.hpp"
#include "fdsup_build_config.h"

namespace fdsup {
namespace {

std::string randomTag()
{
    std::random_device rd;
    std::uniform_int_distribution<unsigned> dist;
    return fmt::format("{:08x}", dist(rd));
}

} // namespace

void resolveControlAccess(const config::SupervisorConfig &supervisor, ControlOptions &options)
{
    for (const auto &name : supervisor.allowUsers) {
        if (auto uid = lookUpUid(name)) {
            options.allowUids.push_back(*uid);
        } else {
            spdlog::warn("allow_users: {}, ignoring", uid.error().message);
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

namespace {

// Reads an optional parameter of the call. Absent or null leaves `out`
// empty; a value of the wrong type (or out of [min, max] for integers)
// fails the call with InvalidParameter and returns false.
template <typename T>
bool optionalParameter(const std::shared_ptr<PendingCall> &call, const char *name, std::optional<T> &out,
                       std::int64_t min = 0, std::int64_t max = std::numeric_limits<std::int64_t>::max())
{
    const nlohmann::json &params = call->call().parameters;
    const auto it = params.find(name);
    if (it == params.end() || it->is_null()) {
        return true;
    }
    bool ok = false;
    if constexpr (std::is_same_v<T, bool>) {
        ok = it->is_boolean();
    } else if constexpr (std::is_same_v<T, std::string>) {
        ok = it->is_string();
    } else {
        ok = it->is_number_integer() && it->template get<std::int64_t>() >= min &&
             it->template get<std::int64_t>() <= max;
    }
    if (!ok) {
        call->fail(varlink::kErrorInvalidParameter, {{"parameter", name}});
        return false;
    }
    out = it->template get<T>();
    return true;
}

// What a queued restart looks like before it has begun (it has no id yet).
nlohmann::json queuedRollout(const Service &service, const RolloutOptions &options)
{
    return {{"id", 0},
            {"service", service.name()},
            {"from_generation", service.generation()},
            {"to_generation", 0},
            {"order", options.order == config::RolloutOrder::StartFirst ? "start-first" : "stop-first"},
            {"batch", options.batch},
            {"state", "queued"},
            {"reason", nullptr},
            {"failure", nullptr},
            {"started_usec", 0},
            {"duration_usec", 0},
            {"steps", nlohmann::json::array()}};
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
    daemon->context_->heldLimit = cfg.supervisor.limits.heldConnections;
    daemon->context_->heldLimitPerService = cfg.supervisor.limits.heldConnectionsPerService;
    daemon->context_->stateLimit = cfg.supervisor.limits.stateSize;
    for (const auto &serviceConfig : cfg.services) {
        auto service = Service::create(*daemon->context_, serviceConfig);
        if (!service) {
            return service.error();
        }
        daemon->watch(**service);
        daemon->services_.push_back(std::move(*service));
    }

    ControlOptions options;
    options.path = cfg.supervisor.control;
    options.mode = cfg.supervisor.controlMode;
    options.maxRequest = cfg.supervisor.limits.controlRequestSize;
    options.maxClients = cfg.supervisor.limits.controlClients;
    options.version = FDSUP_VERSION;
    resolveControlAccess(cfg.supervisor, options);
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
    for (auto &queued : queue_) {
        if (queued.call && !queued.call->done()) {
            queued.call->fail(varlink::kErrorShuttingDown);
        }
    }
    queue_.clear();
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
        for (const auto &[call, name] : followers_) {
            if (!call->done()) {
                call->reply({{"lines", nlohmann::json::array()}});
            }
        }
        followers_.clear();
        if (reload_ && reload_->call && !reload_->call->done()) {
            reload_->call->fail(varlink::kErrorShuttingDown);
        }
        reload_.reset();
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

void Daemon::watch(Service &service)
{
    service.setChangeHandler([this](Service &s) { onServiceChanged(s); });
    service.setRolloutHandler([this](Service &s, std::uint64_t id,
                                     const std::function<nlohmann::json()> &rollout, const std::string &event,
                                     bool finished) { onRollout(s, id, rollout, event, finished); });
    service.setOutputHandler([this](Service &s, const LogEntry &entry) { onOutputLine(s, entry); });
}

void Daemon::onServiceChanged(Service &service)
{
    const ServiceState state = service.state();
    for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (it->service != service.name() || it->call->done()) {
            it = it->call->done() ? waiters_.erase(it) : std::next(it);
            continue;
        }
        bool reached = false;
        switch (it->goal) {
        case Waiter::Goal::Running:
            reached = state == ServiceState::Running;
            break;
        case Waiter::Goal::Stopped:
            reached = state == ServiceState::Stopped;
            break;
        case Waiter::Goal::Settled:
            // Scale: every new instance ready, every removed one gone (a
            // stopped service only records the number).
            reached = service.settled() && !service.rolloutActive() &&
                      (state == ServiceState::Running || state == ServiceState::Stopped);
            break;
        }
        bool finished = true;
        if (reached) {
            nlohmann::json reply{{"service", service.name()}, {"state", serviceStateName(state)}};
            if (it->goal == Waiter::Goal::Settled) {
                reply["instances"] = service.wanted();
            }
            it->call->reply(std::move(reply));
        } else if (it->goal != Waiter::Goal::Stopped && state == ServiceState::Failed) {
            it->call->fail(varlink::kErrorServiceFailed,
                           {{"service", service.name()}, {"reason", service.failedReason()}});
        } else if (it->goal != Waiter::Goal::Stopped && !service.active() && state == ServiceState::Stopped) {
            // Stopped by someone else meanwhile: it will not get there.
            it->call->fail(varlink::kErrorServiceFailed,
                           {{"service", service.name()}, {"reason", "the service was stopped"}});
        } else {
            finished = false;
        }
        it = finished ? waiters_.erase(it) : std::next(it);
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

void Daemon::onRollout(Service &service, std::uint64_t id, const std::function<nlohmann::json()> &record,
                       const std::string &event, bool finished)
{
    std::optional<nlohmann::json> built;
    auto rollout = [&]() -> const nlohmann::json & {
        if (!built) {
            built = record();
        }
        return *built;
    };
    for (auto it = rolloutWaiters_.begin(); it != rolloutWaiters_.end();) {
        if (it->call->done()) {
            it = rolloutWaiters_.erase(it);
            continue;
        }
        if (it->service != service.name() || (it->rollout != 0 && it->rollout != id)) {
            ++it;
            continue;
        }
        it->rollout = id;
        if (!finished) {
            if (it->progress) {
                it->call->reply({{"rollout", rollout()}, {"event", event}}, true);
            }
            ++it;
            continue;
        }
        if (it->cancel || rollout().at("state") == "succeeded") {
            it->call->reply({{"rollout", rollout()}});
        } else {
            it->call->fail(varlink::kErrorRolloutFailed,
                           {{"service", service.name()}, {"rollout", rollout()}});
        }
        it = rolloutWaiters_.erase(it);
    }
    if (finished) {
        if (reload_) {
            onReloadRollout(service, rollout());
        }
        startQueued(service);
    }
}

void Daemon::onOutputLine(Service &service, const LogEntry &entry)
{
    std::erase_if(followers_, [](const auto &f) { return f.first->done(); });
    for (const auto &[call, name] : followers_) {
        if (name == service.name()) {
            call->reply({{"lines", nlohmann::json::array({toJson(entry)})}}, true);
        }
    }
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
    if (name == "Connections") {
        auto wanted = serviceParam(false);
        if (call->done()) {
            return;
        }
        nlohmann::json list = nlohmann::json::array();
        for (const auto &service : services_) {
            if (!wanted || service->name() == *wanted) {
                list.push_back(service->connectionsJson());
            }
        }
        if (wanted && list.empty()) {
            call->fail(varlink::kErrorNoSuchService, {{"service", *wanted}});
            return;
        }
        call->reply({{"services", list}});
        return;
    }
    // The methods about one named service; the call is answered when it is missing.
    auto namedService = [&]() -> Service * {
        auto wanted = serviceParam(true);
        if (!wanted) {
            return nullptr;
        }
        Service *service = findService(*wanted);
        if (service == nullptr) {
            call->fail(varlink::kErrorNoSuchService, {{"service", *wanted}});
        }
        return service;
    };
    if (name == "Start" || name == "Stop") {
        Service *service = namedService();
        if (service == nullptr) {
            return;
        }
        const std::string &wanted = service->name();
        if (shuttingDown_) {
            call->fail(varlink::kErrorShuttingDown);
            return;
        }
        const bool start = name == "Start";
        spdlog::info("{} {} requested by uid {} (pid {})", start ? "Start" : "Stop", wanted, call->peer().uid,
                     call->peer().pid);
        waiters_.push_back(Waiter{call, wanted, start ? Waiter::Goal::Running : Waiter::Goal::Stopped});
        if (start) {
            service->start();
        } else {
            service->stop();
        }
        onServiceChanged(*service); // answers at once when already there
        return;
    }
    if (name == "Reload") {
        spdlog::info("Reload requested by uid {} (pid {})", call->peer().uid, call->peer().pid);
        reload(call);
        return;
    }
    if (name == "Restart" || name == "RolloutStatus" || name == "RolloutCancel" || name == "Scale" ||
        name == "Logs") {
        Service *service = namedService();
        if (service == nullptr) {
            return;
        }
        if (name == "RolloutStatus") {
            call->reply({{"rollout", service->rolloutJson()}, {"queued", queuedFor(service->name())}});
        } else if (name == "Logs") {
            callLogs(call, *service);
        } else if (shuttingDown_) {
            call->fail(varlink::kErrorShuttingDown);
        } else if (name == "Restart") {
            callRestart(call, *service);
        } else if (name == "RolloutCancel") {
            callRolloutCancel(call, *service);
        } else {
            callScale(call, *service);
        }
        return;
    }
    call->fail(varlink::kErrorMethodNotFound, {{"method", method}});
}

void Daemon::callRestart(const std::shared_ptr<PendingCall> &call, Service &service)
{
    std::optional<std::int64_t> batch;
    std::optional<std::string> order;
    std::optional<bool> queue;
    std::optional<bool> wait;
    std::optional<std::int64_t> timeoutUsec;
    if (!optionalParameter(call, "batch", batch, 1, kMaxInstances) ||
        !optionalParameter(call, "order", order) || !optionalParameter(call, "queue", queue) ||
        !optionalParameter(call, "wait", wait) || !optionalParameter(call, "timeout_usec", timeoutUsec, 1)) {
        return;
    }
    RolloutOptions options;
    options.batch = batch ? static_cast<unsigned>(*batch) : service.config().rolloutBatch;
    options.order = service.config().rolloutOrder;
    if (order) {
        if (*order != "start-first" && *order != "stop-first") {
            call->fail(varlink::kErrorInvalidParameter, {{"parameter", "order"}});
            return;
        }
        options.order =
            *order == "start-first" ? config::RolloutOrder::StartFirst : config::RolloutOrder::StopFirst;
    }
    if (timeoutUsec) {
        options.timeout = Duration(*timeoutUsec);
    }
    // Progress (more) is only sent while waiting for the result.
    const bool waitForResult = wait.value_or(false) || call->call().more;
    spdlog::info("Restart {} requested by uid {} (pid {})", service.name(), call->peer().uid,
                 call->peer().pid);
    if (service.rolloutActive() || queuedFor(service.name()) > 0) {
        if (!queue.value_or(false)) {
            call->fail(varlink::kErrorRolloutInProgress,
                       {{"service", service.name()}, {"rollout", service.rolloutId()}});
            return;
        }
        if (waitForResult) {
            if (call->call().more) {
                call->reply({{"rollout", queuedRollout(service, options)},
                             {"event", "queued behind rollout " + std::to_string(service.rolloutId())}},
                            true);
            }
            queue_.push_back(QueuedRestart{call, service.name(), options, true});
        } else {
            call->reply({{"rollout", queuedRollout(service, options)}});
            queue_.push_back(QueuedRestart{nullptr, service.name(), options, false});
        }
        return;
    }
    startRestart(service, call, options, waitForResult);
}

void Daemon::startRestart(Service &service, const std::shared_ptr<PendingCall> &call,
                          const RolloutOptions &options, bool wait)
{
    // Registered before the rollout begins: its first events come at once.
    const bool progress = call && call->call().more;
    if (wait && call) {
        rolloutWaiters_.push_back(RolloutWaiter{call, service.name(), 0, progress, false});
    }
    auto id = service.restart(options);
    if (!id) {
        spdlog::error("Cannot restart {}: {}", service.name(), id.error().message);
        std::erase_if(rolloutWaiters_, [&](const RolloutWaiter &w) { return w.call == call; });
        if (call && !call->done()) {
            call->fail(varlink::kErrorServiceFailed,
                       {{"service", service.name()}, {"reason", id.error().message}});
        }
        startQueued(service);
        return;
    }
    if (!wait && call && !call->done()) {
        call->reply({{"rollout", service.rolloutJson()}});
    }
}

void Daemon::startQueued(Service &service)
{
    if (service.rolloutActive() || shuttingDown_) {
        return;
    }
    const auto it = std::find_if(queue_.begin(), queue_.end(),
                                 [&](const QueuedRestart &q) { return q.service == service.name(); });
    if (it == queue_.end()) {
        return;
    }
    QueuedRestart next = std::move(*it);
    queue_.erase(it);
    if (next.call && next.call->done()) {
        // The client that waited for it went away: it is still wanted.
        next.call.reset();
    }
    startRestart(service, next.call, next.options, next.wait && next.call);
}

std::size_t Daemon::queuedFor(const std::string &service) const
{
    return static_cast<std::size_t>(std::count_if(
        queue_.begin(), queue_.end(), [&](const QueuedRestart &q) { return q.service == service; }));
}

void Daemon::callRolloutCancel(const std::shared_ptr<PendingCall> &call, Service &service)
{
    if (!service.rolloutActive()) {
        call->fail(varlink::kErrorNoRollout, {{"service", service.name()}});
        return;
    }
    const std::string who = "cancelled by uid " + std::to_string(call->peer().uid) + " (pid " +
                            std::to_string(call->peer().pid) + ")";
    spdlog::info("Rollout {} of {} {}", service.rolloutId(), service.name(), who);
    // Restarts queued behind it are cancelled too: they would undo the cancel.
    for (auto it = queue_.begin(); it != queue_.end();) {
        if (it->service != service.name()) {
            ++it;
            continue;
        }
        if (it->call && !it->call->done()) {
            nlohmann::json rollout = queuedRollout(service, it->options);
            rollout["state"] = "cancelled";
            rollout["reason"] = who + " before it began";
            it->call->fail(varlink::kErrorRolloutFailed, {{"service", service.name()}, {"rollout", rollout}});
        }
        it = queue_.erase(it);
    }
    rolloutWaiters_.push_back(RolloutWaiter{call, service.name(), service.rolloutId(), false, true});
    service.cancelRollout(who);
}

void Daemon::callScale(const std::shared_ptr<PendingCall> &call, Service &service)
{
    std::optional<std::int64_t> instances;
    if (!optionalParameter(call, "instances", instances, 0, kMaxInstances)) {
        return;
    }
    if (!instances) {
        call->fail(varlink::kErrorInvalidParameter, {{"parameter", "instances"}});
        return;
    }
    if (service.rolloutActive()) {
        call->fail(varlink::kErrorRolloutInProgress,
                   {{"service", service.name()}, {"rollout", service.rolloutId()}});
        return;
    }
    spdlog::info("Scale {} to {} requested by uid {} (pid {})", service.name(), *instances, call->peer().uid,
                 call->peer().pid);
    waiters_.push_back(Waiter{call, service.name(), Waiter::Goal::Settled});
    service.scale(static_cast<unsigned>(*instances));
    onServiceChanged(service); // answers at once when already there
}

void Daemon::callLogs(const std::shared_ptr<PendingCall> &call, Service &service)
{
    constexpr std::int64_t kDefaultLines = 50;
    std::optional<std::int64_t> lines;
    std::optional<bool> follow;
    if (!optionalParameter(call, "lines", lines, 0) || !optionalParameter(call, "follow", follow)) {
        return;
    }
    if (follow.value_or(false) && !call->call().more) {
        // Following needs a way to send more than one reply.
        call->fail(varlink::kErrorInvalidParameter, {{"parameter", "follow"}});
        return;
    }
    const auto &output = service.recentOutput();
    const auto count =
        std::min<std::size_t>(output.size(), static_cast<std::size_t>(lines.value_or(kDefaultLines)));
    nlohmann::json list = nlohmann::json::array();
    for (auto it = output.end() - static_cast<std::ptrdiff_t>(count); it != output.end(); ++it) {
        list.push_back(toJson(*it));
    }
    if (!follow.value_or(false)) {
        call->reply({{"lines", list}});
        return;
    }
    call->reply({{"lines", list}}, true);
    followers_.emplace_back(call, service.name());
}

} // namespace fdsup
