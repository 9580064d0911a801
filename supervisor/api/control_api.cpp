// The control API: one table of io.fdsup.Manager methods and what answers them (docs/control-api.md).
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

template <class>
[[maybe_unused]] inline constexpr bool kAlwaysFalse = false; // clang: used only in a discarded branch

// Reads one parameter into its field; false (the call failed with
// InvalidParameter) when it is missing but required, of the wrong type, or
// out of range.
bool decodeParam(const ParamSpec &spec, const Json &params, CallParams &out)
{
    const auto it = params.find(std::string(spec.name));
    if (it == params.end() || it->is_null()) {
        return !spec.required;
    }
    return std::visit(
        [&](auto field) {
            using Field = std::remove_reference_t<decltype(out.*field)>;
            if constexpr (std::is_same_v<Field, std::optional<std::string>>) {
                if (!it->is_string()) {
                    return false;
                }
                out.*field = it->template get<std::string>();
            } else if constexpr (std::is_same_v<Field, std::optional<std::int64_t>>) {
                if (!it->is_number_integer() || it->template get<std::int64_t>() < spec.min ||
                    it->template get<std::int64_t>() > spec.max) {
                    return false;
                }
                out.*field = it->template get<std::int64_t>();
            } else if constexpr (std::is_same_v<Field, std::optional<bool>>) {
                if (!it->is_boolean()) {
                    return false;
                }
                out.*field = it->template get<bool>();
            } else if constexpr (std::is_same_v<Field, std::optional<config::RolloutOrder>>) {
                if (!it->is_string() || (*it != "start-first" && *it != "stop-first")) {
                    return false;
                }
                out.*field =
                    *it == "start-first" ? config::RolloutOrder::StartFirst : config::RolloutOrder::StopFirst;
            } else {
                static_assert(kAlwaysFalse<Field>, "a parameter type without a decoder");
            }
            return true;
        },
        spec.field);
}

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

std::string_view paramTypeName(const ParamSpec &spec)
{
    switch (spec.field.index()) {
    case 0:
        return "string";
    case 1:
        return "int";
    case 2:
        return "bool";
    default:
        return "RolloutOrder";
    }
}

const std::vector<MethodSpec> &ControlApi::methods()
{
    const ParamSpec service{"service", &CallParams::service, true};
    const ParamSpec anyService{"service", &CallParams::service, false};
    static const std::vector<MethodSpec> table{
        {"Status", {anyService}, Access::Read, false, &ControlApi::callStatus},
        {"Sockets", {}, Access::Read, false, &ControlApi::callSockets},
        {"Connections", {anyService}, Access::Read, false, &ControlApi::callConnections},
        {"Start", {service}, Access::Operate, true, &ControlApi::callStart},
        {"Stop", {service}, Access::Operate, true, &ControlApi::callStop},
        {"Restart",
         {service,
          {"batch", &CallParams::batch, false, 1, kMaxInstances},
          {"order", &CallParams::order},
          {"queue", &CallParams::queue},
          {"wait", &CallParams::wait},
          {"timeout_usec", &CallParams::timeoutUsec, false, 1}},
         Access::Operate,
         true,
         &ControlApi::callRestart},
        {"RolloutStatus", {service}, Access::Read, false, &ControlApi::callRolloutStatus},
        {"RolloutCancel", {service}, Access::Operate, true, &ControlApi::callRolloutCancel},
        {"Scale",
         {service, {"instances", &CallParams::instances, true, 0, kMaxInstances}},
         Access::Operate,
         true,
         &ControlApi::callScale},
        {"Reload", {}, Access::Admin, false, &ControlApi::callReload},
        {"Events", {anyService}, Access::Read, false, &ControlApi::callEvents},
        {"Export", {}, Access::Admin, true, &ControlApi::callExport},
        {"Import", {}, Access::Admin, true, &ControlApi::callImport},
        {"Release", {}, Access::Admin, true, &ControlApi::callRelease},
        {"Logs",
         {service, {"lines", &CallParams::lines, false, 0}, {"follow", &CallParams::follow}},
         Access::Read,
         false,
         &ControlApi::callLogs},
        {"Reexec",
         {{"binary", &CallParams::binary}, {"timeout_usec", &CallParams::timeoutUsec, false, 1}},
         Access::Admin,
         true,
         &ControlApi::callReexec},
    };
    return table;
}

const MethodSpec *findMethod(std::string_view name)
{
    const auto &table = ControlApi::methods();
    const auto spec =
        std::find_if(table.begin(), table.end(), [&](const MethodSpec &m) { return m.name == name; });
    return spec == table.end() ? nullptr : &*spec;
}

const ParamSpec *decodeCallParams(const MethodSpec &method, const Json &parameters, CallParams &out)
{
    CallParams decoded;
    for (const auto &param : method.params) {
        if (!decodeParam(param, parameters, decoded)) {
            return &param;
        }
    }
    out = std::move(decoded);
    return nullptr;
}

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

// ---- DaemonObserver ----

