// fdsupctl's human output of each command, from the control API's JSON replies.
#include "replies.hpp"

#include <algorithm>
#include <optional>

namespace fdsup::ctl {
namespace {

using Json = nlohmann::json;

// Accessors that never throw: a daemon newer or older than this fdsupctl
// may add or omit members.
std::string text(const Json &j, const char *key)
{
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        return "-";
    }
    if (it->is_string()) {
        const std::string s = printable(it->get_ref<const std::string &>());
        return s.empty() ? "-" : s;
    }
    return printable(it->dump());
}

const Json *member(const Json &j, const char *key)
{
    if (!j.is_object()) {
        return nullptr;
    }
    const auto it = j.find(key);
    return it == j.end() ? nullptr : &*it;
}

const Json &arrayOf(const Json &j, const char *key)
{
    static const Json empty = Json::array();
    const Json *m = member(j, key);
    return m != nullptr && m->is_array() ? *m : empty;
}

std::string optionalText(const Json &j, const char *key)
{
    const Json *m = member(j, key);
    return m != nullptr && m->is_string() ? printable(m->get_ref<const std::string &>()) : std::string();
}

std::optional<std::uint64_t> unsignedOf(const Json &j, const char *key)
{
    const Json *m = member(j, key);
    if (m == nullptr || !m->is_number_integer()) {
        return std::nullopt;
    }
    if (m->is_number_unsigned()) {
        return m->get<std::uint64_t>();
    }
    const auto v = m->get<std::int64_t>();
    return v >= 0 ? std::optional<std::uint64_t>(static_cast<std::uint64_t>(v)) : std::nullopt;
}

const Json &objectOf(const Json &j, const char *key)
{
    static const Json empty = Json::object();
    const Json *m = member(j, key);
    return m != nullptr && m->is_object() ? *m : empty;
}

// One palette for service and instance states: running/ready are good,
// transitions are in progress, failed is bad, the rest is quiet.
Colour stateColour(std::string_view state)
{
    if (state == "running" || state == "ready") {
        return Colour::Green;
    }
    if (state == "starting" || state == "stopping" || state == "draining" || state == "orphaned") {
        return Colour::Yellow;
    }
    if (state == "failed") {
        return Colour::Red;
    }
    return Colour::Dim;
}

// Rollouts and their steps: finished well, in progress, undone.
Colour rolloutColour(std::string_view state)
{
    if (state == "succeeded" || state == "done") {
        return Colour::Green;
    }
    if (state == "failed" || state == "cancelled" || state == "rolled-back") {
        return Colour::Red;
    }
    if (state == "pending") {
        return Colour::Dim;
    }
    return Colour::Yellow;
}

std::string generations(const Json &rollout)
{
    return text(rollout, "from_generation") + " \u2192 " + text(rollout, "to_generation");
}

// "web: rollout 7", the subject of every line about a rollout.
std::string rolloutSubject(const Json &rollout)
{
    return text(rollout, "service") + ": rollout " + text(rollout, "id");
}

// "web[1] (pid 4321, generation 3): exited with status 1", then the
// replacement's last output lines, each indented by indent plus two.
std::string failureLines(const Json &rollout, const std::string &indent)
{
    const Json &failure = objectOf(rollout, "failure");
    if (failure.empty()) {
        return {};
    }
    std::string out = text(rollout, "service") + "[" + text(failure, "index") + "] (pid " +
                      text(failure, "pid") + ", generation " + text(failure, "generation") +
                      "): " + text(failure, "reason") + "\n";
    for (const Json &line : arrayOf(failure, "output")) {
        out +=
            indent + "  " + (line.is_string() ? printable(line.get_ref<const std::string &>()) : "?") + "\n";
    }
    return out;
}

// "  rollout 7: running, generation 2 → 3 (1/4 done)" under a service in
// `status`; nothing without a rollout.
std::string rolloutProgress(const Json &rollout, bool colour)
{
    if (rollout.empty()) {
        return {};
    }
    const Json &steps = arrayOf(rollout, "steps");
    const auto done = std::count_if(steps.begin(), steps.end(),
                                    [](const Json &step) { return optionalText(step, "phase") == "done"; });
    const std::string state = text(rollout, "state");
    return "  rollout " + text(rollout, "id") + ": " + painted(state, rolloutColour(state), colour) +
           ", generation " + generations(rollout) + " (" + std::to_string(done) + "/" +
           std::to_string(steps.size()) + " done)\n";
}

// A worker of a dead fdsupd that this one took over, until it is replaced.
std::vector<Cell> orphanRow(const Json &orphan)
{
    const std::string state = text(orphan, "state");
    return {{"orphan"}, {text(orphan, "pid")},   {state, stateColour(state)}, {"-"},
            {"-"},      {text(orphan, "status")}};
}

// An instance that is not running has no uptime and no pid worth showing;
// its last exit or error says more than its last STATUS=.
// A worker fdsupd did not spawn, connected to the activation socket.
std::vector<Cell> externalRow(const Json &external)
{
    const auto flag = [&](const char *name) {
        const Json *value = member(external, name);
        return value != nullptr && value->is_boolean() && value->get<bool>();
    };
    const std::string state = flag("draining") ? "draining" : flag("ready") ? "ready" : "starting";
    std::string uptime = "-";
    if (const Json *u = member(external, "connected_usec"); u != nullptr && u->is_number_unsigned()) {
        uptime = formatUptime(u->get<std::uint64_t>());
    }
    const std::string status = optionalText(external, "status");
    return {{"external " + text(external, "id")},
            {text(external, "pid")},
            {state, stateColour(state)},
            {"-"},
            {uptime},
            {status.empty() ? "-" : status}};
}

std::vector<Cell> instanceRow(const Json &instance)
{
    const std::string state = text(instance, "state");
    const bool running =
        state == "starting" || state == "ready" || state == "draining" || state == "stopping";
    std::string pid = "-";
    if (const Json *p = member(instance, "pid");
        running && p != nullptr && p->is_number_integer() && p->get<std::int64_t>() > 0) {
        pid = std::to_string(p->get<std::int64_t>());
    }
    std::string uptime = "-";
    if (const Json *u = member(instance, "uptime_usec"); running && u != nullptr && u->is_number_unsigned()) {
        uptime = formatUptime(u->get<std::uint64_t>());
    }
    std::string status = optionalText(instance, "status");
    if (!running) {
        std::string why = optionalText(instance, "last_error");
        if (why.empty()) {
            why = optionalText(instance, "last_exit");
        }
        if (!why.empty()) {
            status = why;
        }
    }
    return {{text(instance, "index")},      {pid},    {state, stateColour(state)},
            {text(instance, "generation")}, {uptime}, {status.empty() ? "-" : status}};
}

} // namespace

