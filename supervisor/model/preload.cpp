// The preload socket of a wrapped service: the shim in its processes connects, is admitted by process tree
// and uid, gets the listeners and reports which it claimed.
#include "model/preload.hpp"

#include <algorithm>
#include <cerrno>
#include <set>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "io/proc.hpp"

namespace fdsup {
namespace {

const PreloadOwner *ownerWithPid(pid_t pid, const std::vector<PreloadOwner> &owners)
{
    for (const auto &owner : owners) {
        if (owner.mainPid == pid || owner.spawnPid == pid) {
            return &owner;
        }
    }
    return nullptr;
}

std::string joinNames(const std::vector<std::string> &names)
{
    std::string out;
    for (const auto &name : names) {
        out += (out.empty() ? "'" : ", '") + name + "'";
    }
    return out;
}

} // namespace

const PreloadOwner *ownerOfProcess(pid_t pid, const std::vector<PreloadOwner> &owners)
{
    const pid_t self = getpid();
    std::set<pid_t> seen; // a pid reused while we walk could make a cycle
    pid_t at = pid;
    pid_t topGroup = 0;
    pid_t top = 0;
    while (at > 1 && at != self && seen.insert(at).second) {
        if (const PreloadOwner *owner = ownerWithPid(at, owners)) {
            return owner;
        }
        const auto stat = readProcStat(at);
        if (!stat) {
            return nullptr; // gone: nothing to vouch for it
        }
        if (stat->ppid == self) {
            topGroup = stat->pgid; // fdsupd's own child: adopted as a subreaper, or an instance
            top = at;
        }
        at = stat->ppid;
    }
    // A daemonised process reparented to fdsupd keeps the process group of
    // the instance it came from unless it called setsid().
    if (at != self || top == 0) {
        return nullptr;
    }
    for (const auto &owner : owners) {
        if (owner.spawnPid == topGroup) {
            return &owner;
        }
    }
    // One that called setsid() too (a daemon, before fdsupd follows it
    // through its pid file): every process reparented to fdsupd descends from
    // an instance, and the environment it was started with says which.
    const auto service = startEnvironment(top, "FDSUP_SERVICE");
    const auto slot = startEnvironment(top, "FDSUP_INSTANCE");
    const auto generation = startEnvironment(top, "FDSUP_GENERATION");
    for (const auto &owner : owners) {
        if (service == owner.profile->config.name && slot == std::to_string(owner.slot) &&
            generation == std::to_string(owner.profile->generation)) {
            return &owner;
        }
    }
    return nullptr;
}

std::vector<ListenerReport> adoptionReport(const std::vector<std::string> &listeners,
                                           const Adoption &adoption,
                                           const std::optional<std::string> &blocker,
                                           const std::optional<std::string> &missingLibrary)
{
    std::vector<ListenerReport> out;
    for (const auto &name : listeners) {
        ListenerReport report;
        report.name = name;
        if (auto it = adoption.claimedBy.find(name); it != adoption.claimedBy.end()) {
            report.adoptedBy = it->second;
            out.push_back(std::move(report));
            continue;
        }
        report.pending = !adoption.deadlinePassed && !blocker;
        if (blocker) {
            report.reason = *blocker;
        } else if (adoption.connections == 0 && missingLibrary) {
            report.reason = "the preload library " + *missingLibrary + " does not exist";
        } else if (adoption.connections == 0) {
            report.reason = report.pending ? "waiting: the shim has not connected yet"
                                           : "the shim never connected: the program never bound a matching "
                                             "address (or never loaded the shim)";
        } else {
            report.reason = report.pending
                                ? "waiting: the shim connected, '" + name + "' is not claimed yet"
                                : "the shim connected but the program never bound listener '" + name + "'";
        }
        out.push_back(std::move(report));
    }
    return out;
}

PreloadConnection::PreloadConnection(PreloadSocket &socket, const PreloadOwner &owner,
                                     const Peer &credentials)
    : socket_(socket), instance_(owner.id), slot_(owner.slot), profile_(owner.profile)
{
    setPid(credentials.pid);
}

std::string PreloadConnection::describe() const
{
    return profile_->config.name + "[" + std::to_string(slot_) + "] preload shim (pid " +
           std::to_string(pid()) + ")";
}

void PreloadConnection::channelReady(const std::string & /*status*/)
{
    spdlog::debug("{} sent READY, ignored: a wrapped service is ready by its claims", describe());
}

void PreloadConnection::channelClaimed(const std::vector<std::string> &names)
{
    socket_.claimed(*this, names);
}

Result<std::unique_ptr<PreloadSocket>> PreloadSocket::open(EventLoop &loop, Clock &clock,
                                                           const std::string &address, PreloadHost &host)
{
    std::unique_ptr<PreloadSocket> socket(new PreloadSocket(loop, clock, host, address));
    PreloadSocket *self = socket.get();
    auto listener =
        UnixListener::bind(loop, "unix-seqpacket:" + address, 0666, host.preloadService() + "'s preload shim",
                           [self](UniqueFd fd) { self->admit(std::move(fd)); });
    if (!listener) {
        return Error{listener.error().code, "preload socket: " + listener.error().message};
    }
    socket->listener_ = std::move(*listener);
    spdlog::debug("{}: the preload shim connects to {}", host.preloadService(), address);
    return socket;
}

void PreloadSocket::track(std::uint64_t instance, const std::string &who,
                          const std::vector<std::string> &listeners, Duration deadline)
{
    Record &record = records_[instance];
    record.who = who;
    record.listeners = listeners;
    if (auto timer = clock_.startTimer(deadline, [this, instance] { deadlinePassed(instance); })) {
        record.deadline = std::move(*timer);
    }
}

void PreloadSocket::forget(std::uint64_t instance)
{
    records_.erase(instance);
    for (auto &connection : connections_) {
        if (connection->instance() == instance && connection->channel() != nullptr &&
            connection->channel()->isOpen()) {
            connection->channel()->close("its instance is gone");
        }
    }
    reapLater();
}

const Adoption *PreloadSocket::adoption(std::uint64_t instance) const
{
    const auto it = records_.find(instance);
    return it == records_.end() ? nullptr : &it->second.adoption;
}

void PreloadSocket::deadlinePassed(std::uint64_t instance)
{
    auto it = records_.find(instance);
    if (it == records_.end()) {
        return;
    }
    Record &record = it->second;
    record.deadline.reset();
    record.adoption.deadlinePassed = true;
    for (const auto &report : adoptionReport(record.listeners, record.adoption, std::nullopt, std::nullopt)) {
        if (report.adoptedBy == 0) {
            // Its clients queue in the kernel until the backlog fills, and
            // nobody accepts them: said loudly, not left silent.
            spdlog::warn("{}: listener '{}' not adopted: {}; connections to it wait unanswered", record.who,
                         report.name, report.reason);
        }
    }
}

void PreloadSocket::claimed(PreloadConnection &connection, const std::vector<std::string> &names)
{
    auto it = records_.find(connection.instance());
    if (it == records_.end()) {
        return;
    }
    Record &record = it->second;
    std::vector<std::string> fresh;
    for (const auto &name : names) {
        if (std::find(record.listeners.begin(), record.listeners.end(), name) == record.listeners.end()) {
            spdlog::warn("{} claims listener '{}', which the service does not have, ignoring it",
                         connection.describe(), name);
            continue;
        }
        if (record.adoption.claimedBy.emplace(name, connection.pid()).second) {
            fresh.push_back(name);
        }
    }
    if (fresh.empty()) {
        return;
    }
    spdlog::info("{}: listener{} {} adopted by pid {}", record.who, fresh.size() == 1 ? "" : "s",
                 joinNames(fresh), connection.pid());
    if (record.adoption.claimedBy.size() == record.listeners.size()) {
        record.deadline.reset();
        host_.onPreloadBound(connection.instance()); // may forget the record: nothing after this
    }
}

void PreloadSocket::closed(PreloadConnection &connection, const std::string &why)
{
    if (auto it = records_.find(connection.instance());
        it != records_.end() && it->second.adoption.open > 0) {
        --it->second.adoption.open;
    }
    host_.onPreloadClosed(connection, why);
    reapLater();
}

void PreloadSocket::admit(UniqueFd fd)
{
    const std::string &service = host_.preloadService();
    Peer peer;
    if (const int r = peerOf(fd.borrow(), peer); r < 0) {
        spdlog::warn("{}: cannot get the credentials of a preload shim: {}, closing it", service,
                     errnoText(r));
        return;
    }
    const std::vector<PreloadOwner> owners = host_.preloadOwners();
    const PreloadOwner *owner = host_.preloadAdmitting() ? ownerOfProcess(peer.pid, owners) : nullptr;
    int code = 0;
    std::string why;
    if (!host_.preloadAdmitting()) {
        code = ESHUTDOWN;
        why = "service '" + service + "' is stopped";
    } else if (owner == nullptr) {
        code = EACCES;
        why = "pid " + std::to_string(peer.pid) + " is not a process of service " + service;
    } else if (const uid_t uid = owner->profile->credentials.uid.value_or(getuid()); peer.uid != uid) {
        code = EACCES;
        why = "pid " + std::to_string(peer.pid) + " runs as uid " + std::to_string(peer.uid) + ", service " +
              service + " as uid " + std::to_string(uid);
    } else if (records_.count(owner->id) != 0 && records_[owner->id].adoption.open >= kMaxPerInstance) {
        code = EUSERS;
        why = "instance " + std::to_string(owner->slot) + " of service " + service + " has " +
              std::to_string(kMaxPerInstance) + " preload connections already (the limit)";
    }
    if (code != 0) {
        spdlog::warn("{}: refused a preload shim, {}: {}", service, describePeer(peer), why);
        rejected_.reject(std::move(fd), code, why);
        return;
    }
    if (auto served = serve(std::move(fd), *owner, peer); !served) {
        spdlog::error("{}: cannot serve a preload shim, {}: {}", service, describePeer(peer),
                      served.error().message);
        return;
    }
    ++records_[owner->id].adoption.connections;
    spdlog::info("{} connected", connections_.back()->describe());
}

Result<void> PreloadSocket::serve(UniqueFd fd, const PreloadOwner &owner, const Peer &peer)
{
    auto connection = std::make_unique<PreloadConnection>(*this, owner, peer);
    PreloadConnection *raw = connection.get();
    auto channel = WorkerChannel::adopt(
        loop_, std::move(fd),
        [this, raw](ChannelMessage &&message) { host_.onPreloadMessage(*raw, std::move(message)); },
        [this, raw](const std::string &reason) { closed(*raw, reason); });
    if (!channel) {
        return channel.error();
    }
    (*channel)->setDropHandler([this, raw](const std::string &why) { host_.onPreloadDropped(*raw, why); });
    connection->setChannel(std::move(*channel));
    connections_.push_back(std::move(connection));
    ++records_[owner.id].adoption.open;
    return {};
}

void PreloadSocket::reapLater()
{
    if (reaper_) {
        return;
    }
    if (auto defer = loop_.addDefer([this] { reap(); })) {
        reaper_ = std::move(*defer);
    }
}

void PreloadSocket::reap()
{
    reaper_.reset();
    connections_.erase(std::remove_if(connections_.begin(), connections_.end(),
                                      [](const auto &connection) {
                                          return connection->channel() == nullptr ||
                                                 !connection->channel()->isOpen();
                                      }),
                       connections_.end());
}

} // namespace fdsup
