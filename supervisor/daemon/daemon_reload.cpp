// Live reload: validate the whole configuration, change nothing on any
// error, else apply the difference only (docs/reload.md).
#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/users.hpp"
#include "daemon/daemon.hpp"
#include "daemon/reload_plan.hpp"

namespace fdsup {
namespace {

nlohmann::json changeJson(const std::string &kind, const std::string &name, const std::string &action,
                          bool failed, const std::string &reason)
{
    return {{"kind", kind},
            {"name", name},
            {"action", action},
            {"result", failed ? "failed" : "done"},
            {"reason", reason.empty() ? nlohmann::json() : nlohmann::json(reason)}};
}

std::string joined(const std::vector<std::string> &details)
{
    return fmt::format("{}", fmt::join(details, ", "));
}

} // namespace

void Daemon::refuseReload(const std::shared_ptr<PendingCall> &call, const std::string &file,
                          const std::vector<std::string> &reasons)
{
    for (const auto &reason : reasons) {
        spdlog::error("Reload refused: {}", reason);
    }
    spdlog::error("Reload of {} refused, nothing changed", file);
    if (call) {
        call->fail(varlink::kErrorReloadRefused, {{"file", file}, {"reasons", reasons}});
    }
}

void Daemon::reload(const std::shared_ptr<PendingCall> &call)
{
    const std::string file = config_.files.empty() ? std::string() : config_.files.front();
    if (shuttingDown_) {
        if (call) {
            call->fail(varlink::kErrorShuttingDown);
        }
        return;
    }
    if (reload_) {
        refuseReload(call, file, {"a reload is already in progress"});
        return;
    }
    spdlog::info("Reloading {}", file);
    config::LoadResult loaded = config::loadConfig(file);
    if (!loaded.config) {
        nlohmann::json errors = nlohmann::json::array();
        for (const auto &d : loaded.diagnostics) {
            spdlog::error("{}", d.str());
            errors.push_back({{"file", d.where.file},
                              {"line", d.where.line},
                              {"column", d.where.column},
                              {"message", d.message}});
        }
        spdlog::error("Reload of {}: {} error{}, nothing changed", file, loaded.diagnostics.size(),
                      loaded.diagnostics.size() == 1 ? "" : "s");
        if (call) {
            call->fail(varlink::kErrorConfigInvalid, {{"file", file}, {"errors", errors}});
        }
        return;
    }
    config::Config next = std::move(*loaded.config);
    const ReloadPlan plan = planReload(config_, next);
    std::vector<std::string> reasons = plan.refused;

    // Everything that can fail is done before anything changes.
    auto busy = [&](const std::string &name) {
        const Service *service = findService(name);
        if (service != nullptr && service->rolloutActive()) {
            reasons.push_back("service '" + name + "': rollout " + std::to_string(service->rolloutId()) +
                              " is in progress; wait for it, or cancel it with `fdsupctl rollout cancel " +
                              name + "`");
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
    std::map<std::string, std::shared_ptr<const Profile>> profiles;
    for (const auto &change : plan.servicesRolled) {
        auto profile = findService(change.name)->prepare(*next.findService(change.name));
        if (!profile) {
            reasons.push_back(profile.error().message);
        } else {
            profiles.emplace(change.name, std::move(*profile));
        }
    }
    std::vector<std::unique_ptr<Service>> added;
    for (const auto &name : plan.servicesAdded) {
        if (std::find(removing_.begin(), removing_.end(), name) != removing_.end()) {
            reasons.push_back("service '" + name +
                              "' is still stopping after the previous reload removed it");
            continue;
        }
        auto service = Service::create(*context_, *next.findService(name));
        if (!service) {
            reasons.push_back(service.error().message);
        } else {
            added.push_back(std::move(*service));
        }
    }
    for (const auto &name : plan.socketsAdded) {
        if (std::find(retiringSockets_.begin(), retiringSockets_.end(), name) != retiringSockets_.end()) {
            reasons.push_back("socket '" + name + "' is still in use after the previous reload removed it");
        }
    }
    SocketSet bound;
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
            bound = std::move(*opened);
        }
    }
    if (!reasons.empty()) {
        for (const auto &socket : bound.sockets()) {
            bound.close(socket.config.name); // unix socket files too
        }
        refuseReload(call, file, reasons);
        return;
    }

    // Commit. From here on every change is applied or reported as failed.
    auto op = std::make_unique<ReloadOperation>();
    op->call = call;
    op->file = file;
    auto record = [&](std::string kind, std::string name, std::string action, ReloadChange::Status status,
                      std::string reason) {
        op->changes.push_back(
            ReloadChange{std::move(kind), std::move(name), std::move(action), status, std::move(reason), 0});
    };
    if (plan.logLevelChanged) {
        spdlog::set_level(spdlog::level::from_str(next.supervisor.logLevel));
        record("supervisor", "log_level", "changed", ReloadChange::Status::Done, next.supervisor.logLevel);
    }
    if (plan.accessChanged) {
        ControlOptions access;
        resolveControlAccess(next.supervisor, access);
        control_->setAccess(access.allowUids, access.allowGids);
        record("supervisor", "allow_users/allow_groups", "changed", ReloadChange::Status::Done, "");
    }
    sockets_.merge(std::move(bound));
    for (const auto &name : plan.socketsAdded) {
        record("socket", name, "added", ReloadChange::Status::Done, "");
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
        record("socket", change.name, "changed",
               failure.empty() ? ReloadChange::Status::Done : ReloadChange::Status::Failed,
               failure.empty() ? joined(change.details) : failure);
    }
    for (const auto &name : plan.socketsRemoved) {
        retiringSockets_.push_back(name);
        record("socket", name, "removed", ReloadChange::Status::Done, "closed once no instance uses it");
    }
    for (const auto &name : plan.servicesRemoved) {
        Service *service = findService(name);
        removing_.push_back(name);
        record("service", name, "removed", ReloadChange::Status::Pending, "");
        service->stop();
    }
    for (auto &service : added) {
        Service &s = *service;
        watch(s);
        services_.push_back(std::move(service));
        record("service", s.name(), "added", ReloadChange::Status::Pending, "");
        if (s.config().instances > 0) {
            s.start();
        }
    }
    for (const auto &change : plan.servicesScaled) {
        record("service", change.name, "scaled", ReloadChange::Status::Pending, joined(change.details));
        findService(change.name)->scale(next.findService(change.name)->instances);
    }
    for (const auto &change : plan.servicesRolled) {
        Service *service = findService(change.name);
        op->previous.emplace(change.name, service->config());
        record("service", change.name, "restarted", ReloadChange::Status::Pending, joined(change.details));
        RolloutOptions options;
        options.batch = next.findService(change.name)->rolloutBatch;
        options.order = next.findService(change.name)->rolloutOrder;
        reload_ = std::move(op); // the rollout may report at once
        service->beginRollout(profiles.at(change.name), options);
        op = std::move(reload_);
    }
    // What runs now is the new configuration, apart from rollouts that fail
    // (onReloadRollout puts their old service configuration back).
    config_ = std::move(next);
    spdlog::info("Reload of {}: {} change{}", file, op->changes.size(), op->changes.size() == 1 ? "" : "s");
    op->committing = false;
    reload_ = std::move(op);
    closeUnusedSockets();
    checkReload();
    updateStatus();
}

void Daemon::onReloadRollout(Service &service, const nlohmann::json &rollout)
{
    if (!reload_) {
        return;
    }
    for (auto &change : reload_->changes) {
        if (change.kind != "service" || change.name != service.name() || change.action != "restarted" ||
            change.status != ReloadChange::Status::Pending) {
            continue;
        }
        if (rollout.at("state") == "succeeded") {
            change.status = ReloadChange::Status::Done;
            continue;
        }
        change.status = ReloadChange::Status::Failed;
        const auto &reason = rollout.at("reason");
        change.reason =
            reason.is_string() ? reason.get<std::string>() : rollout.at("state").get<std::string>();
        // The old generation keeps serving: so does its configuration.
        const auto previous = reload_->previous.find(service.name());
        if (previous != reload_->previous.end()) {
            for (auto &configured : config_.services) {
                if (configured.name == service.name()) {
                    configured = previous->second;
                }
            }
        }
    }
    checkReload();
}

void Daemon::checkReload()
{
    if (!reload_ || reload_->committing) {
        return;
    }
    for (auto &change : reload_->changes) {
        if (change.status != ReloadChange::Status::Pending || change.kind != "service") {
            continue;
        }
        const Service *service = findService(change.name);
        if (change.action == "removed") {
            if (service == nullptr) {
                change.status = ReloadChange::Status::Done;
            }
            continue;
        }
        if (change.action == "restarted") {
            continue; // onReloadRollout
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
    const bool pending =
        std::any_of(reload_->changes.begin(), reload_->changes.end(),
                    [](const ReloadChange &c) { return c.status == ReloadChange::Status::Pending; });
    if (pending) {
        return;
    }
    const std::unique_ptr<ReloadOperation> op = std::move(reload_);
    nlohmann::json changes = nlohmann::json::array();
    bool failed = false;
    for (const auto &change : op->changes) {
        const bool bad = change.status == ReloadChange::Status::Failed;
        failed = failed || bad;
        changes.push_back(changeJson(change.kind, change.name, change.action, bad, change.reason));
        if (bad) {
            spdlog::error("Reload: {} '{}' {}: failed: {}", change.kind, change.name, change.action,
                          change.reason);
        }
    }
    spdlog::info("Reload of {} {}", op->file, failed ? "partly failed" : "done");
    if (op->call && !op->call->done()) {
        if (failed) {
            op->call->fail(varlink::kErrorReloadFailed, {{"file", op->file}, {"changes", changes}});
        } else {
            op->call->reply({{"file", op->file}, {"changes", changes}});
        }
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
        for (auto &[call, name] : followers_) {
            if (name == *it && !call->done()) {
                call->reply({{"lines", nlohmann::json::array()}});
            }
        }
        std::erase_if(followers_, [&](const auto &f) { return f.second == *it; });
        services_.erase(found);
        it = removing_.erase(it);
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
        sockets_.close(*it);
        it = retiringSockets_.erase(it);
    }
}

} // namespace fdsup