namespace {

// "adopted by pid 4711", "not adopted: why", "waiting: why".
std::string adoptionText(const Json &entry)
{
    const Json *by = member(entry, "adopted_by");
    if (by != nullptr && by->is_number_integer()) {
        return "adopted by pid " + std::to_string(by->get<long long>());
    }
    const Json *pending = member(entry, "pending");
    const std::string reason = optionalText(entry, "reason");
    if (pending != nullptr && pending->is_boolean() && pending->get<bool>()) {
        return reason.empty() ? "waiting" : reason;
    }
    return "not adopted" + (reason.empty() ? std::string() : ": " + reason);
}

// A wrapped service: why the shim cannot load, and each instance's listeners.
std::string wrapLines(const Json &service)
{
    std::string out;
    if (const std::string problem = optionalText(service, "wrap_problem"); !problem.empty()) {
        out += "  wrap: " + problem + "\n";
    }
    for (const Json &instance : arrayOf(service, "instances")) {
        for (const Json &listener : arrayOf(instance, "listeners")) {
            out += "  " + text(service, "name") + "[" + text(instance, "index") + "] listener '" +
                   text(listener, "name") + "': " + adoptionText(listener) + "\n";
        }
    }
    return out;
}

// Why a service is not running: its failure, or the socket it waits for.
std::string reasonOf(const Json &service)
{
    const std::string waiting = optionalText(service, "waiting_for");
    return waiting.empty() ? optionalText(service, "failed_reason") : "waiting for socket '" + waiting + "'";
}

} // namespace

