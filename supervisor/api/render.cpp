// The control API's JSON: the one place the model is turned into what clients read (docs/control-api.md).
#include "api/render.hpp"

#include <algorithm>

#include "config/names.hpp"

namespace fdsup::render {
namespace {

using Json = nlohmann::json;

Json textOrNull(const std::string &text)
{
    return text.empty() ? Json() : Json(text);
}

Json pidOrNull(pid_t pid)
{
    return pid > 0 ? Json(pid) : Json();
}

Json adoption(const ListenerReport &report)
{
    return {{"adopted_by", pidOrNull(report.adoptedBy)},
            {"pending", report.pending},
            {"reason", textOrNull(report.reason)}};
}

Json listeners(const Service &service, const Instance &i)
{
    if (i.config().wrap != config::Wrap::Preload) {
        return nullptr;
    }
    Json list = Json::array();
    for (const auto &report : service.listenerReport(i)) {
        Json entry = adoption(report);
        entry["name"] = report.name;
        list.push_back(std::move(entry));
    }
    return list;
}

Json instance(const Service &service, const Instance &i, Duration now)
{
    // A candidate or a retiring instance does not own its slot's history.
    const SlotHistory *slot = i.role() == InstanceRole::Primary && i.slot() < service.slots().size()
                                  ? &service.slots()[i.slot()]
                                  : nullptr;
    Json j{
        {"index", i.slot()},
        {"generation", i.generation()},
        {"pid", i.pid()},
        {"state", instanceStateName(i.state())},
        {"since_usec", i.since().count()},
        {"uptime_usec", (now - i.startedAt()).count()},
        {"restarts", slot != nullptr ? slot->restarts : 0},
        {"status", i.status() ? Json(*i.status()) : Json()},
        {"last_exit", slot != nullptr ? textOrNull(slot->lastExit) : Json()},
        {"last_error", slot != nullptr ? textOrNull(slot->lastError) : Json()},
    };
    if (i.errnoValue()) {
        j["errno"] = *i.errnoValue();
    }
    j["listeners"] = listeners(service, i);
    return j;
}

Json externalWorkers(const Service &service)
{
    const Duration now = service.now();
    Json list = Json::array();
    for (const auto &external : service.externalWorkers()) {
        list.push_back({{"id", external->id()},
                        {"pid", external->pid()},
                        {"uid", external->uid()},
                        {"gid", external->gid()},
                        {"ready", external->ready()},
                        {"draining", external->draining()},
                        {"status", external->status() ? Json(*external->status()) : Json()},
                        {"adopted", external->adopted()},
                        {"connected_usec", (now - external->since()).count()}});
    }
    return list;
}

// A dead predecessor's workers: what they do now, and what they wait for.
Json orphaned(const Service &service, const OrphanedWorkers *orphans)
{
    Json list = Json::array();
    if (orphans == nullptr) {
        return list;
    }
    std::string status;
    if (orphans->retiring()) {
        status = "stopping: " + config::signalName(orphans->stopSignal()) + " sent " +
                 formatDuration(service.now() - orphans->retiredAt()) + " ago";
    } else if (service.state() == ServiceState::Failed) {
        status = "kept serving: the service's own instances failed";
    } else {
        status = "serving until the service's own instances are ready";
    }
    for (const auto &orphan : orphans->orphans()) {
        list.push_back({{"pid", orphan.pid},
                        {"command", orphan.command},
                        {"state", "orphaned"},
                        {"stopping", orphans->retiring()},
                        {"status", status}});
    }
    return list;
}

} // namespace

Json service(const Service &service, const OrphanedWorkers *orphans)
{
    const Duration now = service.now();
    Json instances = Json::array();
    std::size_t ready = 0;
    for (const auto &i : service.instances()) {
        instances.push_back(instance(service, *i, now));
        ready += i->state() == InstanceState::Ready && i->role() != InstanceRole::Retiring ? 1 : 0;
    }
    for (unsigned index = 0; index < service.slots().size(); ++index) {
        const bool live = std::any_of(service.instances().begin(), service.instances().end(),
                                      [index](const auto &i) { return i->slot() == index; });
        if (live) {
            continue;
        }
        const SlotHistory &slot = service.slots()[index];
        instances.push_back({
            {"index", index},
            {"generation", service.generation()},
            {"pid", nullptr},
            {"state", slot.lastFailed ? "failed" : "exited"},
            {"since_usec", nullptr},
            {"uptime_usec", nullptr},
            {"restarts", slot.restarts},
            {"status", nullptr},
            {"last_exit", textOrNull(slot.lastExit)},
            {"last_error", textOrNull(slot.lastError)},
            {"listeners", nullptr},
        });
    }
    Json store = Json::array();
    for (const auto &[name, count] : service.fdStore().summary()) {
        store.push_back({{"name", name}, {"fds", count}});
    }
    const auto &activation = service.config().activationSocket;
    return {
        {"name", service.name()},
        {"state", serviceStateName(service.state())},
        {"generation", service.generation()},
        {"wanted", service.active() ? service.wanted() : 0},
        {"ready", ready},
        {"restarts", service.restartsTotal()},
        {"failed_reason", textOrNull(service.failedReason())},
        {"waiting_for", textOrNull(service.waitingFor())},
        {"notify_socket", service.notify().socketPath()},
        {"notify_dropped", service.notify().dropped()},
        {"fdstore", store},
        {"instances", instances},
        {"activation_socket", activation ? Json(*activation) : Json()},
        {"external", externalWorkers(service)},
        {"orphaned", orphaned(service, orphans)},
        {"wrap", config::names::nameOf(config::names::kWrap, service.config().wrap)},
        {"preload_socket",
         service.preloadSocket() != nullptr ? Json(service.preloadSocket()->address()) : Json()},
        {"wrap_problem", service.config().wrap == config::Wrap::Preload && service.profile()->preloadBlocker
                             ? Json(*service.profile()->preloadBlocker)
                             : Json()},
        {"rollout",
         service.rollouts().current() != nullptr ? rollout(service.rollouts().current()->record()) : Json()},
    };
}

Json connections(const Service &service)
{
    const Duration now = service.now();
    const HandoffBroker &broker = service.broker();
    Json held = Json::array();
    for (const auto &h : broker.held()) {
        held.push_back({{"id", h->id},
                        {"from_pid", h->from},
                        {"from_external", h->fromExternal},
                        {"from_generation", h->fromGeneration},
                        {"held_usec", (now - h->since).count()},
                        {"state_bytes", h->stateSize}});
    }
    Json adopters = Json::array();
    for (const auto &i : service.instances()) {
        if (i->joined()) {
            adopters.push_back({{"index", i->slot()},
                                {"external", false},
                                {"pid", i->pid()},
                                {"generation", i->generation()},
                                {"adopted", i->adopted()},
                                {"ready", canAdopt(*i)},
                                {"draining", i->state() == InstanceState::Draining}});
        }
    }
    for (const auto &external : service.externalWorkers()) {
        if (external->joined()) {
            adopters.push_back({{"index", nullptr},
                                {"external", true},
                                {"id", external->id()},
                                {"pid", external->pid()},
                                {"uid", external->uid()},
                                {"generation", service.generation()},
                                {"adopted", external->adopted()},
                                {"ready", canAdopt(*external)},
                                {"draining", external->draining()}});
        }
    }
    const HandoffCounters &counters = broker.counters();
    return {{"service", service.name()},
            {"handoff", service.config().handoff},
            {"handoff_timeout_usec", broker.holdTimeout().count()},
            {"held", held},
            {"instances", adopters},
            {"handed", counters.handed},
            {"adopted", counters.adopted},
            {"expired", counters.expired},
            {"hung_up", counters.hungUp},
            {"refused", counters.refused}};
}

Json rollout(const RolloutRecord &r)
{
    Json steps = Json::array();
    for (const auto &step : r.steps) {
        steps.push_back({{"index", step.index},
                         {"phase", rolloutPhaseName(step.phase)},
                         {"old_pid", pidOrNull(step.oldPid)},
                         {"new_pid", pidOrNull(step.newPid)},
                         {"reason", textOrNull(step.reason)}});
    }
    return {
        {"id", r.id},
        {"service", r.service},
        {"from_generation", r.fromGeneration},
        {"to_generation", r.toGeneration},
        {"order", rolloutOrderName(r.options.order)},
        {"batch", r.options.batch},
        {"state", rolloutStateName(r.state)},
        {"reason", textOrNull(r.reason)},
        {"failure", r.failure ? Json{{"index", r.failure->index},
                                     {"pid", pidOrNull(r.failure->pid)},
                                     {"generation", r.failure->generation},
                                     {"reason", r.failure->reason},
                                     {"output", r.failure->output}}
                              : Json()},
        {"started_usec", r.startedRealtimeUsec},
        {"duration_usec", r.duration.count()},
        {"steps", steps},
    };
}

Json currentRollout(const Service &service)
{
    if (const Rollout *current = service.rollouts().current()) {
        return rollout(current->record());
    }
    const auto &last = service.rollouts().last();
    return last ? rollout(*last) : Json();
}

Json queuedRollout(const Service &service, const RolloutOptions &options, const char *state,
                   const std::string &reason)
{
    return {{"id", 0},
            {"service", service.name()},
            {"from_generation", service.generation()},
            {"to_generation", 0},
            {"order", rolloutOrderName(options.order)},
            {"batch", options.batch},
            {"state", state},
            {"reason", textOrNull(reason)},
            {"failure", nullptr},
            {"started_usec", 0},
            {"duration_usec", 0},
            {"steps", Json::array()}};
}

Json logLine(const LogLine &line)
{
    return {{"time_usec", line.realtimeUsec},
            {"index", line.index},
            {"pid", line.pid},
            {"generation", line.generation},
            {"stream", line.isStderr ? "stderr" : "stdout"},
            {"text", std::string(line.text)}};
}

namespace {

// Every live instance of a wrapped service using the socket, and whether it adopted it.
void socketAdoption(const Service &service, const std::string &socket, Json &out)
{
    for (const auto &i : service.instances()) {
        for (const auto &report : service.listenerReport(*i)) {
            if (report.name != socket) {
                continue;
            }
            Json entry = adoption(report);
            entry["service"] = service.name();
            entry["index"] = i->slot();
            entry["pid"] = i->pid();
            out.push_back(std::move(entry));
        }
    }
}

} // namespace

Json sockets(const SocketSet &sockets, const std::vector<std::unique_ptr<Service>> &services)
{
    Json list = Json::array();
    for (const auto &held : sockets.sockets()) {
        Json listen = Json::array();
        for (const auto &address : held.config.listen) {
            listen.push_back(formatAddress(address));
        }
        Json bound = Json::array();
        for (std::size_t i = 0; i < held.fds.size(); ++i) {
            bound.push_back({{"address", held.addresses.at(i)},
                             {"fd", held.fds[i].get()},
                             {"origin", held.adopted ? "adopted" : "bound"}});
        }
        Json users = Json::array();
        Json adopted = Json::array();
        for (const auto &service : services) {
            const auto &names = service->config().sockets;
            if (std::find(names.begin(), names.end(), held.config.name) != names.end()) {
                users.push_back(service->name());
            }
            socketAdoption(*service, held.config.name, adopted);
        }
        list.push_back({{"name", held.config.name},
                        {"listen", listen},
                        {"bound", bound},
                        {"services", users},
                        {"adoption", adopted}});
    }
    return {{"sockets", list}};
}

} // namespace fdsup::render
