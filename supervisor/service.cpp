// A service and its worker instances: spawning, readiness, deadlines, restarts, stopping.
#include "service.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace fdsup {
namespace {

// systemd's FileDescriptorStoreMax is per service too; a worker cannot make
// fdsupd hold more than this.
constexpr std::size_t kFdStoreMax = 1024;
constexpr std::size_t kRecentOutputLines = 50;
constexpr const char *kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string describeExit(const siginfo_t &info)
{
    switch (info.si_code) {
    case CLD_EXITED:
        return "exited with status " + std::to_string(info.si_status);
    case CLD_KILLED:
        return std::string("killed by ") + config::signalName(info.si_status);
    case CLD_DUMPED:
        return std::string("killed by ") + config::signalName(info.si_status) + " (core dumped)";
    default:
        return "ended (code " + std::to_string(info.si_code) + ")";
    }
}

bool exitIsFailure(const siginfo_t &info)
{
    return info.si_code != CLD_EXITED || info.si_status != 0;
}

std::string seconds(Duration d)
{
    return formatDuration(d);
}

int pidfdSendSignal(BorrowedFd pidfd, int sig)
{
    return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0));
}

} // namespace

const char *instanceStateName(InstanceState state)
{
    switch (state) {
    case InstanceState::Starting:
        return "starting";
    case InstanceState::Ready:
        return "ready";
    case InstanceState::Stopping:
        return "stopping";
    case InstanceState::Exited:
        return "exited";
    case InstanceState::Failed:
        return "failed";
    }
    return "unknown";
}

const char *serviceStateName(ServiceState state)
{
    switch (state) {
    case ServiceState::Starting:
        return "starting";
    case ServiceState::Running:
        return "running";
    case ServiceState::Stopping:
        return "stopping";
    case ServiceState::Stopped:
        return "stopped";
    case ServiceState::Failed:
        return "failed";
    }
    return "unknown";
}

Instance::Instance(Service &service, unsigned slot, unsigned generation)
    : service_(service), slot_(slot), generation_(generation)
{}

Instance::~Instance() = default;

nlohmann::json Instance::toJson(Duration now) const
{
    const auto &slot = service_.slots_.at(slot_);
    nlohmann::json j{
        {"index", slot_},
        {"generation", generation_},
        {"pid", pid_},
        {"state", instanceStateName(state_)},
        {"since_usec", since_.count()},
        {"uptime_usec", (now - startedAt_).count()},
        {"restarts", slot.restarts},
        {"status", status_ ? nlohmann::json(*status_) : nlohmann::json()},
        {"last_exit", slot.lastExit.empty() ? nlohmann::json() : nlohmann::json(slot.lastExit)},
        {"last_error", slot.lastError.empty() ? nlohmann::json() : nlohmann::json(slot.lastError)},
    };
    if (errno_) {
        j["errno"] = *errno_;
    }
    return j;
}

Result<std::unique_ptr<Service>> Service::create(ServiceContext &context, const config::ServiceConfig &config)
{
    std::unique_ptr<Service> service(new Service(context, config));

    // Everything a spawn needs that can fail is resolved now, once: a missing
    // user or binary is a start-up error naming the service, not a crash loop.
    auto credentials = resolveCredentials(config);
    if (!credentials) {
        return Error{credentials.error().code,
                     "Service '" + config.name + "': " + credentials.error().message};
    }
    service->credentials_ = std::move(*credentials);

    std::string searchPath = kDefaultPath;
    if (auto it = config.environment.find("PATH"); it != config.environment.end()) {
        searchPath = it->second;
    }
    auto executable = findExecutable(config.command.front(), searchPath);
    if (!executable) {
        return Error{executable.error().code, "Service '" + config.name + "': " + executable.error().message};
    }
    service->executable_ = std::move(*executable);

    bool hasPath = false;
    for (const auto &name : config.passEnvironment) {
        if (const char *value = std::getenv(name.c_str())) {
            service->baseEnvironment_.push_back(name + "=" + value);
            hasPath = hasPath || name == "PATH";
        }
    }
    for (const auto &[name, value] : config.environment) {
        service->baseEnvironment_.push_back(std::string(name).append("=").append(value));
        hasPath = hasPath || name == "PATH";
    }
    if (!hasPath) {
        service->baseEnvironment_.push_back(std::string("PATH=") + kDefaultPath);
    }

    Service *self = service.get();
    auto notify =
        NotifyServer::create(context.loop, context.notifyPrefix + "/notify/" + config.name,
                             [self](NotifyMessage &&message) { self->onNotify(std::move(message)); });
    if (!notify) {
        return Error{notify.error().code, "Service '" + config.name + "': " + notify.error().message};
    }
    service->notify_ = std::move(*notify);
    service->slots_.resize(config.instances);
    return service;
}