std::string formatStatus(const Json &reply, bool colour)
{
    const Json &services = arrayOf(reply, "services");
    const bool anyReason =
        std::any_of(services.begin(), services.end(), [](const Json &s) { return !reasonOf(s).empty(); });
    std::vector<std::string> header = {"SERVICE", "STATE", "GEN", "READY/WANTED", "RESTARTS"};
    if (anyReason) {
        header.emplace_back("REASON");
    }
    Table table(header);
    // One table for every instance, so the blocks under each service line up.
    Table instances({"INSTANCE", "PID", "STATE", "GEN", "UPTIME", "STATUS"}, "  ");
    std::vector<std::size_t> firstInstance;
    std::vector<std::string> rolloutLines;
    std::vector<std::string> adoptionLines;
    for (const Json &service : services) {
        const std::string state = text(service, "state");
        std::vector<Cell> row = {{text(service, "name")},
                                 {state, stateColour(state)},
                                 {text(service, "generation")},
                                 {text(service, "ready") + "/" + text(service, "wanted")},
                                 {text(service, "restarts")}};
        if (anyReason) {
            row.push_back({reasonOf(service)});
        }
        table.addRow(std::move(row));
        rolloutLines.push_back(rolloutProgress(objectOf(service, "rollout"), colour));
        adoptionLines.push_back(wrapLines(service));
        firstInstance.push_back(instances.rows());
        for (const Json &instance : arrayOf(service, "instances")) {
            instances.addRow(instanceRow(instance));
        }
        for (const Json &external : arrayOf(service, "external")) {
            instances.addRow(externalRow(external));
        }
        for (const Json &orphan : arrayOf(service, "orphaned")) {
            instances.addRow(orphanRow(orphan));
        }
    }
    firstInstance.push_back(instances.rows());

    std::string out = table.renderHeader();
    for (std::size_t i = 0; i < table.rows(); ++i) {
        out += table.renderRow(i, colour);
        out += rolloutLines[i];
        if (firstInstance[i] < firstInstance[i + 1]) {
            out += instances.renderHeader();
        }
        for (std::size_t k = firstInstance[i]; k < firstInstance[i + 1]; ++k) {
            out += instances.renderRow(k, colour);
        }
        out += adoptionLines[i];
    }
    return out;
}

std::string formatSockets(const Json &reply, bool colour)
{
    Table table({"SOCKET", "ADDRESS", "FD", "ORIGIN", "SERVICES"});
    for (const Json &socket : arrayOf(reply, "sockets")) {
        std::string services;
        for (const Json &s : arrayOf(socket, "services")) {
            services +=
                (services.empty() ? "" : ",") + (s.is_string() ? printable(s.get<std::string>()) : "?");
        }
        if (services.empty()) {
            services = "-";
        }
        const std::string name = text(socket, "name");
        const Json &bound = arrayOf(socket, "bound");
        if (bound.empty()) {
            // Configured but not bound (yet): show what it will listen on.
            const Json &listens = arrayOf(socket, "listen");
            if (listens.empty()) {
                table.addRow({{name}, {"-"}, {"-"}, {"-", Colour::Dim}, {services}});
            }
            for (const Json &listen : listens) {
                table.addRow({{name},
                              {listen.is_string() ? printable(listen.get<std::string>()) : "-"},
                              {"-"},
                              {"-", Colour::Dim},
                              {services}});
            }
            continue;
        }
        for (const Json &b : bound) {
            const std::string origin = text(b, "origin");
            table.addRow({{name},
                          {text(b, "address")},
                          {text(b, "fd")},
                          {origin, origin == "adopted" ? Colour::Yellow : Colour::None},
                          {services}});
        }
    }
    std::string out = table.render(colour);
    // Wrapped services: whether each instance's program took the listener.
    for (const Json &socket : arrayOf(reply, "sockets")) {
        for (const Json &entry : arrayOf(socket, "adoption")) {
            out += text(socket, "name") + ": " + text(entry, "service") + "[" + text(entry, "index") +
                   "] (pid " + text(entry, "pid") + ") " + adoptionText(entry) + "\n";
        }
    }
    return out;
}

