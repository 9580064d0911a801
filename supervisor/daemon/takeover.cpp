// Taking over after a crash: the listeners a dead fdsupd's workers still hold, and those workers.
#include "daemon/takeover.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/address.hpp"
#include "io/peer.hpp"
#include "io/proc.hpp"
#include "io/proc_net.hpp"
#include "model/orphans.hpp"

namespace fdsup {
namespace {

std::string describe(pid_t pid)
{
    return fmt::format("pid {} ({})", pid, commandOf(pid));
}

HolderInfo holderInfo(pid_t pid)
{
    HolderInfo info;
    info.pid = pid;
    info.command = commandOf(pid);
    if (auto environment = environmentOf(pid)) {
        info.environment = std::move(*environment);
    } else {
        info.environmentError = errnoText(environment.error().code);
    }
    return info;
}

} // namespace

Takeover::Takeover(const config::Config &config) : control_(config.supervisor.control)
{
    for (const auto &service : config.services) {
        services_.push_back(service.name);
        killModes_[service.name] = service.killMode;
    }
}

// An fdsupd that answers on our control socket is alive, whatever holds the
// port: its listeners are its own, never orphans. A connect() that works or
// finds the backlog full means a live listener; a refusal or no file means
// the socket was left behind by one that died.
Result<void> Takeover::predecessorGone()
{
    if (predecessor_) {
        return *predecessor_;
    }
    predecessor_ = Result<void>();
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (!fd || control_.size() >= sizeof addr.sun_path) {
        return *predecessor_;
    }
    control_.copy(addr.sun_path, control_.size());
    if (connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) < 0 && errno != EAGAIN) {
        return *predecessor_;
    }
    Peer peer;
    const std::string who = peerOf(fd.borrow(), peer) == 0 ? "fdsupd " + describe(peer.pid) : "an fdsupd";
    predecessor_ = Error{EADDRINUSE, who + " is running and answers on " + control_ +
                                         ": it owns these listeners, nothing to take over"};
    return *predecessor_;
}

Result<std::vector<UniqueFd>> Takeover::recover(const config::SocketConfig & /*socket*/,
                                                const Address &address, const Error &bindError, bool probe)
{
    // A probe (reuse_port) that cannot take over binds beside the listener
    // as fdsupd always did: only a start that cannot bind is refused.
    const auto refuse = [&](int code, const std::string &why) -> Result<std::vector<UniqueFd>> {
        if (probe) {
            spdlog::warn("{}; binding beside it (reuse_port)", why);
            return std::vector<UniqueFd>();
        }
        return Error{code, bindError.message + "; " + why};
    };
    auto resolved = resolveAddress(address);
    if (!resolved) {
        return refuse(resolved.error().code, resolved.error().message);
    }
    std::vector<std::pair<std::string, ino_t>> found;
    for (const auto &one : *resolved) {
        const std::string where =
            formatSocketAddress(reinterpret_cast<const sockaddr *>(&one.storage), one.length);
        auto inodes = listeningInodes(address, one);
        if (!inodes) {
            return refuse(inodes.error().code, inodes.error().message);
        }
        if (inodes->size() > 1) {
            return refuse(EADDRINUSE, fmt::format("{} sockets serve {} (SO_REUSEPORT), not one fdsupd "
                                                  "socket: nothing taken over",
                                                  inodes->size(), where));
        }
        if (!inodes->empty()) {
            found.emplace_back(where, inodes->front());
        } else if (!probe) {
            return refuse(EADDRINUSE, "no socket serving " + where +
                                          " was found in /proc/net (another network namespace?), "
                                          "nothing to take over");
        }
    }
    if (probe && found.empty()) {
        return std::vector<UniqueFd>(); // nothing listens there: bind
    }
    if (auto gone = predecessorGone(); !gone) {
        return refuse(gone.error().code, gone.error().message);
    }
    std::vector<UniqueFd> fds;
    for (const auto &[where, inode] : found) {
        auto fd = takeInode(inode, where);
        if (!fd) {
            return refuse(fd.error().code, fd.error().message);
        }
        fds.push_back(std::move(*fd));
    }
    return fds;
}

Result<UniqueFd> Takeover::takeInode(ino_t inode, const std::string &where)
{
    const auto holders = socketHolders(inode);
    if (holders.empty()) {
        return Error{EADDRINUSE, "no process holding the socket on " + where +
                                     " can be seen (another user's, and fdsupd is not root?)"};
    }
    std::vector<std::pair<std::string, pid_t>> orphans;
    for (const auto &holder : holders) {
        const auto verdict = judgeHolder(holderInfo(holder.pid), services_, control_);
        if (!verdict.refusal.empty()) {
            return Error{EADDRINUSE, describe(holder.pid) + " holds " + where +
                                         " and will not be taken over: " + verdict.refusal};
        }
        orphans.emplace_back(verdict.service, holder.pid);
    }
    // Any holder will do: they all hold the same socket (the same inode).
    const SocketHolder &from = holders.front();
    const UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, from.pid, 0)));
    UniqueFd fd(pidfd ? static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), from.fd, 0)) : -1);
    if (!fd) {
        const int error = errno;
        return errnoError(error, describe(from.pid) + ", a worker of a dead fdsupd, holds " + where +
                                     ", but taking its descriptor was refused" +
                                     (error == EPERM ? " (fdsupd needs root, or ptrace access to it)" : "") +
                                     ": pidfd_getfd");
    }
    struct stat st {};
    if (fstat(fd.get(), &st) < 0 || st.st_ino != inode) {
        return Error{EAGAIN, describe(from.pid) + " no longer holds the socket on " + where +
                                 " at descriptor " + std::to_string(from.fd) + "; try again"};
    }
    std::string pids;
    for (const auto &[service, pid] : orphans) {
        record(service, pid);
        pids += (pids.empty() ? "" : ", ") + std::to_string(pid);
    }
    spdlog::info("{} is held by the workers of a dead fdsupd (pid {}): taking it over", where, pids);
    return fd;
}

void Takeover::record(const std::string &service, pid_t pid)
{
    auto &list = orphans_[service];
    const auto known = [&list](pid_t p) {
        return std::any_of(list.begin(), list.end(), [p](const FoundOrphan &o) { return o.pid == p; });
    };
    const auto stat = readProcStat(pid);
    if (!stat || known(pid)) {
        return;
    }
    list.push_back(FoundOrphan{pid, stat->pgid, commandOf(pid)});
    if (killModes_[service] != config::KillMode::ProcessGroup || stat->pgid <= 1 || stat->pgid == getpgrp()) {
        return;
    }
    // What the worker started in its group goes with it, as when an
    // instance of ours exits.
    for (const pid_t member : processGroupMembers(stat->pgid)) {
        if (member != getpid() && !known(member)) {
            list.push_back(FoundOrphan{member, stat->pgid, commandOf(member)});
        }
    }
}

} // namespace fdsup