Service::Service(ServiceContext &context, config::ServiceConfig config)
    : context_(context), config_(std::move(config))
{}

Service::~Service() = default;

ServiceState Service::state() const
{
    if (failed_) {
        return ServiceState::Failed;
    }
    if (!active_) {
        return instances_.empty() ? ServiceState::Stopped : ServiceState::Stopping;
    }
    const auto ready = std::count_if(instances_.begin(), instances_.end(),
                                     [](const auto &i) { return i->state() == InstanceState::Ready; });
    const auto done = std::count_if(slots_.begin(), slots_.end(), [](const Slot &slot) { return slot.done; });
    return static_cast<std::size_t>(ready + done) >= slots_.size() ? ServiceState::Running
                                                                   : ServiceState::Starting;
}

nlohmann::json Service::toJson() const
{
    const Duration now = context_.loop.now();
    nlohmann::json instances = nlohmann::json::array();
    std::size_t ready = 0;
    for (const auto &instance : instances_) {
        instances.push_back(instance->toJson(now));
        ready += instance->state() == InstanceState::Ready ? 1 : 0;
    }
    // Slots without a live process (waiting for a restart, or given up) are
    // shown too, so an operator sees why an instance is missing.
    for (unsigned i = 0; i < slots_.size(); ++i) {
        const bool live = std::any_of(instances_.begin(), instances_.end(),
                                      [i](const auto &instance) { return instance->slot() == i; });
        if (live) {
            continue;
        }
        const auto &slot = slots_[i];
        instances.push_back({
            {"index", i},
            {"generation", slot.generation},
            {"pid", nullptr},
            {"state", slot.lastFailed ? "failed" : "exited"},
            {"since_usec", nullptr},
            {"uptime_usec", nullptr},
            {"restarts", slot.restarts},
            {"status", nullptr},
            {"last_exit", slot.lastExit.empty() ? nlohmann::json() : nlohmann::json(slot.lastExit)},
            {"last_error", slot.lastError.empty() ? nlohmann::json() : nlohmann::json(slot.lastError)},
        });
    }
    nlohmann::json store = nlohmann::json::array();
    for (const auto &stored : fdStore_) {
        auto it =
            std::find_if(store.begin(), store.end(), [&](const auto &e) { return e["name"] == stored.name; });
        if (it == store.end()) {
            store.push_back({{"name", stored.name}, {"fds", 1}});
        } else {
            (*it)["fds"] = (*it)["fds"].get<int>() + 1;
        }
    }
    return {
        {"name", config_.name},
        {"state", serviceStateName(state())},
        {"wanted", active_ ? slots_.size() : 0},
        {"ready", ready},
        {"restarts", restartsTotal_},
        {"failed_reason", failedReason_.empty() ? nlohmann::json() : nlohmann::json(failedReason_)},
        {"notify_socket", notify_->socketPath()},
        {"notify_dropped", notify_->dropped()},
        {"fdstore", store},
        {"instances", instances},
    };
}

void Service::start()
{
    active_ = true;
    failed_ = false;
    failedReason_.clear();
    restartTimes_.clear();
    for (unsigned i = 0; i < slots_.size(); ++i) {
        auto &slot = slots_[i];
        slot.restartTimer.reset();
        slot.consecutiveFailures = 0;
        slot.done = false;
        const bool live = std::any_of(instances_.begin(), instances_.end(),
                                      [i](const auto &instance) { return instance->slot() == i; });
        if (!live) {
            spawnInstance(i);
        }
    }
    changed();
}