std::string formatConnections(const Json &reply, bool colour)
{
    std::string out;
    for (const Json &service : arrayOf(reply, "services")) {
        const Json *handoff = member(service, "handoff");
        out += text(service, "service") + ": handoff " +
               (handoff != nullptr && handoff->is_boolean() && handoff->get<bool>() ? "on" : "off") +
               ", held " + std::to_string(arrayOf(service, "held").size()) + ", handed " +
               text(service, "handed") + ", adopted " + text(service, "adopted") + ", expired " +
               text(service, "expired") + ", hung up " + text(service, "hung_up") + ", refused " +
               text(service, "refused") + "\n";
        const Json &instances = arrayOf(service, "instances");
        if (!instances.empty()) {
            Table table({"  INSTANCE", "PID", "GEN", "ADOPTED", "STATE"});
            const auto flag = [](const Json &object, const char *name) {
                const Json *value = member(object, name);
                return value != nullptr && value->is_boolean() && value->get<bool>();
            };
            for (const Json &instance : instances) {
                const bool isDraining = flag(instance, "draining");
                // Older fdsupd versions do not send "ready": an instance listed was ready.
                const Json *ready = member(instance, "ready");
                const bool isReady = ready == nullptr || !ready->is_boolean() || ready->get<bool>();
                const std::string state = isDraining ? "draining" : isReady ? "serving" : "starting";
                table.addRow({{"  " + (flag(instance, "external") ? "external " + text(instance, "id")
                                                                  : text(instance, "index"))},
                              {text(instance, "pid")},
                              {text(instance, "generation")},
                              {text(instance, "adopted")},
                              {state, state == "serving" ? Colour::None : Colour::Yellow}});
            }
            out += table.render(colour);
        }
        const Json &held = arrayOf(service, "held");
        if (!held.empty()) {
            Table table({"  HELD", "FROM-PID", "FROM-GEN", "FOR", "STATE-BYTES"});
            for (const Json &h : held) {
                const Json *usec = member(h, "held_usec");
                table.addRow({{"  " + text(h, "id")},
                              {text(h, "from_pid")},
                              {text(h, "from_generation")},
                              {usec != nullptr && usec->is_number_unsigned()
                                   ? formatElapsed(usec->get<std::uint64_t>())
                                   : "-"},
                              {text(h, "state_bytes")}});
            }
            out += table.render(colour);
        }
    }
    return out;
}

std::string formatRolloutStatus(const Json &reply, std::string_view service, bool colour)
{
    const Json &rollout = objectOf(reply, "rollout");
    if (rollout.empty()) {
        return printable(service) + ": no rollout yet\n";
    }
    const auto field = [](const char *label, const std::string &value) {
        std::string line = "  ";
        line += label;
        line += ':';
        line.append(12 - std::string_view(label).size(), ' ');
        return line + value + "\n";
    };
    const std::string state = text(rollout, "state");
    std::string out = rolloutSubject(rollout) + "\n";
    out += field("state", painted(state, rolloutColour(state), colour));
    out += field("generation", generations(rollout));
    out += field("order", text(rollout, "order"));
    out += field("batch", text(rollout, "batch"));
    const auto started = unsignedOf(rollout, "started_usec");
    out += field("started", started ? formatDateTime(*started) : "-");
    const auto duration = unsignedOf(rollout, "duration_usec");
    out += field("duration", duration ? formatElapsed(*duration) : "-");
    if (const std::string reason = optionalText(rollout, "reason"); !reason.empty()) {
        out += field("reason", reason);
    }
    if (const std::string failure = failureLines(rollout, std::string(15, ' ')); !failure.empty()) {
        out += field("failure", failure.substr(0, failure.size() - 1));
    }
    Table steps({"INDEX", "PHASE", "OLD-PID", "NEW-PID", "REASON"}, "  ");
    for (const Json &step : arrayOf(rollout, "steps")) {
        const std::string phase = text(step, "phase");
        steps.addRow({{text(step, "index")},
                      {phase, rolloutColour(phase)},
                      {text(step, "old_pid")},
                      {text(step, "new_pid")},
                      {text(step, "reason")}});
    }
    if (steps.rows() > 0) {
        out += steps.render(colour);
    }
    if (const auto queued = unsignedOf(reply, "queued"); queued && *queued > 0) {
        out += "  " + std::to_string(*queued) + " queued\n";
    }
    return out;
}

std::string formatRolloutEvent(std::uint64_t elapsedUsec, const Json &reply)
{
    const std::string event = optionalText(reply, "event");
    if (event.empty()) {
        return {};
    }
    const std::uint64_t hundredths = elapsedUsec / 10000;
    std::string seconds = std::to_string(hundredths / 100);
    if (seconds.size() < 2) {
        seconds.insert(0, 1, ' ');
    }
    return "[" + seconds + "." + zeroPadded(hundredths % 100, 2) + "s] " + event + "\n";
}

