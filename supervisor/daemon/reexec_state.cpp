// The re-exec state's JSON format: written whole, read whole and checked field by field.
#include "daemon/reexec_state.hpp"

#include <algorithm>
#include <cerrno>
#include <set>

#include <fcntl.h>

#include "daemon/reexec_codec.hpp"

namespace fdsup {
namespace {

using namespace state_json;

Json optionalJson(const auto &value)
{
    return value ? Json(*value) : Json();
}

Json fdJson(int fd)
{
    return fd >= 0 ? Json(fd) : Json();
}

Json encodeInstance(const InstanceSnapshot &i)
{
    return {{"id", i.id},
            {"slot", i.slot},
            {"generation", i.generation},
            {"role", i.role},
            {"state", i.state},
            {"since_usec", i.sinceUsec},
            {"started_at_usec", i.startedAtUsec},
            {"ready_at_usec", optionalJson(i.readyAtUsec)},
            {"status", optionalJson(i.status)},
            {"errno", optionalJson(i.errnoValue)},
            {"watchdog_usec", i.watchdogUsec},
            {"pid", i.pid},
            {"pidfd", i.pidfd},
            {"followed", i.followed},
            {"spawn_pid", i.spawnPid},
            {"stdout_fd", fdJson(i.stdoutFd)},
            {"stderr_fd", fdJson(i.stderrFd)},
            {"channel",
             i.channelFd >= 0
                 ? Json{{"fd", i.channelFd}, {"welcomed", i.welcomed}, {"capabilities", i.capabilities}}
                 : Json()}};
}

Json encodeRollout(const std::optional<RolloutRecord> &record)
{
    if (!record) {
        return Json();
    }
    const RolloutRecord &r = *record;
    Json steps = Json::array();
    for (const auto &step : r.steps) {
        steps.push_back({{"index", step.index},
                         {"phase", rolloutPhaseName(step.phase)},
                         {"old_id", step.oldId},
                         {"old_pid", step.oldPid},
                         {"new_id", step.newId},
                         {"new_pid", step.newPid},
                         {"reason", step.reason}});
    }
    Json failure;
    if (r.failure) {
        failure = {{"index", r.failure->index},
                   {"pid", r.failure->pid},
                   {"generation", r.failure->generation},
                   {"reason", r.failure->reason},
                   {"output", r.failure->output}};
    }
    return {{"id", r.id},
            {"service", r.service},
            {"from_generation", r.fromGeneration},
            {"to_generation", r.toGeneration},
            {"batch", r.options.batch},
            {"order", rolloutOrderName(r.options.order)},
            {"timeout_usec", r.options.timeout.count()},
            {"state", rolloutStateName(r.state)},
            {"reason", r.reason},
            {"failure", failure},
            {"started_realtime_usec", r.startedRealtimeUsec},
            {"duration_usec", r.duration.count()},
            {"steps", steps}};
}

Json encodeOutput(const std::vector<LogEntry> &lines)
{
    Json out = Json::array();
    for (const auto &l : lines) {
        out.push_back({{"realtime_usec", l.realtimeUsec},
                       {"index", l.index},
                       {"pid", l.pid},
                       {"generation", l.generation},
                       {"stderr", l.isStderr},
                       {"text", l.text}});
    }
    return out;
}

Json encodeStored(const std::vector<StoredFdSnapshot> &stored)
{
    Json out = Json::array();
    for (const auto &s : stored) {
        out.push_back({{"name", s.name}, {"fd", s.fd}, {"poll", s.poll}});
    }
    return out;
}

Json encodeService(const ServiceSnapshot &s)
{
    Json slots = Json::array();
    for (const auto &slot : s.slots) {
        slots.push_back({{"restarts", slot.restarts},
                         {"consecutive_failures", slot.consecutiveFailures},
                         {"done", slot.done},
                         {"last_failed", slot.lastFailed},
                         {"last_exit", slot.lastExit},
                         {"last_error", slot.lastError}});
    }
    Json instances = Json::array();
    for (const auto &i : s.instances) {
        instances.push_back(encodeInstance(i));
    }
    return {{"name", s.name},
            {"generation", s.generation},
            {"next_generation", s.nextGeneration},
            {"active", s.active},
            {"failed", s.failed},
            {"failed_reason", s.failedReason},
            {"restarts_total", s.restartsTotal},
            {"restart_times_usec", s.restartTimesUsec},
            {"slots", slots},
            {"notify_fd", s.notifyFd},
            {"instances", instances},
            {"last_rollout", encodeRollout(s.lastRollout)},
            {"rollout_serial", s.rolloutSerial},
            {"rollout_tickets", s.rolloutTickets},
            {"output", encodeOutput(s.output)},
            {"stored", encodeStored(s.stored)},
            {"waiting_for", s.waitingFor},
            {"preload", encodePreload(s.preload)},
            {"activation", encodeActivation(s.activation)},
            {"handoff",
             {{"handed", s.handoff.handed},
              {"adopted", s.handoff.adopted},
              {"expired", s.handoff.expired},
              {"hung_up", s.handoff.hungUp},
              {"refused", s.handoff.refused}}},
            {"metrics", encodeServiceMetrics(s)}};
}

InstanceSnapshot decodeInstance(const Reader &r)
{
    InstanceSnapshot i;
    i.id = r.at("id").unsigned64();
    i.slot = uintField(r, "slot");
    i.generation = uintField(r, "generation");
    i.role = r.at("role").string();
    if (i.role != "primary") {
        throw FieldError{r.path() + ".role", "'" + i.role + "' is not carried (only \"primary\")"};
    }
    i.state = r.at("state").string();
    if (i.state != "ready") {
        throw FieldError{r.path() + ".state", "'" + i.state + "' is not carried (only \"ready\")"};
    }
    i.sinceUsec = r.at("since_usec").integer<std::int64_t>(0, kMaxUsec);
    i.startedAtUsec = r.at("started_at_usec").integer<std::int64_t>(0, kMaxUsec);
    if (r.has("ready_at_usec")) {
        i.readyAtUsec = r.at("ready_at_usec").integer<std::int64_t>(0, kMaxUsec);
    }
    if (r.has("status")) {
        i.status = r.at("status").string();
    }
    if (r.has("errno")) {
        i.errnoValue = r.at("errno").integer<int>(0, kMaxInt);
    }
    i.watchdogUsec = r.at("watchdog_usec").integer<std::int64_t>(0, kMaxUsec);
    i.pid = r.at("pid").integer<pid_t>(1, kMaxInt);
    i.pidfd = fdField(r, "pidfd");
    // Added within version 1 (pid_file): an older state followed no daemon.
    if (r.has("followed")) {
        i.followed = r.at("followed").boolean();
    }
    if (r.has("spawn_pid")) {
        i.spawnPid = r.at("spawn_pid").integer<pid_t>(0, kMaxInt);
    }
    i.stdoutFd = fdField(r, "stdout_fd", true);
    i.stderrFd = fdField(r, "stderr_fd", true);
    if (r.has("channel")) {
        const Reader c = r.at("channel");
        i.channelFd = fdField(c, "fd");
        i.welcomed = c.at("welcomed").boolean();
        i.capabilities = uintField(c, "capabilities");
    }
    return i;
}

// An enumerator by the name its Name() function gives it.
template <class Enum, class NameOf>
Enum enumField(const Reader &r, std::string_view key, NameOf nameOf, int count)
{
    const std::string name = r.at(key).string();
    for (int i = 0; i < count; ++i) {
        if (name == nameOf(static_cast<Enum>(i))) {
            return static_cast<Enum>(i);
        }
    }
    throw FieldError{r.at(key).path(), "unknown value '" + name + "'"};
}

std::optional<RolloutRecord> decodeRollout(const Reader &parent)
{
    if (!parent.has("last_rollout")) {
        return std::nullopt;
    }
    const Reader r = parent.at("last_rollout");
    RolloutRecord record;
    record.id = r.at("id").unsigned64();
    record.service = r.at("service").string();
    record.fromGeneration = uintField(r, "from_generation");
    record.toGeneration = uintField(r, "to_generation");
    record.options.batch = uintField(r, "batch");
    record.options.order = enumField<config::RolloutOrder>(r, "order", rolloutOrderName, 2);
    record.options.timeout = Duration(r.at("timeout_usec").integer<std::int64_t>(0, kMaxUsec));
    record.state = enumField<RolloutState>(r, "state", rolloutStateName, 5);
    record.reason = r.at("reason").string();
    if (r.has("failure")) {
        const Reader f = r.at("failure");
        RolloutFailure failure{uintField(f, "index"),
                               f.at("pid").integer<pid_t>(0, kMaxInt),
                               uintField(f, "generation"),
                               f.at("reason").string(),
                               {}};
        f.at("output").each([&](const Reader &line) { failure.output.push_back(line.string()); });
        record.failure = std::move(failure);
    }
    record.startedRealtimeUsec = r.at("started_realtime_usec").integer<std::int64_t>(0, kMaxUsec);
    record.duration = Duration(r.at("duration_usec").integer<std::int64_t>(0, kMaxUsec));
    r.at("steps").each([&](const Reader &st) {
        RolloutStep step;
        step.index = uintField(st, "index");
        step.phase = enumField<RolloutStep::Phase>(st, "phase", rolloutPhaseName, 8);
        step.oldId = st.at("old_id").unsigned64();
        step.oldPid = st.at("old_pid").integer<pid_t>(0, kMaxInt);
        step.newId = st.at("new_id").unsigned64();
        step.newPid = st.at("new_pid").integer<pid_t>(0, kMaxInt);
        step.reason = st.at("reason").string();
        record.steps.push_back(std::move(step));
    });
    return record;
}

ServiceSnapshot decodeService(const Reader &r)
{
    ServiceSnapshot s;
    s.name = r.at("name").string();
    s.generation = uintField(r, "generation");
    s.nextGeneration = uintField(r, "next_generation");
    s.active = r.at("active").boolean();
    s.failed = r.at("failed").boolean();
    s.failedReason = r.at("failed_reason").string();
    s.restartsTotal = uintField(r, "restarts_total");
    r.at("restart_times_usec").each([&](const Reader &t) {
        s.restartTimesUsec.push_back(t.integer<std::int64_t>(0, kMaxUsec));
    });
    r.at("slots").each([&](const Reader &slot) {
        SlotHistory h;
        h.restarts = uintField(slot, "restarts");
        h.consecutiveFailures = uintField(slot, "consecutive_failures");
        h.done = slot.at("done").boolean();
        h.lastFailed = slot.at("last_failed").boolean();
        h.lastExit = slot.at("last_exit").string();
        h.lastError = slot.at("last_error").string();
        s.slots.push_back(std::move(h));
    });
    s.notifyFd = fdField(r, "notify_fd");
    r.at("instances").each([&](const Reader &i) {
        s.instances.push_back(decodeInstance(i));
        if (s.instances.back().slot >= s.slots.size()) {
            throw FieldError{i.path() + ".slot", "no such slot"};
        }
    });
    s.lastRollout = decodeRollout(r);
    s.rolloutSerial = r.at("rollout_serial").unsigned64();
    s.rolloutTickets = r.at("rollout_tickets").unsigned64();
    r.at("stored").each([&](const Reader &st) {
        s.stored.push_back(
            StoredFdSnapshot{st.at("name").string(), fdField(st, "fd"), st.at("poll").boolean()});
    });
    // Added within version 1: a state written without it waits for nothing.
    if (r.has("waiting_for")) {
        s.waitingFor = r.at("waiting_for").string();
    }
    // Added within version 1 too: an older state carried no wrapped service.
    if (r.has("preload")) {
        s.preload = decodePreload(r.at("preload"));
    }
    // Added within version 1 as well: an older state refused activation sockets.
    if (r.has("activation")) {
        s.activation = decodeActivation(r.at("activation"));
    }
    const Reader h = r.at("handoff");
    s.handoff = HandoffCounters{h.at("handed").unsigned64(), h.at("adopted").unsigned64(),
                                h.at("expired").unsigned64(), h.at("hung_up").unsigned64(),
                                h.at("refused").unsigned64()};
    if (r.has("metrics")) {
        decodeServiceMetrics(r.at("metrics"), s);
    }
    r.at("output").each([&](const Reader &l) {
        s.output.push_back(LogEntry{l.at("realtime_usec").integer<std::int64_t>(0, kMaxUsec),
                                    uintField(l, "index"), l.at("pid").integer<pid_t>(0, kMaxInt),
                                    uintField(l, "generation"), l.at("stderr").boolean(),
                                    l.at("text").string()});
    });
    return s;
}

void decodeHeader(const Reader &r, ReexecState &state)
{
    if (const std::string format = r.at("format").string(); format != kReexecStateFormat) {
        throw FieldError{"format", "'" + format + "' is not \"" + std::string(kReexecStateFormat) + "\""};
    }
    state.version = r.at("version").integer<unsigned>(0, kMaxInt);
    if (state.version != kReexecStateVersion) {
        throw FieldError{"version", "state version " + std::to_string(state.version) +
                                        " is not readable by this fdsupd (it reads " +
                                        std::to_string(kReexecStateVersion) + ")"};
    }
    state.fdsupdVersion = r.at("fdsupd_version").string();
    state.reexecs = uintField(r, "reexecs");
    state.startedFrom = r.at("started_from").string();
    state.configPath = r.at("config_path").string();
    state.configText = r.at("config").string();
    state.notifyPrefix = r.at("notify_prefix").string();
    state.nextInstanceId = r.at("next_instance_id").unsigned64();
    state.nofileCur = r.at("nofile_cur").unsigned64();
    state.nofileMax = r.at("nofile_max").unsigned64();
    state.controlFd = fdField(r, "control_fd");
    // Added within version 1: an older image served no metrics.
    state.metricsFd = fdField(r, "metrics_fd", true);
    if (r.has("reloads")) {
        state_json::decodeCounts(r.at("reloads"), state.reloads);
    }
}

void decodeBody(const Reader &r, ReexecState &state)
{
    if (r.has("caller")) {
        const Reader c = r.at("caller");
        state.caller = CallerSnapshot{fdField(c, "fd"), c.at("pid").integer<pid_t>(0, kMaxInt),
                                      c.at("uid").integer<uid_t>(0, 0xffffffffLL),
                                      c.at("gid").integer<gid_t>(0, 0xffffffffLL)};
    }
    r.at("control_clients").each([&](const Reader &fd) {
        state.controlClients.push_back(fd.integer<int>(3, kMaxInt));
    });
    r.at("log_followers").each([&](const Reader &f) {
        state.followers.push_back(FollowerSnapshot{fdField(f, "fd"), f.at("service").string()});
    });
    r.at("sockets").each([&](const Reader &s) {
        SocketSnapshot socket;
        socket.name = s.at("name").string();
        s.at("fds").each([&](const Reader &fd) { socket.fds.push_back(fd.integer<int>(3, kMaxInt)); });
        s.at("addresses").each([&](const Reader &a) { socket.addresses.push_back(a.string()); });
        if (socket.addresses.size() != socket.fds.size()) {
            throw FieldError{s.path() + ".addresses", "not one per fd"};
        }
        socket.adopted = s.at("adopted").boolean();
        state.sockets.push_back(std::move(socket));
    });
    r.at("services").each([&](const Reader &s) { state.services.push_back(decodeService(s)); });
}

} // namespace

std::vector<int> ReexecState::fds() const
{
    std::vector<int> all;
    eachFd(*this, [&](int fd) { all.push_back(fd); });
    return all;
}

std::string encodeState(const ReexecState &state)
{
    Json sockets = Json::array();
    for (const auto &s : state.sockets) {
        sockets.push_back(
            {{"name", s.name}, {"fds", s.fds}, {"addresses", s.addresses}, {"adopted", s.adopted}});
    }
    Json followers = Json::array();
    for (const auto &f : state.followers) {
        followers.push_back({{"fd", f.fd}, {"service", f.service}});
    }
    Json services = Json::array();
    for (const auto &s : state.services) {
        services.push_back(encodeService(s));
    }
    const Json caller = state.caller ? Json{{"fd", state.caller->fd},
                                            {"pid", state.caller->pid},
                                            {"uid", state.caller->uid},
                                            {"gid", state.caller->gid}}
                                     : Json();
    Json doc{{"format", kReexecStateFormat},
             {"version", state.version},
             {"fdsupd_version", state.fdsupdVersion},
             {"reexecs", state.reexecs},
             {"started_from", state.startedFrom},
             {"config_path", state.configPath},
             {"config", state.configText},
             {"notify_prefix", state.notifyPrefix},
             {"next_instance_id", state.nextInstanceId},
             {"nofile_cur", state.nofileCur},
             {"nofile_max", state.nofileMax},
             {"control_fd", state.controlFd},
             {"caller", caller},
             {"control_clients", state.controlClients},
             {"log_followers", followers},
             {"sockets", sockets},
             {"services", services},
             {"reloads", state.reloads}};
    if (state.metricsFd >= 0) {
        doc["metrics_fd"] = state.metricsFd;
    }
    return doc.dump();
}

Result<ReexecState> decodeState(std::string_view text)
{
    if (text.size() > kReexecStateMaxSize) {
        return Error{EFBIG, "state: " + std::to_string(text.size()) + " bytes, more than the limit"};
    }
    const Json doc = Json::parse(text, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
        return Error{EBADMSG, "state: not a JSON object"};
    }
    ReexecState state;
    try {
        const Reader root(doc, "");
        decodeHeader(root, state);
        decodeBody(root, state);
    } catch (const FieldError &e) {
        return Error{EBADMSG, "state: " + e.path + ": " + e.what};
    }
    std::set<int> seen;
    for (const int fd : state.fds()) {
        if (!seen.insert(fd).second) {
            return Error{EBADMSG, "state: fd " + std::to_string(fd) + " is named twice"};
        }
    }
    return state;
}

Result<ReexecState> decodeAndCheckState(std::string_view text)
{
    auto state = decodeState(text);
    if (!state) {
        return state;
    }
    for (const int fd : state->fds()) {
        if (::fcntl(fd, F_GETFD) < 0) {
            return Error{EBADF, "state: fd " + std::to_string(fd) + " is not open"};
        }
    }
    return state;
}

} // namespace fdsup