void ControlApi::serviceChanged(Service &service)
{
    checkImports();
    reexecProgress();
    const ServiceState state = service.state();
    if (const auto seen = events_.stateSeen(service.name(), state); seen.changed && !events_.empty()) {
        events_.publish(events::serviceState(realtimeUsec(), service.name(), state, seen.previous,
                                             service.failedReason()));
    }
    for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (it->call->answered()) {
            it = waiters_.erase(it);
            continue;
        }
        if (it->service != service.name()) {
            ++it;
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
            reached = service.settled() && !service.rollouts().active() &&
                      (state == ServiceState::Running || state == ServiceState::Stopped);
            break;
        }
        bool finished = true;
        if (reached) {
            Json reply{{"service", service.name()}, {"state", serviceStateName(state)}};
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
}

void ControlApi::rolloutEvent(Service &service, const Rollout &rollout, const std::string &event)
{
    // The record is built only for someone waiting for progress: most
    // events have nobody, and a record lists every step.
    std::optional<Json> record;
    if (const bool began = events_.rolloutBegins(service.name(), rollout.id()); !events_.empty()) {
        events_.publish(events::rolloutStep(realtimeUsec(), rollout.record(), event, began));
    }
    for (auto it = rolloutWaiters_.begin(); it != rolloutWaiters_.end();) {
        if (it->call->answered()) {
            it = rolloutWaiters_.erase(it);
            continue;
        }
        if (it->service == service.name() && (it->rollout == 0 || it->rollout == rollout.id())) {
            it->rollout = rollout.id();
            if (it->progress) {
                if (!record) {
                    record = render::rollout(rollout.record());
                }
                it->call->reply({{"rollout", *record}, {"event", event}}, true);
            }
        }
        ++it;
    }
}

void ControlApi::rolloutFinished(Service &service, const RolloutRecord &record)
{
    reexecProgress();
    if (!events_.empty()) {
        events_.publish(events::rolloutFinished(realtimeUsec(), record));
    }
    const Json rollout = render::rollout(record);
    for (auto it = rolloutWaiters_.begin(); it != rolloutWaiters_.end();) {
        if (it->call->answered()) {
            it = rolloutWaiters_.erase(it);
            continue;
        }
        if (it->service != service.name() || (it->rollout != 0 && it->rollout != record.id)) {
            ++it;
            continue;
        }
        if (it->cancel || record.state == RolloutState::Succeeded) {
            it->call->reply({{"rollout", rollout}});
        } else {
            it->call->fail(varlink::kErrorRolloutFailed, {{"service", service.name()}, {"rollout", rollout}});
        }
        it = rolloutWaiters_.erase(it);
    }
}

void ControlApi::queuedBegan(Service &service, std::uint64_t ticket, std::uint64_t id)
{
    const auto it = std::find_if(queuedWaiters_.begin(), queuedWaiters_.end(), [&](const QueuedWaiter &q) {
        return q.service == service.name() && q.ticket == ticket;
    });
    if (it == queuedWaiters_.end()) {
        return; // nobody waits for it (queued without wait): it is still wanted
    }
    if (!it->call->answered()) {
        rolloutWaiters_.push_back(RolloutWaiter{it->call, it->service, id, it->progress, false});
    }
    queuedWaiters_.erase(it);
}

void ControlApi::queuedEnded(Service &service, std::uint64_t ticket, const Error &why)
{
    const auto it = std::find_if(queuedWaiters_.begin(), queuedWaiters_.end(), [&](const QueuedWaiter &q) {
        return q.service == service.name() && q.ticket == ticket;
    });
    if (it == queuedWaiters_.end()) {
        return;
    }
    const QueuedWaiter queued = *it;
    queuedWaiters_.erase(it);
    if (queued.call->answered()) {
        return;
    }
    if (why.code == ECANCELED) {
        queued.call->fail(
            varlink::kErrorRolloutFailed,
            {{"service", service.name()},
             {"rollout", render::queuedRollout(service, queued.options, "cancelled", why.message)}});
    } else {
        queued.call->fail(varlink::kErrorServiceFailed,
                          {{"service", service.name()}, {"reason", why.message}});
    }
}

void ControlApi::outputLine(Service &service, const LogLine &line)
{
    std::erase_if(followers_, [](const Follower &f) { return f.call->done(); });
    for (const auto &follower : followers_) {
        if (follower.service == service.name()) {
            follower.call->reply({{"lines", Json::array({render::logLine(line)})}}, true);
        }
    }
}

void ControlApi::accessChanged(const config::SupervisorConfig &supervisor)
{
    // Each call is checked against the policy of the moment it arrives, on
    // open connections too; who may connect applies to new connections.
    access_ = resolveAccessPolicy(supervisor);
    server_->setAccess(access_.uids(), access_.gids());
}

void ControlApi::serviceRemoved(const std::string &name)
{
    events_.forget(name);
    if (!events_.empty()) {
        events_.publish(events::serviceRemoved(realtimeUsec(), name));
    }
    for (const auto &follower : followers_) {
        if (follower.service == name && !follower.call->done()) {
            follower.call->reply({{"lines", Json::array()}});
        }
    }
    std::erase_if(followers_, [&](const Follower &f) { return f.service == name; });
}

void ControlApi::shutdownBegun()
{
    if (!events_.empty()) {
        events_.publish(events::daemon(realtimeUsec(), "shutdown-begun"));
    }
    for (const auto &queued : queuedWaiters_) {
        if (!queued.call->answered()) {
            queued.call->fail(varlink::kErrorShuttingDown);
        }
    }
    queuedWaiters_.clear();
}

void ControlApi::shutdownDone()
{
    for (const auto &follower : followers_) {
        if (!follower.call->done()) {
            follower.call->reply({{"lines", Json::array()}});
        }
    }
    followers_.clear();
    events_.endAll(events::daemon(realtimeUsec(), "shutdown-done"));
}

} // namespace fdsup