std::string formatRolloutStarted(const Json &reply)
{
    const Json &rollout = objectOf(reply, "rollout");
    const std::string state = text(rollout, "state");
    return rolloutSubject(rollout) + " " + (state == "running" ? "started" : state) + " (generation " +
           generations(rollout) + ")\n";
}

std::string formatRolloutDone(const Json &reply)
{
    const Json &rollout = objectOf(reply, "rollout");
    const auto duration = unsignedOf(rollout, "duration_usec");
    const std::size_t instances = arrayOf(rollout, "steps").size();
    return text(rollout, "service") + ": rolled out to generation " + text(rollout, "to_generation") +
           " in " + (duration ? formatElapsed(*duration) : "-") + " (" + std::to_string(instances) +
           " instance" + (instances == 1 ? "" : "s") + ")\n";
}

std::string formatRolloutCancelled(const Json &reply)
{
    const Json &rollout = objectOf(reply, "rollout");
    return rolloutSubject(rollout) + " cancelled, rolled back to generation " +
           text(rollout, "from_generation") + "\n";
}

std::string formatRolloutFailed(const Json &error)
{
    const Json &rollout = objectOf(error, "rollout");
    const std::string service =
        rollout.contains("service") ? text(rollout, "service") : text(error, "service");
    std::string out = "fdsupctl: rollout " + text(rollout, "id") + " of '" + service + "' " +
                      (optionalText(rollout, "state") == "cancelled" ? "was cancelled" : "failed");
    if (const std::string reason = optionalText(rollout, "reason"); !reason.empty()) {
        out += ": " + reason;
    }
    out += "\n";
    if (const std::string failure = failureLines(rollout, "  "); !failure.empty()) {
        out += "  " + failure;
    }
    return out + "rolled back: generation " + text(rollout, "from_generation") + " keeps serving\n";
}

std::string formatScaled(const Json &reply)
{
    const auto instances = unsignedOf(reply, "instances");
    return text(reply, "service") + ": " + text(reply, "instances") + " instance" +
           (instances && *instances == 1 ? "" : "s") + ", " + text(reply, "state") + "\n";
}

std::string formatChanges(const Json &reply, bool colour)
{
    const Json &changes = arrayOf(reply, "changes");
    if (changes.empty()) {
        return "no changes\n";
    }
    Table table({"KIND", "NAME", "ACTION", "RESULT", "REASON"});
    for (const Json &change : changes) {
        const std::string result = text(change, "result");
        table.addRow({{text(change, "kind")},
                      {text(change, "name")},
                      {text(change, "action")},
                      {result, result == "done" ? Colour::Green : Colour::Red},
                      {text(change, "reason")}});
    }
    return table.render(colour);
}

std::string formatConfigErrors(const Json &error)
{
    std::string out;
    const Json &errors = arrayOf(error, "errors");
    for (const Json &e : errors) {
        out += text(e, "file") + ":" + text(e, "line") + ":" + text(e, "column") + ": " + text(e, "message") +
               "\n";
    }
    return out + text(error, "file") + ": " + std::to_string(errors.size()) + " error" +
           (errors.size() == 1 ? "" : "s") + ", nothing changed\n";
}

std::string formatReloadRefused(const Json &error)
{
    std::string out = "fdsupctl: fdsupd cannot apply " + text(error, "file") + " while it runs:\n";
    for (const Json &reason : arrayOf(error, "reasons")) {
        out += "  " + (reason.is_string() ? printable(reason.get_ref<const std::string &>()) : "?") + "\n";
    }
    return out + "nothing changed\n";
}

std::string formatLogLines(const Json &reply, std::string_view service, bool colour)
{
    std::string out;
    const std::string name = printable(service);
    for (const Json &line : arrayOf(reply, "lines")) {
        const auto time = unsignedOf(line, "time_usec");
        out += (time ? formatClock(*time) : "-") + " " + name + "[" + text(line, "index") + "] " +
               text(line, "pid");
        if (optionalText(line, "stream") == "stderr") {
            out += " " + painted("(stderr)", Colour::Red, colour);
        }
        // An empty line is a line too: not "-".
        out += ": " + optionalText(line, "text") + "\n";
    }
    return out;
}

} // namespace fdsup::ctl
