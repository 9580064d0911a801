// Live reload, after its plan: what a reload prepares, the changes it makes and how they went
// (docs/reload.md).
#include "daemon/reload.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/daemon.hpp"
#include "daemon/manager.hpp"
#include "io/metrics_server.hpp"

namespace fdsup {
namespace {

std::string joined(const std::vector<std::string> &details)
{
    return fmt::format("{}", fmt::join(details, ", "));
}

bool listed(const std::vector<std::string> &names, const std::string &name)
{
    return std::find(names.begin(), names.end(), name) != names.end();
}

} // namespace

void ReloadOperation::record(std::string kind, std::string name, std::string action,
                             ReloadChange::Status status, std::string reason)
{
    changes_.push_back(
        ReloadChange{std::move(kind), std::move(name), std::move(action), status, std::move(reason)});
}

void ReloadOperation::rolledOut(const std::string &service, config::ServiceConfig previous)
{
    previous_.insert_or_assign(service, std::move(previous));
}

void ReloadOperation::rolloutFinished(const std::string &service, bool succeeded, const std::string &reason,
                                      config::Config &running)
{
    for (auto &change : changes_) {
        if (change.kind != "service" || change.name != service || change.action != "restarted" ||
            change.status != ReloadChange::Status::Pending) {
            continue;
        }
        if (succeeded) {
            change.status = ReloadChange::Status::Done;
            continue;
        }
        change.status = ReloadChange::Status::Failed;
        change.reason = reason;
        // The old generation keeps serving: so does its configuration.
        if (const auto previous = previous_.find(service); previous != previous_.end()) {
            for (auto &configured : running.services) {
                if (configured.name == service) {
                    configured = previous->second;
                }
            }
        }
    }
}

void ReloadOperation::check(const std::vector<std::unique_ptr<Service>> &services)
{
    for (auto &change : changes_) {
        if (change.status != ReloadChange::Status::Pending || change.kind != "service" ||
            change.action == "restarted") {
            continue; // a rollout answers for itself (rolloutFinished)
        }
        const auto found = std::find_if(services.begin(), services.end(),
                                        [&](const auto &s) { return s->name() == change.name; });
        const Service *service = found == services.end() ? nullptr : found->get();
        if (change.action == "removed") {
            if (service == nullptr) {
                change.status = ReloadChange::Status::Done;
            }
            continue;
        }
        if (service == nullptr) {
            change.status = ReloadChange::Status::Failed;
            change.reason = "the service was removed meanwhile";
            continue;
        }
        const ServiceState state = service->state();
        if (state == ServiceState::Failed) {
            change.status = ReloadChange::Status::Failed;
            change.reason = service->failedReason();
        } else if (service->settled() && (state == ServiceState::Running || state == ServiceState::Stopped)) {
            change.status = ReloadChange::Status::Done;
        }
    }
}

bool ReloadOperation::pending() const
{
    return std::any_of(changes_.begin(), changes_.end(),
                       [](const ReloadChange &c) { return c.status == ReloadChange::Status::Pending; });
}

ReloadOutcome ReloadOperation::finish() const
{
    ReloadOutcome outcome;
    outcome.file = file_;
    outcome.changes = changes_;
    bool failed = false;
    for (const auto &change : changes_) {
        if (change.status == ReloadChange::Status::Failed) {
            failed = true;
            spdlog::error("Reload: {} '{}' {}: failed: {}", change.kind, change.name, change.action,
                          change.reason);
        }
    }
    outcome.kind = failed ? ReloadOutcome::Kind::Failed : ReloadOutcome::Kind::Done;
    spdlog::info("Reload of {} {}", file_, failed ? "partly failed" : "done");
    return outcome;
}

void Daemon::refuseReload(const ReloadCallback &done, const std::string &file,
                          std::vector<std::string> reasons)
{
    for (const auto &reason : reasons) {
        spdlog::error("Reload refused: {}", reason);
    }
    spdlog::error("Reload of {} refused, nothing changed", file);
    if (done) {
        done(ReloadOutcome{ReloadOutcome::Kind::Refused, file, {}, std::move(reasons), {}});
    }
}

void Daemon::reload(ReloadCallback done)
{
    const std::string file = config_.files.empty() ? std::string() : config_.files.front();
    // Every outcome is counted (fdsup_config_reloads_total), through the
    // callback it is answered with.
    done = [this, answer = std::move(done)](const ReloadOutcome &outcome) {
        ++reloads_.at(static_cast<std::size_t>(outcome.kind));
        if (answer) {
            answer(outcome);
        }
    };
    if (shuttingDown_) {
        done(ReloadOutcome{ReloadOutcome::Kind::ShuttingDown, file, {}, {}, {}});
        return;
    }
    if (reload_) {
        refuseReload(done, file, {"a reload is already in progress"});
        return;
    }
    // The manager sees the reload from here to its answer: RELOADING=1
    // now, READY=1 before the answer (docs/systemd.md). Before the first
    // READY=1 (a control call while the services start) the first start
    // still decides when fdsupd is ready.
    if (notifiedReady_) {
        manager_.reloading();
    }
    if (observer_ != nullptr) {
        observer_->reloadBegun(file);
    }
    done = [this, answer = std::move(done)](const ReloadOutcome &outcome) {
        if (!shuttingDown_ && notifiedReady_) {
            notifyReady();
        } else {
            checkReady();
        }
        if (observer_ != nullptr) {
            observer_->reloadFinished(outcome);
        }
        if (answer) {
            answer(outcome);
        }
    };
    // Validate: an invalid file gets every diagnostic and changes nothing.
    spdlog::info("Reloading {}", file);
    config::LoadResult loaded = config::loadConfig(file);
    if (!loaded.config) {
        for (const auto &d : loaded.diagnostics) {
            spdlog::error("{}", d.str());
        }
        spdlog::error("Reload of {}: {} error{}, nothing changed", file, loaded.diagnostics.size(),
                      loaded.diagnostics.size() == 1 ? "" : "s");
        if (done) {
            done(ReloadOutcome{ReloadOutcome::Kind::Invalid, file, std::move(loaded.diagnostics), {}, {}});
        }
        return;
    }
    // Plan (pure), then prepare everything that can fail, then apply.
    config::Config next = std::move(*loaded.config);
    const ReloadPlan plan = planReload(config_, next);
    PreparedReload prepared;
    std::vector<std::string> reasons = prepareReload(next, plan, prepared);
    if (!reasons.empty()) {
        for (const auto &socket : prepared.bound.sockets()) {
            prepared.bound.close(socket.config.name); // unix socket files too
        }
        refuseReload(done, file, std::move(reasons));
        return;
    }
    applyReload(std::move(next), plan, std::move(prepared), std::move(done));
}

std::vector<std::string> Daemon::prepareReload(const config::Config &next, const ReloadPlan &plan,
                                               PreparedReload &prepared)
{
    std::vector<std::string> reasons = plan.refused;
    const auto busy = [&](const std::string &name) {
        const Service *service = findService(name);
        if (service != nullptr && service->rollouts().active()) {
            reasons.push_back(
                "service '" + name + "': rollout " + std::to_string(service->rollouts().currentId()) +
                " is in progress; wait for it, or cancel it with `fdsupctl rollout cancel " + name + "`");
        }
    };
    for (const auto &name : plan.servicesRemoved) {
        busy(name);
    }
    for (const auto &change : plan.servicesScaled) {
        busy(change.name);
    }
    for (const auto &change : plan.servicesRolled) {
        busy(change.name);
    }
    for (const auto &change : plan.servicesRolled) {
        auto profile = findService(change.name)->prepare(*next.findService(change.name));
        if (!profile) {
            reasons.push_back(profile.error().message);
        } else {
            prepared.profiles.emplace(change.name, std::move(*profile));
        }
    }
    for (const auto &name : plan.servicesAdded) {
        if (listed(removing_, name)) {
            reasons.push_back("service '" + name +
                              "' is still stopping after the previous reload removed it");
            continue;
        }
        auto service = makeService(*next.findService(name));
        if (!service) {
            reasons.push_back(service.error().message);
        } else {
            prepared.added.push_back(std::move(*service));
        }
    }
    for (const auto &name : plan.socketsAdded) {
        if (listed(retiringSockets_, name)) {
            reasons.push_back("socket '" + name + "' is still in use after the previous reload removed it");
        }
    }
    if (plan.metricsChanged && next.supervisor.metrics) {
        auto bound = MetricsServer::bind(*next.supervisor.metrics);
        if (!bound) {
            reasons.push_back(bound.error().message);
        } else {
            prepared.metrics = std::move(*bound);
        }
    }
    if (reasons.empty() && !plan.socketsAdded.empty()) {
        config::Config newSockets;
        for (const auto &name : plan.socketsAdded) {
            newSockets.sockets.push_back(*next.findSocket(name));
        }
        // All or nothing: on error nothing stays bound.
        auto opened = SocketSet::open(newSockets, InheritedFds{});
        if (!opened) {
            reasons.push_back(opened.error().message);
        } else {
            prepared.bound = std::move(*opened);
        }
    }
    return reasons;
}

void Daemon::applyReload(config::Config next, const ReloadPlan &plan, PreparedReload prepared,
                         ReloadCallback done)
{
    // From here on every change is applied or reported as failed. The
    // operation is current while it commits (a rollout may report at
    // once), but answers only once committing is over.
    reload_ = std::make_unique<ReloadOperation>(config_.files.empty() ? std::string() : config_.files.front(),
                                                std::move(done));
    ReloadOperation &op = *reload_;
    committing_ = true;
    using Status = ReloadChange::Status;
    if (plan.logLevelChanged) {
        spdlog::set_level(spdlog::level::from_str(next.supervisor.logLevel));
        op.record("supervisor", "log_level", "changed", Status::Done, next.supervisor.logLevel);
    }
    if (plan.accessChanged) {
        if (observer_ != nullptr) {
            observer_->accessChanged(next.supervisor);
        }
        op.record("supervisor", "access", "changed", Status::Done, "");
    }
    if (plan.metricsChanged) {
        const char *action = !next.supervisor.metrics     ? "removed"
                             : config_.supervisor.metrics ? "moved"
                                                          : "added";
        op.record("supervisor", "metrics", action, applyMetrics(next.supervisor, std::move(prepared.metrics)),
                  "");
    }
    storeListeners(manager_, prepared.bound);
    sockets_.merge(std::move(prepared.bound));
    for (const auto &name : plan.socketsAdded) {
        op.record("socket", name, "added", Status::Done, "");
    }
    for (const auto &change : plan.socketsChanged) {
        HeldSocket *held = sockets_.find(change.name);
        const config::SocketConfig &wanted = *next.findSocket(change.name);
        std::string failure;
        for (std::size_t i = 0; held != nullptr && i < held->fds.size(); ++i) {
            if (auto r = applySocketChange(held->fds[i].borrow(), held->config.options, wanted.options);
                !r && failure.empty()) {
                failure = r.error().message;
            }
        }
        if (held != nullptr && failure.empty()) {
            held->config = wanted;
        }
        op.record("socket", change.name, "changed", failure.empty() ? Status::Done : Status::Failed,
                  failure.empty() ? joined(change.details) : failure);
    }
    for (const auto &name : plan.socketsRemoved) {
        retiringSockets_.push_back(name);
        op.record("socket", name, "removed", Status::Done, "closed once no instance uses it");
    }
    for (const auto &name : plan.servicesRemoved) {
        removing_.push_back(name);
        op.record("service", name, "removed", Status::Pending, "");
        findService(name)->stop();
    }
    for (auto &service : prepared.added) {
        Service &s = *service;
        services_.push_back(std::move(service));
        op.record("service", s.name(), "added", Status::Pending, "");
        if (s.config().instances > 0) {
            s.start();
        }
    }
    for (const auto &change : plan.servicesScaled) {
        op.record("service", change.name, "scaled", Status::Pending, joined(change.details));
        (void)findService(change.name)->scale(next.findService(change.name)->instances);
    }
    // What runs now is the new configuration, apart from rollouts that fail
    // (rolloutFinished puts their old service configuration back, even when
    // one fails at once, below).
    config_ = std::move(next);
    for (const auto &change : plan.servicesRolled) {
        Service *service = findService(change.name);
        const config::ServiceConfig &wanted = *config_.findService(change.name);
        op.rolledOut(change.name, service->config());
        op.record("service", change.name, "restarted", Status::Pending, joined(change.details));
        RolloutOptions options;
        options.batch = wanted.rolloutBatch;
        options.order = wanted.rolloutOrder;
        if (auto begun = service->rollOut(prepared.profiles.at(change.name), options, false); !begun) {
            op.rolloutFinished(change.name, false, begun.error().message, config_);
        }
    }
    spdlog::info("Reload of {}: {} change{}", op.file(), op.size(), op.size() == 1 ? "" : "s");
    committing_ = false;
    closeUnusedSockets();
    checkReload();
    updateStatus();
}

void Daemon::checkReload()
{
    if (!reload_ || committing_) {
        return;
    }
    reload_->check(services_);
    if (reload_->pending()) {
        return;
    }
    const std::unique_ptr<ReloadOperation> op = std::move(reload_);
    const ReloadOutcome outcome = op->finish();
    if (op->callback()) {
        op->callback()(outcome);
    }
}

void Daemon::reapServices()
{
    reaper_.reset();
    for (auto it = removing_.begin(); it != removing_.end();) {
        const auto found =
            std::find_if(services_.begin(), services_.end(), [&](const auto &s) { return s->name() == *it; });
        if (found == services_.end()) {
            it = removing_.erase(it);
            continue;
        }
        if ((*found)->liveInstances() > 0) {
            ++it;
            continue;
        }
        spdlog::info("Removed service '{}'", *it);
        const std::string name = *it;
        // What it still holds is closed, and removed from the manager's store.
        (void)(*found)->takeHeldConnections();
        services_.erase(found);
        it = removing_.erase(it);
        if (observer_ != nullptr) {
            observer_->serviceRemoved(name);
        }
    }
    closeUnusedSockets();
    checkReload();
    updateStatus();
}

void Daemon::closeUnusedSockets()
{
    for (auto it = retiringSockets_.begin(); it != retiringSockets_.end();) {
        const bool used = std::any_of(services_.begin(), services_.end(),
                                      [&](const auto &s) { return s->usesSocket(*it); });
        if (used) {
            ++it;
            continue;
        }
        forgetStored(manager_, *it);
        sockets_.close(*it);
        it = retiringSockets_.erase(it);
    }
}

const char *reloadOutcomeName(ReloadOutcome::Kind kind)
{
    switch (kind) {
    case ReloadOutcome::Kind::Done:
        return "done";
    case ReloadOutcome::Kind::Failed:
        return "failed";
    case ReloadOutcome::Kind::Invalid:
        return "invalid";
    case ReloadOutcome::Kind::Refused:
        return "refused";
    case ReloadOutcome::Kind::ShuttingDown:
        return "shutting-down";
    }
    return "unknown";
}

} // namespace fdsup
