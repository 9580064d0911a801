// Orphaned workers: a dead predecessor's workers found on our listeners, judged, watched and replaced.
#include "model/orphans.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <set>

#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace fdsup {
namespace {

std::optional<std::string> valueOf(const std::vector<std::string> &environment, const std::string &name)
{
    const std::string prefix = name + "=";
    for (const auto &entry : environment) {
        if (entry.starts_with(prefix)) {
            return entry.substr(prefix.size());
        }
    }
    return std::nullopt;
}

int pidfdSignal(BorrowedFd pidfd, int sig)
{
    return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0));
}

} // namespace

HolderVerdict judgeHolder(const HolderInfo &holder, const std::vector<std::string> &services,
                          const std::string &supervisor)
{
    if (!holder.environment) {
        return {{},
                "its environment cannot be read (" + holder.environmentError +
                    "), so fdsupd cannot tell whose process it is"};
    }
    const auto service = valueOf(*holder.environment, "FDSUP_SERVICE");
    if (!service) {
        return {{}, "it is not an fdsupd worker (no FDSUP_SERVICE in its environment)"};
    }
    const auto owner = valueOf(*holder.environment, kSupervisorVariable);
    if (!owner) {
        return {{},
                "it is a worker of service '" + *service +
                    "' started by an fdsupd that does not name itself (no FDSUP_SUPERVISOR in its "
                    "environment)"};
    }
    if (*owner != supervisor) {
        return {{},
                "it is a worker of another fdsupd (FDSUP_SUPERVISOR=" + *owner + ", this one is " +
                    supervisor + ")"};
    }
    if (std::find(services.begin(), services.end(), *service) == services.end()) {
        return {{}, "it is a worker of service '" + *service + "', which this configuration does not have"};
    }
    return {*service, {}};
}

OrphanedWorkers::OrphanedWorkers(EventLoop &loop, Clock &clock, std::string service,
                                 std::function<void()> changed)
    : loop_(loop), clock_(clock), service_(std::move(service)), changed_(std::move(changed))
{}

bool OrphanedWorkers::add(pid_t pid, pid_t pgid, std::string command)
{
    if (std::any_of(orphans_.begin(), orphans_.end(), [pid](const Orphan &o) { return o.pid == pid; })) {
        return true;
    }
    UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) {
        return false;
    }
    // Not our child: a pidfd becomes readable when the process exits, and
    // there is nothing to wait for (its parent, or init, reaps it).
    auto watch = loop_.addIo(pidfd.borrow(), EPOLLIN, [this, pid](std::uint32_t) { exited(pid); });
    if (!watch) {
        spdlog::warn("Failed to watch orphaned worker {} pid {}: {}", service_, pid, watch.error().message);
        return false;
    }
    orphans_.push_back(Orphan{pid, pgid, std::move(command), std::move(pidfd), std::move(*watch)});
    return true;
}

void OrphanedWorkers::retire(const config::ServiceConfig &config, const std::string &why)
{
    if (retiring_ || orphans_.empty()) {
        return;
    }
    retiring_ = true;
    retiredAt_ = clock_.now();
    stopSignal_ = config.stopSignal;
    killMode_ = config.killMode;
    spdlog::info("Stopping {} orphaned worker{} of {} ({}): {}, SIGKILL after {}", orphans_.size(),
                 orphans_.size() == 1 ? "" : "s", service_, why, config::signalName(config.stopSignal),
                 formatDuration(config.stopTimeout));
    signalAll(config.stopSignal, killMode_ == config::KillMode::ProcessGroup);
    if (auto timer = clock_.startTimer(config.stopTimeout, [this] {
            spdlog::warn("{} orphaned worker{} of {} still running at stop_timeout, sending SIGKILL",
                         orphans_.size(), orphans_.size() == 1 ? "" : "s", service_);
            signalAll(SIGKILL, killMode_ == config::KillMode::ProcessGroup);
        })) {
        kill_ = std::move(*timer);
    }
}

void OrphanedWorkers::signalAll(int sig, bool groups)
{
    std::set<pid_t> signalled;
    for (const auto &orphan : orphans_) {
        // Each group once; never our own (fdsupd started in a worker's group
        // by hand would signal itself).
        if (groups && orphan.pgid > 1 && orphan.pgid != getpgrp()) {
            if (signalled.count(orphan.pgid) != 0) {
                continue;
            }
            if (kill(-orphan.pgid, sig) == 0) {
                signalled.insert(orphan.pgid);
                continue;
            }
        }
        if (pidfdSignal(orphan.pidfd.borrow(), sig) < 0 && errno != ESRCH) {
            spdlog::warn("Failed to send {} to orphaned worker {} pid {}: {}", config::signalName(sig),
                         service_, orphan.pid, errnoText(errno));
        }
    }
}

void OrphanedWorkers::exited(pid_t pid)
{
    const auto it =
        std::find_if(orphans_.begin(), orphans_.end(), [pid](const Orphan &o) { return o.pid == pid; });
    if (it == orphans_.end()) {
        return;
    }
    spdlog::info("Orphaned worker {} pid {} ({}) exited", service_, pid, it->command);
    // The watch is this callback's own source: destroying it here is allowed.
    orphans_.erase(it);
    if (orphans_.empty()) {
        kill_.reset();
        spdlog::info("Every orphaned worker of {} is gone", service_);
    }
    changed_();
}

} // namespace fdsup