void Service::stop()
{
    active_ = false;
    // An operator's stop ends a failed state too: the service is now stopped.
    failed_ = false;
    failedReason_.clear();
    for (auto &slot : slots_) {
        slot.restartTimer.reset();
    }
    for (auto &instance : instances_) {
        if (instance->state() != InstanceState::Stopping) {
            stopInstance(*instance);
        }
    }
    changed();
}

void Service::spawnInstance(unsigned slotIndex)
{
    auto &slot = slots_.at(slotIndex);
    ++slot.generation;
    auto instance = std::make_unique<Instance>(*this, slotIndex, slot.generation);
    Instance &inst = *instance;

    SpawnRequest request;
    request.executable = executable_;
    request.argv = config_.command;
    request.environment = baseEnvironment_;
    request.environment.push_back("NOTIFY_SOCKET=" + notify_->socketPath());
    request.environment.push_back("FDSUP_SERVICE=" + config_.name);
    request.environment.push_back("FDSUP_INSTANCE=" + std::to_string(slotIndex));
    request.environment.push_back("FDSUP_GENERATION=" + std::to_string(slot.generation));
    inst.watchdogTimeout_ = config_.watchdogTimeout;
    if (config_.watchdogTimeout > Duration::zero()) {
        request.environment.push_back("WATCHDOG_USEC=" + std::to_string(config_.watchdogTimeout.count()));
    }
    for (const auto &name : config_.sockets) {
        const HeldSocket *socket = context_.sockets.find(name);
        if (socket == nullptr) {
            continue; // validated at load; a reload (next issue) keeps them consistent
        }
        for (const auto &fd : socket->fds) {
            request.fds.push_back(fd.borrow());
            request.fdNames.push_back(name);
        }
    }
    for (const auto &stored : fdStore_) {
        request.fds.push_back(stored.fd.borrow());
        request.fdNames.push_back(stored.name);
    }
    request.listenFds = config_.activation == config::Activation::ListenFds || !fdStore_.empty();
    request.workingDirectory = config_.workingDirectory;
    request.uid = credentials_.uid;
    request.gid = credentials_.gid;
    request.supplementaryGroups = credentials_.groups;
    request.umask = config_.umask;
    request.limits = config_.limits;
    if (std::none_of(request.limits.begin(), request.limits.end(),
                     [](const config::ResourceLimit &l) { return l.resource == RLIMIT_NOFILE; })) {
        request.limits.push_back(context_.originalNofile);
    }
    request.noNewPrivileges = config_.noNewPrivileges;
    request.newProcessGroup = true;
    request.captureOutput = config_.output == config::OutputMode::Log;

    const Duration now = context_.loop.now();
    inst.startedAt_ = now;
    inst.since_ = now;
    auto spawned = spawnWorker(request);
    if (!spawned) {
        slot.lastError = spawned.error().message;
        slot.lastFailed = true;
        spdlog::error("Failed to start {}[{}]: {}", config_.name, slotIndex, spawned.error().message);
        scheduleRestart(slotIndex, true);
        changed();
        return;
    }
    inst.pid_ = spawned->pid;
    inst.pidfd_ = std::move(spawned->pidfd);
    inst.stdout_ = std::move(spawned->stdoutPipe);
    inst.stderr_ = std::move(spawned->stderrPipe);
    inst.statusPipe_ = std::move(spawned->statusPipe);

    Instance *ip = &inst;
    auto child = context_.loop.addChild(inst.pidfd_.borrow(),
                                        [this, ip](const siginfo_t &info) { onChildExit(*ip, info); });
    if (!child) {
        // Without a child source fdsupd would never learn of the exit: kill
        // it now rather than hold an unsupervised process.
        pidfdSendSignal(inst.pidfd_.borrow(), SIGKILL);
        siginfo_t ignored{};
        waitid(P_PIDFD, static_cast<id_t>(inst.pidfd_.get()), &ignored, WEXITED);
        slot.lastError = child.error().message;
        slot.lastFailed = true;
        spdlog::error("Failed to watch {}[{}]: {}", config_.name, slotIndex, child.error().message);
        scheduleRestart(slotIndex, true);
        changed();
        return;
    }
    inst.childSource_ = std::move(*child);
    if (inst.statusPipe_) {
        if (auto s = context_.loop.addIo(inst.statusPipe_.borrow(), EPOLLIN,
                                         [this, ip](std::uint32_t) { onStatusPipe(*ip); })) {
            inst.statusSource_ = std::move(*s);
        }
    }
    if (inst.stdout_) {
        if (auto s = context_.loop.addIo(inst.stdout_.borrow(), EPOLLIN,
                                         [this, ip](std::uint32_t) { onOutput(*ip, false); })) {
            inst.stdoutSource_ = std::move(*s);
        }
    }
    if (inst.stderr_) {
        if (auto s = context_.loop.addIo(inst.stderr_.borrow(), EPOLLIN,
                                         [this, ip](std::uint32_t) { onOutput(*ip, true); })) {
            inst.stderrSource_ = std::move(*s);
        }
    }
    armDeadline(inst, config_.startTimeout);
    spdlog::info("Started {}[{}] generation {} as pid {}", config_.name, slotIndex, slot.generation,
                 inst.pid_);
    instances_.push_back(std::move(instance));
}

