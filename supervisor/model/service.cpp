// A service and its worker instances: spawning, readiness, deadlines, restarts, stopping.
#include "model/service.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "common/users.hpp"
#include "model/rollout_state.hpp"

namespace fdsup {
namespace {

// systemd's FileDescriptorStoreMax is per service too; a worker cannot make
// fdsupd hold more than this.
constexpr std::size_t kFdStoreMax = 1024;
// Per service, for `fdsupctl logs` and a failed rollout's report.
constexpr std::size_t kRecentOutputLines = 1000;
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
    case InstanceState::Draining:
        return "draining";
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

const char *rolloutStateName(RolloutState state)
{
    switch (state) {
    case RolloutState::Running:
        return "running";
    case RolloutState::RollingBack:
        return "rolling-back";
    case RolloutState::Succeeded:
        return "succeeded";
    case RolloutState::Failed:
        return "failed";
    case RolloutState::Cancelled:
        return "cancelled";
    }
    return "unknown";
}

std::int64_t realtimeUsec()
{
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

nlohmann::json toJson(const LogEntry &entry)
{
    return {{"time_usec", entry.realtimeUsec},
            {"index", entry.index},
            {"pid", entry.pid},
            {"generation", entry.generation},
            {"stream", entry.isStderr ? "stderr" : "stdout"},
            {"text", entry.text}};
}

Result<std::shared_ptr<const Profile>> makeProfile(const config::ServiceConfig &config, unsigned generation)
{
    auto profile = std::make_shared<Profile>();
    profile->generation = generation;
    profile->config = config;

    // Everything a spawn needs that can fail is resolved now, once: a missing
    // user or binary is an error naming the service, not a crash loop.
    auto credentials = resolveCredentials(config);
    if (!credentials) {
        return Error{credentials.error().code,
                     "Service '" + config.name + "': " + credentials.error().message};
    }
    profile->credentials = std::move(*credentials);

    std::string searchPath = kDefaultPath;
    if (auto it = config.environment.find("PATH"); it != config.environment.end()) {
        searchPath = it->second;
    }
    auto executable = findExecutable(config.command.front(), searchPath);
    if (!executable) {
        return Error{executable.error().code, "Service '" + config.name + "': " + executable.error().message};
    }
    profile->executable = std::move(*executable);
    profile->executableFd = UniqueFd(open(profile->executable.c_str(), O_PATH | O_CLOEXEC));
    if (!profile->executableFd) {
        return errnoError(errno, "Service '" + config.name + "': cannot open " + profile->executable);
    }

    bool hasPath = false;
    for (const auto &name : config.passEnvironment) {
        if (const char *value = std::getenv(name.c_str())) {
            profile->baseEnvironment.push_back(name + "=" + value);
            hasPath = hasPath || name == "PATH";
        }
    }
    for (const auto &[name, value] : config.environment) {
        profile->baseEnvironment.push_back(std::string(name).append("=").append(value));
        hasPath = hasPath || name == "PATH";
    }
    if (!hasPath) {
        profile->baseEnvironment.push_back(std::string("PATH=") + kDefaultPath);
    }
    for (const auto &user : config.activationUsers) {
        auto uid = lookUpUid(user);
        if (!uid) {
            return Error{uid.error().code,
                         "Service '" + config.name + "': activation_users: " + uid.error().message};
        }
        profile->activationUids.push_back(*uid);
    }
    for (const auto &group : config.activationGroups) {
        auto gid = lookUpGroup(group);
        if (!gid) {
            return Error{gid.error().code,
                         "Service '" + config.name + "': activation_groups: " + gid.error().message};
        }
        profile->activationGids.push_back(*gid);
    }
    return std::shared_ptr<const Profile>(std::move(profile));
}

Instance::Instance(Service &service, unsigned slot, std::shared_ptr<const Profile> profile)
    : service_(service), slot_(slot), profile_(std::move(profile)), id_(service.context_.nextInstanceId++)
{
    peer_.instance = this;
}

Instance::~Instance() = default;

nlohmann::json Instance::toJson(Duration now) const
{
    // A candidate or a retiring instance does not own its slot's history.
    const Service::Slot *slot = candidate_ || retiring_ ? nullptr : service_.slotOf(*this);
    auto text = [](const std::string &s) {
        return s.empty() ? nlohmann::json() : nlohmann::json(s);
    };
    nlohmann::json j{
        {"index", slot_},
        {"generation", profile_->generation},
        {"pid", pid_},
        {"state", instanceStateName(state_)},
        {"since_usec", since_.count()},
        {"uptime_usec", (now - startedAt_).count()},
        {"restarts", slot != nullptr ? slot->restarts : 0},
        {"status", status_ ? nlohmann::json(*status_) : nlohmann::json()},
        {"last_exit", slot != nullptr ? text(slot->lastExit) : nlohmann::json()},
        {"last_error", slot != nullptr ? text(slot->lastError) : nlohmann::json()},
    };
    if (errno_) {
        j["errno"] = *errno_;
    }
    return j;
}

Result<std::unique_ptr<Service>> Service::create(ServiceContext &context, const config::ServiceConfig &config)
{
    auto profile = makeProfile(config, 1);
    if (!profile) {
        return profile.error();
    }
    std::unique_ptr<Service> service(new Service(context, std::move(*profile)));
    Service *self = service.get();
    auto notify =
        NotifyServer::create(context.loop, context.notifyPrefix + "/notify/" + config.name,
                             [self](NotifyMessage &&message) { self->onNotify(std::move(message)); });
    if (!notify) {
        return Error{notify.error().code, "Service '" + config.name + "': " + notify.error().message};
    }
    service->notify_ = std::move(*notify);
    if (auto opened = service->openActivationSocket(); !opened) {
        return Error{opened.error().code, "Service '" + config.name + "': " + opened.error().message};
    }
    service->slots_.resize(config.instances);
    return service;
}

Service::Service(ServiceContext &context, std::shared_ptr<const Profile> profile)
    : context_(context), profile_(std::move(profile)), nextGeneration_(profile_->generation + 1)
{}

Service::~Service()
{
    context_.heldTotal -= held_.size();
    if (!activationPath_.empty()) {
        // Only the file this service created: someone may have replaced it.
        struct stat st {};
        if (lstat(activationPath_.c_str(), &st) == 0 && st.st_dev == activationDev_ &&
            st.st_ino == activationIno_) {
            unlink(activationPath_.c_str());
        }
    }
}

ServiceState Service::state() const
{
    if (failed_) {
        return ServiceState::Failed;
    }
    if (!active_) {
        return instances_.empty() ? ServiceState::Stopped : ServiceState::Stopping;
    }
    // Running when every slot has a ready instance (of either generation
    // during a rollout) or finished its job.
    for (unsigned i = 0; i < slots_.size(); ++i) {
        const bool up =
            slots_[i].done || std::any_of(instances_.begin(), instances_.end(), [i](const auto &p) {
                return p->slot_ == i && !p->retiring_ && p->state_ == InstanceState::Ready;
            });
        if (!up) {
            return ServiceState::Starting;
        }
    }
    return ServiceState::Running;
}

nlohmann::json Service::toJson() const
{
    const Duration now = context_.loop.now();
    nlohmann::json instances = nlohmann::json::array();
    std::size_t ready = 0;
    for (const auto &instance : instances_) {
        instances.push_back(instance->toJson(now));
        ready += instance->state() == InstanceState::Ready && !instance->retiring_ ? 1 : 0;
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
            {"generation", profile_->generation},
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
        {"name", name()},
        {"state", serviceStateName(state())},
        {"generation", profile_->generation},
        {"wanted", active_ ? slots_.size() : 0},
        {"ready", ready},
        {"restarts", restartsTotal_},
        {"failed_reason", failedReason_.empty() ? nlohmann::json() : nlohmann::json(failedReason_)},
        {"notify_socket", notify_->socketPath()},
        {"notify_dropped", notify_->dropped()},
        {"fdstore", store},
        {"instances", instances},
        {"activation_socket", profile_->config.activationSocket
                                  ? nlohmann::json(*profile_->config.activationSocket)
                                  : nlohmann::json()},
        {"external", externalJson()},
        {"rollout", rollout_ ? rolloutToJson(*rollout_) : nlohmann::json()},
    };
}

void Service::start()
{
    if (rollout_) {
        // A rollout brings the service up as its new generation already.
        changed();
        return;
    }
    active_ = true;
    failed_ = false;
    failedReason_.clear();
    restartTimes_.clear();
    for (unsigned i = 0; i < slots_.size(); ++i) {
        auto &slot = slots_[i];
        slot.restartTimer.reset();
        slot.consecutiveFailures = 0;
        slot.done = false;
        if (primaryOf(i) == nullptr) {
            spawnInstance(i);
        }
    }
    changed();
}

void Service::stop()
{
    if (rollout_) {
        // Everything is going down: nothing to roll back to.
        abortRollout("the service was stopped");
    }
    active_ = false;
    // An operator's stop ends a failed state too: the service is now stopped.
    failed_ = false;
    failedReason_.clear();
    for (auto &slot : slots_) {
        slot.restartTimer.reset();
    }
    for (auto &instance : instances_) {
        if (instance->state() != InstanceState::Stopping && instance->state() != InstanceState::Draining) {
            stopInstance(*instance);
        }
    }
    // A closed channel tells an external worker to finish and exit.
    closeExternal("the service was stopped");
    changed();
}

void Service::scale(unsigned instances)
{
    const unsigned before = wanted();
    if (!active_) {
        slots_.resize(instances); // applies at the next start
        changed();
        return;
    }
    if (instances > before) {
        slots_.resize(instances);
        spdlog::info("Scaling {} up from {} to {} instances", name(), before, instances);
        for (unsigned i = before; i < instances; ++i) {
            spawnInstance(i);
        }
    } else if (instances < before) {
        spdlog::info("Scaling {} down from {} to {} instances", name(), before, instances);
        for (auto &instance : instances_) {
            if (instance->slot_ >= instances && !instance->retiring_) {
                drainInstance(*instance);
            }
        }
        slots_.resize(instances);
    }
    changed();
}

bool Service::settled() const
{
    return std::none_of(instances_.begin(), instances_.end(), [](const auto &p) { return p->retiring_; });
}

Instance *Service::primaryOf(unsigned slot)
{
    for (auto &instance : instances_) {
        if (instance->slot_ == slot && !instance->candidate_ && !instance->retiring_) {
            return instance.get();
        }
    }
    return nullptr;
}

Service::Slot *Service::slotOf(const Instance &instance)
{
    return instance.slot_ < slots_.size() ? &slots_[instance.slot_] : nullptr;
}

Instance *Service::findById(std::uint64_t id)
{
    for (auto &instance : instances_) {
        if (instance->id_ == id) {
            return instance.get();
        }
    }
    return nullptr;
}

std::vector<std::string> Service::outputOf(pid_t pid, std::size_t lines) const
{
    std::vector<std::string> out;
    for (auto it = output_.rbegin(); it != output_.rend() && out.size() < lines; ++it) {
        if (it->pid == pid) {
            out.push_back(it->text);
        }
    }
    std::reverse(out.begin(), out.end());
    return out;
}

Instance *Service::spawnInstance(unsigned slotIndex, const std::shared_ptr<const Profile> &profile,
                                 bool candidate)
{
    const config::ServiceConfig &config = profile->config;
    auto instance = std::make_unique<Instance>(*this, slotIndex, profile);
    Instance &inst = *instance;
    inst.candidate_ = candidate;

    SpawnRequest request;
    request.executable = profile->executable;
    request.executableFd = profile->executableFd.borrow();
    request.argv = config.command;
    request.environment = profile->baseEnvironment;
    request.environment.push_back("NOTIFY_SOCKET=" + notify_->socketPath());
    request.environment.push_back("FDSUP_SERVICE=" + config.name);
    request.environment.push_back("FDSUP_INSTANCE=" + std::to_string(slotIndex));
    request.environment.push_back("FDSUP_GENERATION=" + std::to_string(profile->generation));
    inst.watchdogTimeout_ = config.watchdogTimeout;
    if (config.watchdogTimeout > Duration::zero()) {
        request.environment.push_back("WATCHDOG_USEC=" + std::to_string(config.watchdogTimeout.count()));
    }
    // activation = "channel": the worker asks for its listeners over the channel.
    for (const auto &socketName :
         config.activation == config::Activation::ListenFds ? config.sockets : std::vector<std::string>{}) {
        const HeldSocket *socket = context_.sockets.find(socketName);
        if (socket == nullptr) {
            continue; // validated at load; a reload binds new sockets before services use them
        }
        for (const auto &fd : socket->fds) {
            request.fds.push_back(fd.borrow());
            request.fdNames.push_back(socketName);
        }
    }
    for (const auto &stored : fdStore_) {
        request.fds.push_back(stored.fd.borrow());
        request.fdNames.push_back(stored.name);
    }
    request.listenFds = config.activation == config::Activation::ListenFds || !fdStore_.empty();
    UniqueFd workerEnd; // the worker's end of its channel, until it is spawned
    if (wantsChannel(config)) {
        auto channel = WorkerChannel::create(
            context_.loop, workerEnd,
            [this, peer = &inst.peer_](ChannelMessage &&message) {
                onChannelMessage(*peer, std::move(message));
            },
            [this, peer = &inst.peer_](const std::string &why) { onChannelClosed(*peer, why); });
        if (!channel) {
            lastSpawnError_ = channel.error().message;
            spdlog::error("Failed to start {}[{}]: {}", config.name, slotIndex, channel.error().message);
            return nullptr;
        }
        inst.peer_.channel = std::move(*channel);
        // Right after the listeners and stored fds, not counted in LISTEN_FDS.
        request.environment.push_back("FDSUP_CHANNEL=" + std::to_string(3 + request.fds.size()));
        request.extraFds.push_back(workerEnd.borrow());
    }
    request.workingDirectory = config.workingDirectory;
    request.uid = profile->credentials.uid;
    request.gid = profile->credentials.gid;
    request.supplementaryGroups = profile->credentials.groups;
    request.umask = config.umask;
    request.limits = config.limits;
    if (std::none_of(request.limits.begin(), request.limits.end(),
                     [](const config::ResourceLimit &l) { return l.resource == RLIMIT_NOFILE; })) {
        request.limits.push_back(context_.originalNofile);
    }
    request.noNewPrivileges = config.noNewPrivileges;
    request.newProcessGroup = true;
    request.captureOutput = config.output == config::OutputMode::Log;

    const Duration now = context_.loop.now();
    inst.startedAt_ = now;
    inst.since_ = now;
    auto failedToSpawn = [&](const std::string &what, const std::string &message) -> Instance * {
        spdlog::error("Failed to {} {}[{}]: {}", what, config.name, slotIndex, message);
        lastSpawnError_ = message;
        if (!candidate) {
            auto &slot = slots_.at(slotIndex);
            slot.lastError = message;
            slot.lastFailed = true;
            scheduleRestart(slotIndex, true);
            changed();
        }
        return nullptr;
    };
    auto spawned = spawnWorker(request);
    if (!spawned) {
        return failedToSpawn("start", spawned.error().message);
    }
    inst.pid_ = spawned->pid;
    inst.peer_.pid = spawned->pid;
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
        return failedToSpawn("watch", child.error().message);
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
    armDeadline(inst, config.startTimeout);
    spdlog::info("Started {}[{}] generation {} as pid {}", config.name, slotIndex, profile->generation,
                 inst.pid_);
    instances_.push_back(std::move(instance));
    return ip;
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
        shown.executable = instance.profile_->executable;
        shown.workingDirectory = instance.config().workingDirectory;
        if (instance.profile_->credentials.uid) {
            shown.uid = instance.profile_->credentials.uid;
        }
        instance.error_ = describeSpawnFailure(shown, failure);
        instance.failed_ = true;
        spdlog::error("Failed to start {}[{}]: {}", name(), instance.slot_, instance.error_);
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
    if (instance.config().ready == config::Readiness::Started) {
        becomeReady(instance);
    } else {
        armDeadline(instance, instance.config().readyTimeout);
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
    spdlog::info("{}[{}] (pid {}) is ready", name(), instance.slot_, instance.pid_);
    if (rollout_) {
        // A replacement got ready, or an instance a rollback restored.
        advanceRollout();
    }
    deliverHeld(); // a replacement to adopt what is held
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
        failInstance(instance,
                     instance.execDone_
                         ? "did not become ready within " + seconds(instance.config().readyTimeout)
                         : "did not start (exec) within " + seconds(instance.config().startTimeout));
        break;
    case InstanceState::Stopping:
        spdlog::warn("{}[{}] (pid {}) did not stop within {}, killing it", name(), instance.slot_,
                     instance.pid_, seconds(instance.config().stopTimeout));
        signalInstance(instance, SIGKILL);
        break;
    case InstanceState::Draining:
        spdlog::warn("{}[{}] (pid {}) did not finish draining within {}, killing it", name(), instance.slot_,
                     instance.pid_, seconds(instance.config().drainTimeout));
        setState(instance, InstanceState::Stopping);
        signalInstance(instance, SIGKILL);
        armDeadline(instance, instance.config().stopTimeout);
        changed();
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
    spdlog::error("{}[{}] (pid {}): {}, aborting it", name(), instance.slot_, instance.pid_, instance.error_);
    instance.watchdog_.reset();
    // SIGABRT, as systemd does, so a hung worker leaves a core dump; the stop
    // deadline then applies as for any stop.
    setState(instance, InstanceState::Stopping);
    signalInstance(instance, SIGABRT);
    armDeadline(instance, instance.config().stopTimeout);
    changed();
}

void Service::failInstance(Instance &instance, std::string reason)
{
    instance.failed_ = true;
    instance.error_ = std::move(reason);
    spdlog::error("{}[{}] (pid {}) {}, killing it", name(), instance.slot_, instance.pid_, instance.error_);
    setState(instance, InstanceState::Stopping);
    signalInstance(instance, SIGKILL);
    // SIGKILL cannot be ignored; the deadline only guards against a process
    // stuck in the kernel (D state), and then repeats the kill.
    armDeadline(instance, instance.config().stopTimeout);
    changed();
}

void Service::signalInstance(Instance &instance, int sig)
{
    if (instance.config().killMode == config::KillMode::ProcessGroup) {
        // The worker leads its own process group (setpgid in the child).
        if (kill(-instance.pid_, sig) == 0) {
            return;
        }
    }
    if (pidfdSendSignal(instance.pidfd_.borrow(), sig) < 0 && errno != ESRCH) {
        spdlog::warn("Failed to send {} to {}[{}] (pid {}): {}", config::signalName(sig), name(),
                     instance.slot_, instance.pid_, errnoText(errno));
    }
}

void Service::stopInstance(Instance &instance)
{
    instance.watchdog_.reset();
    instance.stopRequested_ = true;
    setState(instance, InstanceState::Stopping);
    spdlog::info("Stopping {}[{}] (pid {}) with {}", name(), instance.slot_, instance.pid_,
                 config::signalName(instance.config().stopSignal));
    signalInstance(instance, instance.config().stopSignal);
    armDeadline(instance, instance.config().stopTimeout);
}

void Service::drainInstance(Instance &instance)
{
    instance.watchdog_.reset();
    instance.stopRequested_ = true;
    instance.retiring_ = true;
    setState(instance, InstanceState::Draining);
    // Over the channel when the worker joined it for handoff: it then hands
    // its connections over instead of only finishing them.
    if (sendDrain(instance)) {
        spdlog::info("Draining {}[{}] (pid {}) over its channel", name(), instance.slot_, instance.pid_);
    } else {
        spdlog::info("Draining {}[{}] (pid {}) with {}", name(), instance.slot_, instance.pid_,
                     config::signalName(instance.config().drainSignal));
        signalInstance(instance, instance.config().drainSignal);
    }
    armDeadline(instance, instance.config().drainTimeout);
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
    spdlog::info("{}[{}]{} {}", name(), instance.slot_, isStderr ? " (stderr):" : ":", line);
    output_.push_back(LogEntry{realtimeUsec(), instance.slot_, instance.pid_, instance.profile_->generation,
                               isStderr, std::string(line)});
    if (output_.size() > kRecentOutputLines) {
        output_.pop_front();
    }
    if (onOutputLine_) {
        onOutputLine_(*this, output_.back());
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
    if (instance.peer_.channel) {
        // Its exit may be seen before the handoffs it sent just before dying:
        // they are the worker's to give, so they are taken first.
        instance.peer_.channel->readPending(-1);
    }
    if (instance.config().killMode == config::KillMode::ProcessGroup) {
        // Whatever the worker left running in its group goes with it.
        kill(-instance.pid_, SIGKILL);
    }
    if (instance.candidate_) {
        // A replacement that exits before its rollout completed fails it.
        onRolloutInstanceExit(instance, how); // `instance` is gone from here on
        changed();
        return;
    }
    if (instance.retiring_) {
        // Drained or stopped for good: expected, and nothing to restart.
        spdlog::info("{}[{}] (pid {}) {}", name(), instance.slot_, instance.pid_, how);
        remove(instance);
        advanceRollout();
        changed();
        return;
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
        spdlog::warn("{}[{}] (pid {}) {}{}", name(), slotIndex, instance.pid_, how,
                     instance.error_.empty() ? "" : " (" + instance.error_ + ")");
    } else {
        spdlog::info("{}[{}] (pid {}) {}", name(), slotIndex, instance.pid_, how);
    }
    if (readyFor >= instance.config().restartDelayMax) {
        // It ran long enough to count as healthy: back off from the start again.
        slot.consecutiveFailures = 0;
    }
    remove(instance); // `instance` is gone from here on
    if (active_ && !stopRequested) {
        scheduleRestart(slotIndex, failure);
    }
    advanceRollout();
    changed();
}

void Service::scheduleRestart(unsigned slotIndex, bool failure)
{
    auto &slot = slots_.at(slotIndex);
    if (!active_ || failed_) {
        return;
    }
    const bool restart = config().restart == config::RestartPolicy::Always ||
                         (config().restart == config::RestartPolicy::OnFailure && failure);
    if (!restart) {
        if (failure) {
            // Nothing will bring it back: say so rather than look "starting".
            giveUp(name() + "[" + std::to_string(slotIndex) + "] " +
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
    while (!restartTimes_.empty() && now - restartTimes_.front() > config().startLimitInterval) {
        restartTimes_.pop_front();
    }
    if (restartTimes_.size() > config().startLimitBurst) {
        giveUp("restarted " + std::to_string(restartTimes_.size() - 1) + " times within " +
               seconds(config().startLimitInterval) +
               " (start_limit_burst = " + std::to_string(config().startLimitBurst) +
               "); last: " + (slot.lastError.empty() ? slot.lastExit : slot.lastError));
        return;
    }
    // Exponential backoff: restart_delay, doubled per consecutive failure, capped.
    Duration delay = config().restartDelay;
    for (unsigned i = 0; i < slot.consecutiveFailures && delay < config().restartDelayMax; ++i) {
        delay *= 2;
    }
    delay = std::min(delay, config().restartDelayMax);
    if (failure) {
        ++slot.consecutiveFailures;
    } else {
        slot.consecutiveFailures = 0;
    }
    ++slot.restarts;
    ++restartsTotal_;
    spdlog::info("Restarting {}[{}] in {}", name(), slotIndex, seconds(delay));
    if (auto t = context_.loop.addTimer(delay, [this, slotIndex] {
            slots_.at(slotIndex).restartTimer.reset();
            // A rollout may have filled the slot meanwhile.
            const bool taken = std::any_of(instances_.begin(), instances_.end(), [slotIndex](const auto &p) {
                return p->slot_ == slotIndex && !p->retiring_;
            });
            if (active_ && !failed_ && !taken) {
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
    spdlog::error("Service '{}' failed: {}", name(), failedReason_);
    changed();
}

void Service::onNotify(NotifyMessage &&message)
{
    Instance *instance = findByPid(message.pid);
    if (instance == nullptr) {
        // Identified by the kernel's credentials, not by what it says: a
        // process that is not one of this service's workers has no say.
        notify_->countDropped();
        spdlog::debug("Ignoring notification for service '{}' from pid {}, not one of its instances", name(),
                      message.pid);
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
        (instance->state_ == InstanceState::Starting || instance->state_ == InstanceState::Draining ||
         instance->state_ == InstanceState::Stopping)) {
        // EXTEND_TIMEOUT_USEC asks for at least that much more time from now.
        armDeadline(*instance, Duration(static_cast<Duration::rep>(*message.extendTimeoutUsec)));
    }
    if (message.ready && instance->state_ == InstanceState::Starting) {
        // READY=1 proves exec succeeded even if the status pipe's EOF is
        // still queued behind this datagram.
        instance->execDone_ = true;
        instance->statusSource_.reset();
        instance->statusPipe_.reset();
        if (instance->config().ready == config::Readiness::Notify) {
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
    if (message.stopping && instance->state_ != InstanceState::Stopping &&
        instance->state_ != InstanceState::Draining) {
        // The worker is going away on its own; its exit is not a surprise.
        // Only this instance is affected, never fdsupd's own state.
        instance->watchdog_.reset();
        setState(*instance, InstanceState::Stopping);
        armDeadline(*instance, instance->config().stopTimeout);
        changed();
    }
}

void Service::storeFds(NotifyMessage &message)
{
    const std::string fdName = message.fdName.empty() ? "stored" : message.fdName;
    if (message.fdStoreRemove) {
        std::erase_if(fdStore_, [&](const StoredFd &s) { return s.name == fdName; });
        spdlog::debug("Service '{}' removed '{}' from its descriptor store", name(), fdName);
    }
    if (!message.fdStore) {
        return;
    }
    for (auto &fd : message.fds) {
        if (fdStore_.size() >= kFdStoreMax) {
            spdlog::warn("Service '{}' descriptor store is full ({} fds), dropping '{}'", name(), kFdStoreMax,
                         fdName);
            break;
        }
        StoredFd stored{fdName, std::move(fd), EventSource()};
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
    spdlog::debug("Service '{}' stored '{}' ({} fds held)", name(), fdName, fdStore_.size());
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
