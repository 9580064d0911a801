// The daemon's orphaned workers: a dead predecessor's, kept serving until each service's own are ready.
#include <spdlog/spdlog.h>

#include "daemon/daemon.hpp"

namespace fdsup {

void Daemon::adoptOrphans(const std::map<std::string, std::vector<FoundOrphan>> &found)
{
    for (const auto &group : found) {
        const std::string &name = group.first;
        const std::vector<FoundOrphan> &list = group.second;
        auto orphans = std::make_unique<OrphanedWorkers>(loop_, loop_, name, [this, name] {
            // Not from inside its own callback: a defer sweeps the empty ones.
            if (!orphanSweep_) {
                if (auto defer = loop_.addDefer([this] {
                        std::erase_if(orphaned_, [](const auto &entry) { return entry.second->empty(); });
                        orphanSweep_.reset();
                        checkShutdown();
                    })) {
                    orphanSweep_ = std::move(*defer);
                }
            }
            if (Service *service = findService(name); service != nullptr && observer_ != nullptr) {
                observer_->serviceChanged(*service);
            }
        });
        for (const auto &orphan : list) {
            if (orphans->add(orphan.pid, orphan.pgid, orphan.command)) {
                spdlog::info("Orphaned worker of {}: pid {} ({}), serving until {} is running", name,
                             orphan.pid, orphan.command, name);
            }
        }
        if (!orphans->empty()) {
            orphaned_.emplace(name, std::move(orphans));
        }
    }
}

void Daemon::retireOrphans(const Service &service)
{
    const auto it = orphaned_.find(service.name());
    if (it == orphaned_.end() || it->second->retiring()) {
        return;
    }
    // Never leave no one serving: the orphans go once every slot has a
    // ready instance of ours (a failed service keeps them), or when the
    // service is not to run at all (stopped, shutting down, 0 instances).
    if (service.active() && service.state() == ServiceState::Running && service.wanted() > 0) {
        it->second->retire(service.config(), "replaced by its new instances");
    } else if (!service.active()) {
        it->second->retire(service.config(), "the service is stopped");
    }
}

const OrphanedWorkers *Daemon::orphansOf(std::string_view service) const
{
    const auto it = orphaned_.find(service);
    return it == orphaned_.end() ? nullptr : it->second.get();
}

} // namespace fdsup