void Service::onStatusPipe(Instance &instance)
{
    SpawnFailure failure;
    const int r = readSpawnStatus(instance.statusPipe_.borrow(), failure);
    if (r == -EAGAIN || r == -EINTR) {
        return;
    }
    instance.statusSource_.reset();
    instance.statusPipe_.reset();
    if (r == 1) {
        // The child _exits right after reporting; its exit is handled there.
        SpawnRequest shown;
        shown.executable = executable_;
        shown.workingDirectory = config_.workingDirectory;
        if (credentials_.uid) {
            shown.uid = credentials_.uid;
        }
        instance.error_ = describeSpawnFailure(shown, failure);
        instance.failed_ = true;
        spdlog::error("Failed to start {}[{}]: {}", config_.name, instance.slot_, instance.error_);
        return;
    }
    onExecDone(instance);
}

void Service::onExecDone(Instance &instance)
{
    if (instance.execDone_) {
        return;
    }
    instance.execDone_ = true;
    instance.statusSource_.reset();
    instance.statusPipe_.reset();
    if (instance.state_ != InstanceState::Starting) {
        return;
    }
    if (config_.ready == config::Readiness::Started) {
        becomeReady(instance);
    } else {
        armDeadline(instance, config_.readyTimeout);
    }
}

void Service::becomeReady(Instance &instance)
{
    instance.deadline_.reset();
    instance.readyAt_ = context_.loop.now();
    setState(instance, InstanceState::Ready);
    if (instance.watchdogTimeout_ > Duration::zero()) {
        Instance *ip = &instance;
        if (auto t = context_.loop.addTimer(instance.watchdogTimeout_, [this, ip] { onWatchdog(*ip); })) {
            instance.watchdog_ = std::move(*t);
        }
    }
    spdlog::info("{}[{}] (pid {}) is ready", config_.name, instance.slot_, instance.pid_);
    changed();
}

void Service::setState(Instance &instance, InstanceState state)
{
    instance.state_ = state;
    instance.since_ = context_.loop.now();
}

void Service::armDeadline(Instance &instance, Duration after)
{
    if (after == Duration::max()) {
        instance.deadline_.reset();
        return;
    }
    if (instance.deadline_) {
        instance.deadline_.rearm(after);
        return;
    }
    Instance *ip = &instance;
    if (auto t = context_.loop.addTimer(after, [this, ip] { onDeadline(*ip); })) {
        instance.deadline_ = std::move(*t);
    }
}

void Service::onDeadline(Instance &instance)
{
    switch (instance.state_) {
    case InstanceState::Starting:
        failInstance(instance, instance.execDone_
                                   ? "did not become ready within " + seconds(config_.readyTimeout)
                                   : "did not start (exec) within " + seconds(config_.startTimeout));
        break;
    case InstanceState::Stopping:
        spdlog::warn("{}[{}] (pid {}) did not stop within {}, killing it", config_.name, instance.slot_,
                     instance.pid_, seconds(config_.stopTimeout));
        signalInstance(instance, SIGKILL);
        break;
    case InstanceState::Ready:
    case InstanceState::Exited:
    case InstanceState::Failed:
        break;
    }
}

