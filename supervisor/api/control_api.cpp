// The control API: its server, each call's dispatch (method, access, parameters, service) and the
// handlers (the method table: control_methods.cpp; long calls answered: control_observer.cpp).
#include "api/control_api.hpp"

#include <algorithm>
#include <cerrno>

#include <unistd.h>

#include <spdlog/spdlog.h>

#include "api/audit.hpp"
#include "api/render.hpp"
#include "fdsup_build_config.h"

namespace fdsup {
namespace {

using Json = nlohmann::json;
using CallPtr = std::shared_ptr<PendingCall>;

constexpr std::int64_t kDefaultLogLines = 50;

std::string who(const CallPtr &call)
{
    return "uid " + std::to_string(call->peer().uid) + " (pid " + std::to_string(call->peer().pid) + ")";
}

Json reloadChanges(const std::vector<ReloadChange> &changes)
{
    Json list = Json::array();
    for (const auto &change : changes) {
        list.push_back({{"kind", change.kind},
                        {"name", change.name},
                        {"action", change.action},
                        {"result", change.status == ReloadChange::Status::Failed ? "failed" : "done"},
                        {"reason", change.reason.empty() ? Json() : Json(change.reason)}});
    }
    return list;
}

} // namespace

ControlOptions ControlApi::optionsFor(const config::SupervisorConfig &supervisor) const
{
    ControlOptions options;
    options.path = supervisor.control;
    options.mode = supervisor.controlMode;
    options.maxRequest = supervisor.limits.controlRequestSize;
    options.maxClients = supervisor.limits.controlClients;
    options.idleTimeout = supervisor.limits.controlIdleTimeout;
    options.version = FDSUP_VERSION;
    // Connecting needs some grant; what each call needs is checked per call.
    options.allowUids = access_.uids();
    options.allowGids = access_.gids();
    return options;
}

Result<std::unique_ptr<ControlApi>> ControlApi::create(EventLoop &loop, Daemon &daemon)
{
    std::unique_ptr<ControlApi> api(new ControlApi(daemon));
    api->loop_ = &loop;
    const ControlOptions options = api->optionsFor(daemon.config().supervisor);
    if (auto watched = api->watchSigusr2(loop); !watched) {
        return watched.error();
    }
    ControlApi *self = api.get();
    auto server = ControlServer::create(loop, options, [self](const CallPtr &call) { self->dispatch(call); });
    if (!server) {
        return Error{server.error().code,
                     "Failed to open the control socket " + options.path + ": " + server.error().message};
    }
    api->server_ = std::move(*server);
    daemon.setObserver(api.get());
    return api;
}

ControlApi::~ControlApi()
{
    daemon_.setObserver(nullptr);
}

void ControlApi::dispatch(const CallPtr &call)
{
    const std::string &method = call->call().method;
    const std::string_view name = std::string_view(method).substr(varlink::kInterface.size() + 1);
    const MethodSpec *spec = findMethod(name);
    if (spec == nullptr) {
        call->fail(varlink::kErrorMethodNotFound, {{"method", method}});
        return;
    }
    // Every call that may change something is audited, whatever its result;
    // a refused one too (allowed()).
    if (spec->access != Access::Read) {
        call->audit(auditRecord(call->peer().uid, call->peer().pid, spec->name, call->call().parameters));
    }
    CallParams params;
    if (const ParamSpec *refused = decodeCallParams(*spec, call->call().parameters, params)) {
        call->fail(varlink::kErrorInvalidParameter, {{"parameter", refused->name}});
        return;
    }
    if (!allowed(call, *spec, params)) {
        return;
    }
    Service *service = nullptr;
    if (params.service) {
        service = daemon_.findService(*params.service);
        if (service == nullptr) {
            call->fail(varlink::kErrorNoSuchService, {{"service", *params.service}});
            return;
        }
    }
    if (spec->refusedWhileStopping && daemon_.shuttingDown()) {
        call->fail(varlink::kErrorShuttingDown);
        return;
    }
    if (reexec_ && refusedWhileReexecuting(spec->name)) {
        call->fail(varlink::kErrorReexecuting);
        return;
    }
    (this->*(spec->handler))(call, params, service);
}

bool ControlApi::allowed(const CallPtr &call, const MethodSpec &spec, const CallParams &params)
{
    // Before the service lookup: a caller limited to some services does not
    // learn from NoSuchService which others exist.
    const auto refusal =
        checkAccess(access_, call->peer(), geteuid(), spec.name, spec.access, params.service);
    if (!refusal) {
        return true;
    }
    if (spec.access == Access::Read) {
        call->audit(auditRecord(call->peer().uid, call->peer().pid, spec.name, call->call().parameters));
    }
    call->fail(varlink::kErrorManagerPermissionDenied,
               {{"method", refusal->method},
                {"service", refusal->service ? Json(*refusal->service) : Json()},
                {"right", refusal->right},
                {"command", refusal->command},
                {"has", refusal->has},
                {"message", refusal->message}});
    return false;
}

void ControlApi::callStatus(const CallPtr &call, const CallParams & /*params*/, Service *service)
{
    Json list = Json::array();
    for (const auto &s : daemon_.services()) {
        if (service == nullptr || s.get() == service) {
            list.push_back(render::service(*s, daemon_.orphansOf(s->name())));
        }
    }
    call->reply({{"services", list}});
}

void ControlApi::callSockets(const CallPtr &call, const CallParams & /*params*/, Service * /*service*/)
{
    call->reply(render::sockets(daemon_.sockets(), daemon_.services()));
}

void ControlApi::callConnections(const CallPtr &call, const CallParams & /*params*/, Service *service)
{
    Json list = Json::array();
    for (const auto &s : daemon_.services()) {
        if (service == nullptr || s.get() == service) {
            list.push_back(render::connections(*s));
        }
    }
    call->reply({{"services", list}});
}

void ControlApi::callStart(const CallPtr &call, const CallParams & /*params*/, Service *service)
{
    spdlog::info("Start {} requested by {}", service->name(), who(call));
    waiters_.push_back(Waiter{call, service->name(), Waiter::Goal::Running});
    service->start();
    serviceChanged(*service); // answers at once when already there
}

void ControlApi::callStop(const CallPtr &call, const CallParams & /*params*/, Service *service)
{
    spdlog::info("Stop {} requested by {}", service->name(), who(call));
    waiters_.push_back(Waiter{call, service->name(), Waiter::Goal::Stopped});
    service->stop();
    serviceChanged(*service);
}

void ControlApi::callRestart(const CallPtr &call, const CallParams &params, Service *service)
{
    RolloutOptions options;
    options.batch = params.batch ? static_cast<unsigned>(*params.batch) : service->config().rolloutBatch;
    options.order = params.order.value_or(service->config().rolloutOrder);
    if (params.timeoutUsec) {
        options.timeout = Duration(*params.timeoutUsec);
    }
    // Progress (more) is only sent while waiting for the result.
    const bool wait = params.wait.value_or(false) || call->call().more;
    const bool progress = call->call().more;
    spdlog::info("Restart {} requested by {}", service->name(), who(call));
    const Rollouts &rollouts = service->rollouts();
    if (rollouts.active() || rollouts.queued() > 0) {
        if (!params.queue.value_or(false)) {
            call->fail(varlink::kErrorRolloutInProgress,
                       {{"service", service->name()}, {"rollout", rollouts.currentId()}});
            return;
        }
        const auto queued = service->rollOut(nullptr, options, true);
        if (!queued) {
            // The queue is full (Rollouts::kMaxQueued).
            call->fail(varlink::kErrorRolloutInProgress,
                       {{"service", service->name()}, {"rollout", rollouts.currentId()}});
            return;
        }
        if (!wait) {
            call->reply({{"rollout", render::queuedRollout(*service, options)}});
            return;
        }
        if (progress) {
            call->reply({{"rollout", render::queuedRollout(*service, options)},
                         {"event", "queued behind rollout " + std::to_string(rollouts.currentId())}},
                        true);
        }
        queuedWaiters_.push_back(QueuedWaiter{call, service->name(), queued->ticket, options, progress});
        return;
    }
    // Registered before the rollout begins: its first events come at once.
    if (wait) {
        rolloutWaiters_.push_back(RolloutWaiter{call, service->name(), 0, progress, false});
    }
    const auto begun = service->rollOut(nullptr, options, false);
    if (!begun) {
        spdlog::error("Cannot restart {}: {}", service->name(), begun.error().message);
        std::erase_if(rolloutWaiters_, [&](const RolloutWaiter &w) { return w.call == call; });
        call->fail(varlink::kErrorServiceFailed,
                   {{"service", service->name()}, {"reason", begun.error().message}});
        return;
    }
    if (!wait && !call->answered()) {
        call->reply({{"rollout", render::currentRollout(*service)}});
    }
}

void ControlApi::callRolloutStatus(const CallPtr &call, const CallParams & /*params*/, Service *service)
{
    call->reply({{"rollout", render::currentRollout(*service)}, {"queued", service->rollouts().queued()}});
}

void ControlApi::callRolloutCancel(const CallPtr &call, const CallParams & /*params*/, Service *service)
{
    if (!service->rollouts().active()) {
        call->fail(varlink::kErrorNoRollout, {{"service", service->name()}});
        return;
    }
    const std::string reason = "cancelled by " + who(call);
    spdlog::info("Rollout {} of {} {}", service->rollouts().currentId(), service->name(), reason);
    rolloutWaiters_.push_back(
        RolloutWaiter{call, service->name(), service->rollouts().currentId(), false, true});
    service->cancelRollout(reason);
}

void ControlApi::callScale(const CallPtr &call, const CallParams &params, Service *service)
{
    if (service->rollouts().active()) {
        call->fail(varlink::kErrorRolloutInProgress,
                   {{"service", service->name()}, {"rollout", service->rollouts().currentId()}});
        return;
    }
    spdlog::info("Scale {} to {} requested by {}", service->name(), *params.instances, who(call));
    waiters_.push_back(Waiter{call, service->name(), Waiter::Goal::Settled});
    (void)service->scale(static_cast<unsigned>(*params.instances));
    serviceChanged(*service); // answers at once when already there
}

void ControlApi::callReload(const CallPtr &call, const CallParams & /*params*/, Service * /*service*/)
{
    spdlog::info("Reload requested by {}", who(call));
    daemon_.reload([call](const ReloadOutcome &outcome) {
        if (call->answered()) {
            return;
        }
        switch (outcome.kind) {
        case ReloadOutcome::Kind::Done:
            call->reply({{"file", outcome.file}, {"changes", reloadChanges(outcome.changes)}});
            return;
        case ReloadOutcome::Kind::Failed:
            call->fail(varlink::kErrorReloadFailed,
                       {{"file", outcome.file}, {"changes", reloadChanges(outcome.changes)}});
            return;
        case ReloadOutcome::Kind::Invalid: {
            Json errors = Json::array();
            for (const auto &d : outcome.errors) {
                errors.push_back({{"file", d.where.file},
                                  {"line", d.where.line},
                                  {"column", d.where.column},
                                  {"message", d.message}});
            }
            call->fail(varlink::kErrorConfigInvalid, {{"file", outcome.file}, {"errors", errors}});
            return;
        }
        case ReloadOutcome::Kind::Refused:
            call->fail(varlink::kErrorReloadRefused, {{"file", outcome.file}, {"reasons", outcome.reasons}});
            return;
        case ReloadOutcome::Kind::ShuttingDown:
            call->fail(varlink::kErrorShuttingDown);
            return;
        }
    });
}

void ControlApi::callLogs(const CallPtr &call, const CallParams &params, Service *service)
{
    const bool follow = params.follow.value_or(false);
    if (follow && !call->call().more) {
        // Following needs a way to send more than one reply.
        call->fail(varlink::kErrorInvalidParameter, {{"parameter", "follow"}});
        return;
    }
    const auto &output = service->output();
    const auto count = std::min<std::size_t>(
        output.size(), static_cast<std::size_t>(params.lines.value_or(kDefaultLogLines)));
    Json list = Json::array();
    for (std::size_t i = output.size() - count; i < output.size(); ++i) {
        list.push_back(render::logLine(output.at(i)));
    }
    if (!follow) {
        call->reply({{"lines", list}});
        return;
    }
    call->reply({{"lines", list}}, true);
    followers_.push_back(Follower{call, service->name()});
}

} // namespace fdsup