void Service::onWatchdog(Instance &instance)
{
    if (instance.state_ != InstanceState::Ready) {
        return;
    }
    instance.failed_ = true;
    instance.error_ = "watchdog timeout: no WATCHDOG=1 within " + seconds(instance.watchdogTimeout_);
    spdlog::error("{}[{}] (pid {}): {}, aborting it", config_.name, instance.slot_, instance.pid_,
                  instance.error_);
    instance.watchdog_.reset();
    // SIGABRT, as systemd does, so a hung worker leaves a core dump; the stop
    // deadline then applies as for any stop.
    setState(instance, InstanceState::Stopping);
    signalInstance(instance, SIGABRT);
    armDeadline(instance, config_.stopTimeout);
    changed();
}

void Service::failInstance(Instance &instance, std::string reason)
{
    instance.failed_ = true;
    instance.error_ = std::move(reason);
    spdlog::error("{}[{}] (pid {}) {}, killing it", config_.name, instance.slot_, instance.pid_,
                  instance.error_);
    setState(instance, InstanceState::Stopping);
    signalInstance(instance, SIGKILL);
    // SIGKILL cannot be ignored; the deadline only guards against a process
    // stuck in the kernel (D state), and then repeats the kill.
    armDeadline(instance, config_.stopTimeout);
    changed();
}

void Service::signalInstance(Instance &instance, int sig)
{
    if (config_.killMode == config::KillMode::ProcessGroup) {
        // The worker leads its own process group (setpgid in the child).
        if (kill(-instance.pid_, sig) == 0) {
            return;
        }
    }
    if (pidfdSendSignal(instance.pidfd_.borrow(), sig) < 0 && errno != ESRCH) {
        spdlog::warn("Failed to send {} to {}[{}] (pid {}): {}", config::signalName(sig), config_.name,
                     instance.slot_, instance.pid_, errnoText(errno));
    }
}

void Service::stopInstance(Instance &instance)
{
    instance.watchdog_.reset();
    instance.stopRequested_ = true;
    setState(instance, InstanceState::Stopping);
    spdlog::info("Stopping {}[{}] (pid {}) with {}", config_.name, instance.slot_, instance.pid_,
                 config::signalName(config_.stopSignal));
    signalInstance(instance, config_.stopSignal);
    armDeadline(instance, config_.stopTimeout);
}

void Service::onOutput(Instance &instance, bool isStderr)
{
    UniqueFd &fd = isStderr ? instance.stderr_ : instance.stdout_;
    EventSource &source = isStderr ? instance.stderrSource_ : instance.stdoutSource_;
    LineSplitter &lines = isStderr ? instance.stderrLines_ : instance.stdoutLines_;
    std::array<char, 16384> buffer{};
    // Bounded per wake-up so one chatty worker cannot starve the loop.
    for (int round = 0; round < 16; ++round) {
        const ssize_t n = read(fd.get(), buffer.data(), buffer.size());
        if (n > 0) {
            lines.feed(std::string_view(buffer.data(), static_cast<std::size_t>(n)),
                       [&](std::string_view line) { logLine(instance, isStderr, line); });
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        // EOF or an error: the worker closed its end.
        lines.flush([&](std::string_view line) { logLine(instance, isStderr, line); });
        source.reset();
        fd.reset();
        return;
    }
}

void Service::drainOutput(Instance &instance)
{
    // The pipes may still hold the last lines of a worker that just exited
    // (often the most useful ones): read them before the instance goes.
    for (const bool isStderr : {false, true}) {
        UniqueFd &fd = isStderr ? instance.stderr_ : instance.stdout_;
        for (int round = 0; fd && round < 64; ++round) {
            onOutput(instance, isStderr);
        }
        LineSplitter &lines = isStderr ? instance.stderrLines_ : instance.stdoutLines_;
        lines.flush([&](std::string_view line) { logLine(instance, isStderr, line); });
    }
}

void Service::logLine(const Instance &instance, bool isStderr, std::string_view line)
{
    spdlog::info("{}[{}]{} {}", config_.name, instance.slot_, isStderr ? " (stderr):" : ":", line);
    output_.emplace_back(line);
    if (output_.size() > kRecentOutputLines) {
        output_.pop_front();
    }
}

void Service::onChildExit(Instance &instance, const siginfo_t &info)
{
    const std::string how = describeExit(info);
    if (instance.statusPipe_) {
        // The exec report may still be in the pipe when the exit arrives first.
        onStatusPipe(instance);
    }
    drainOutput(instance);
    if (config_.killMode == config::KillMode::ProcessGroup) {
        // Whatever the worker left running in its group goes with it.
        kill(-instance.pid_, SIGKILL);
    }
    const bool stopRequested = instance.stopRequested_;
    const bool requested = stopRequested && !instance.failed_;
    const bool failure = instance.failed_ || (!requested && exitIsFailure(info));
    auto &slot = slots_.at(instance.slot_);
    slot.lastExit = how;
    slot.lastError = instance.error_;
    slot.lastFailed = failure;
    const unsigned slotIndex = instance.slot_;
    const Duration readyFor =
        instance.readyAt_ > Duration::zero() ? context_.loop.now() - instance.readyAt_ : Duration::zero();
    if (failure) {
        spdlog::warn("{}[{}] (pid {}) {}{}", config_.name, slotIndex, instance.pid_, how,
                     instance.error_.empty() ? "" : " (" + instance.error_ + ")");
    } else {
        spdlog::info("{}[{}] (pid {}) {}", config_.name, slotIndex, instance.pid_, how);
    }
    if (readyFor >= config_.restartDelayMax) {
        // It ran long enough to count as healthy: back off from the start again.
        slot.consecutiveFailures = 0;
    }
    remove(instance); // `instance` is gone from here on
    if (active_ && !stopRequested) {
        scheduleRestart(slotIndex, failure);
    }
    changed();
}

void Service::scheduleRestart(unsigned slotIndex, bool failure)
{
    auto &slot = slots_.at(slotIndex);
    if (!active_ || failed_) {
        return;
    }
    const bool restart = config_.restart == config::RestartPolicy::Always ||
                         (config_.restart == config::RestartPolicy::OnFailure && failure);
    if (!restart) {
        if (failure) {
            // Nothing will bring it back: say so rather than look "starting".
            giveUp(config_.name + "[" + std::to_string(slotIndex) + "] " +
                   (slot.lastError.empty() ? slot.lastExit : slot.lastError) + " (restart = never)");
            return;
        }
        slot.done = true;
        if (std::all_of(slots_.begin(), slots_.end(), [](const Slot &s) { return s.done; })) {
            active_ = false; // every worker finished its job: the service is stopped
        }
        return;
    }
    const Duration now = context_.loop.now();
    restartTimes_.push_back(now);
    while (!restartTimes_.empty() && now - restartTimes_.front() > config_.startLimitInterval) {
        restartTimes_.pop_front();
    }
    if (restartTimes_.size() > config_.startLimitBurst) {
        giveUp("restarted " + std::to_string(restartTimes_.size() - 1) + " times within " +
               seconds(config_.startLimitInterval) +
               " (start_limit_burst = " + std::to_string(config_.startLimitBurst) +
               "); last: " + (slot.lastError.empty() ? slot.lastExit : slot.lastError));
        return;
    }
    // Exponential backoff: restart_delay, doubled per consecutive failure, capped.
    Duration delay = config_.restartDelay;
    for (unsigned i = 0; i < slot.consecutiveFailures && delay < config_.restartDelayMax; ++i) {
        delay *= 2;
    }
    delay = std::min(delay, config_.restartDelayMax);
    if (failure) {
        ++slot.consecutiveFailures;
    } else {
        slot.consecutiveFailures = 0;
    }
    ++slot.restarts;
    ++restartsTotal_;
    spdlog::info("Restarting {}[{}] in {}", config_.name, slotIndex, seconds(delay));
    if (auto t = context_.loop.addTimer(delay, [this, slotIndex] {
            slots_.at(slotIndex).restartTimer.reset();
            if (active_ && !failed_) {
                spawnInstance(slotIndex);
                changed();
            }
        })) {
        slot.restartTimer = std::move(*t);
    } else {
        giveUp("cannot schedule a restart: " + t.error().message);
    }
}

void Service::giveUp(std::string reason)
{
    failed_ = true;
    failedReason_ = std::move(reason);
    for (auto &slot : slots_) {
        slot.restartTimer.reset();
    }
    spdlog::error("Service '{}' failed: {}", config_.name, failedReason_);
    changed();
}

void Service::onNotify(NotifyMessage &&message)
{
    Instance *instance = findByPid(message.pid);
    if (instance == nullptr) {
        // Identified by the kernel's credentials, not by what it says: a
        // process that is not one of this service's workers has no say.
        notify_->countDropped();
        spdlog::debug("Ignoring notification for service '{}' from pid {}, not one of its instances",
                      config_.name, message.pid);
        return;
    }
    if (message.status) {
        instance->status_ = message.status;
    }
    if (message.errnoValue) {
        instance->errno_ = message.errnoValue;
    }
    if (message.watchdogUsec && *message.watchdogUsec > 0) {
        instance->watchdogTimeout_ = Duration(static_cast<Duration::rep>(*message.watchdogUsec));
    }
    if (message.fdStore || message.fdStoreRemove) {
        storeFds(message);
    }
    if (message.extendTimeoutUsec &&
        (instance->state_ == InstanceState::Starting || instance->state_ == InstanceState::Stopping)) {
        // EXTEND_TIMEOUT_USEC asks for at least that much more time from now.
        armDeadline(*instance, Duration(static_cast<Duration::rep>(*message.extendTimeoutUsec)));
    }
    if (message.ready && instance->state_ == InstanceState::Starting) {
        // READY=1 proves exec succeeded even if the status pipe's EOF is
        // still queued behind this datagram.
        instance->execDone_ = true;
        instance->statusSource_.reset();
        instance->statusPipe_.reset();
        if (config_.ready == config::Readiness::Notify) {
            becomeReady(*instance);
        }
    }
    if (message.watchdog && instance->watchdog_) {
        instance->watchdog_.rearm(instance->watchdogTimeout_);
    }
    if (message.watchdogTrigger && instance->state_ == InstanceState::Ready) {
        onWatchdog(*instance);
        return;
    }
    if (message.stopping && instance->state_ != InstanceState::Stopping) {
        // The worker is going away on its own; its exit is not a surprise.
        // Only this instance is affected, never fdsupd's own state.
        instance->watchdog_.reset();
        setState(*instance, InstanceState::Stopping);
        armDeadline(*instance, config_.stopTimeout);
        changed();
    }
}

void Service::storeFds(NotifyMessage &message)
{
    const std::string name = message.fdName.empty() ? "stored" : message.fdName;
    if (message.fdStoreRemove) {
        std::erase_if(fdStore_, [&](const StoredFd &s) { return s.name == name; });
        spdlog::debug("Service '{}' removed '{}' from its descriptor store", config_.name, name);
    }
    if (!message.fdStore) {
        return;
    }
    for (auto &fd : message.fds) {
        if (fdStore_.size() >= kFdStoreMax) {
            spdlog::warn("Service '{}' descriptor store is full ({} fds), dropping '{}'", config_.name,
                         kFdStoreMax, name);
            break;
        }
        StoredFd stored{name, std::move(fd), EventSource()};
        if (message.fdPoll) {
            const int raw = stored.fd.get();
            // epoll reports EPOLLHUP/EPOLLERR even with no events asked for.
            if (auto s = context_.loop.addIo(stored.fd.borrow(), 0, [this, raw](std::uint32_t) {
                    std::erase_if(fdStore_, [raw](const StoredFd &held) { return held.fd.get() == raw; });
                })) {
                stored.poll = std::move(*s);
            }
        }
        fdStore_.push_back(std::move(stored));
    }
    spdlog::debug("Service '{}' stored '{}' ({} fds held)", config_.name, name, fdStore_.size());
}

Instance *Service::findByPid(pid_t pid)
{
    for (auto &instance : instances_) {
        if (instance->pid_ == pid) {
            return instance.get();
        }
    }
    return nullptr;
}

void Service::remove(Instance &instance)
{
    std::erase_if(instances_, [&](const auto &p) { return p.get() == &instance; });
}

void Service::changed()
{
    if (onChange_) {
        onChange_(*this);
    }
}

} // namespace fdsup
