// The control API's wire format: Varlink message codec, stream framing and a blocking client.
#include "control/varlink.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace fdsup::varlink {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Replacing invalid UTF-8 instead of throwing: a worker's STATUS= text or a
// file name can hold any bytes, and encoding runs inside event callbacks.
std::string dump(const Json &j)
{
    std::string out = j.dump(-1, ' ', false, Json::error_handler_t::replace);
    out.push_back('\0');
    return out;
}

Error invalid(std::string message)
{
    return Error{EINVAL, std::move(message)};
}

// Parses one message into an object, or says why it is not one.
Result<Json> parseObject(std::string_view message)
{
    // nlohmann would stop at a NUL as if the text ended there; a NUL inside a
    // message means the sender's framing is broken, so it is refused.
    if (message.find('\0') != std::string_view::npos) {
        return invalid("message contains a NUL byte");
    }
    // No exceptions: parse() with allow_exceptions=false returns a discarded
    // value on any syntax error, including trailing garbage.
    Json j = Json::parse(message, nullptr, false);
    if (j.is_discarded()) {
        return invalid("message is not valid JSON");
    }
    if (!j.is_object()) {
        return invalid("message is not a JSON object");
    }
    return j;
}

// Reads an optional boolean member; false when absent.
bool optionalBool(const Json &j, const char *key, bool &out, std::string &why)
{
    const auto it = j.find(key);
    if (it == j.end()) {
        out = false;
        return true;
    }
    if (!it->is_boolean()) {
        why = std::string("'") + key + "' is not a boolean";
        return false;
    }
    out = it->get<bool>();
    return true;
}

bool optionalParameters(const Json &j, Json &out, std::string &why)
{
    const auto it = j.find("parameters");
    if (it == j.end() || it->is_null()) {
        out = Json::object();
        return true;
    }
    if (!it->is_object()) {
        why = "'parameters' is not an object";
        return false;
    }
    out = *it;
    return true;
}

// Varlink names: interface "a.b.c" (lower case, digits, '-', dots between
// parts) and method "CamelCase" after the last dot.
bool isValidMethod(std::string_view method)
{
    const std::string_view interface = interfaceOf(method);
    if (interface.empty()) {
        return false;
    }
    const std::string_view name = method.substr(interface.size() + 1);
    if (name.empty() || name.front() < 'A' || name.front() > 'Z') {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    });
}

Clock::time_point deadlineAfter(std::chrono::milliseconds timeout)
{
    const auto now = Clock::now();
    if (timeout >= std::chrono::duration_cast<std::chrono::milliseconds>(Clock::time_point::max() - now)) {
        return Clock::time_point::max();
    }
    return now + timeout;
}

// Waits for events on fd until deadline: 1 ready, 0 timed out, -errno.
int waitFor(int fd, short events, Clock::time_point deadline)
{
    for (;;) {
        int timeoutMs = -1;
        if (deadline != Clock::time_point::max()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) {
                return 0;
            }
            timeoutMs = static_cast<int>(
                std::min<std::chrono::milliseconds::rep>(left.count(), std::numeric_limits<int>::max()));
        }
        pollfd p{fd, events, 0};
        const int r = poll(&p, 1, timeoutMs);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (r > 0) {
            return 1;
        }
    }
}

constexpr std::string_view kManagerIdl = R"(# fdsupd: the services it runs and the sockets it owns for them.
interface io.fdsup.Manager

type ServiceState (starting, running, stopping, stopped, failed)

type InstanceState (starting, ready, draining, stopping, exited, failed)

# A descriptor group a service keeps in fdsupd's store (FDSTORE=1).
type FdStoreEntry (name: string, fds: int)

type Instance (
  index: int,
  # The service generation the instance runs: 1 at start, one more per
  # rollout (restart, or reload of a changed service).
  generation: int,
  pid: ?int,
  state: InstanceState,
  # CLOCK_MONOTONIC, microseconds, when the state was entered.
  since_usec: int,
  uptime_usec: int,
  # The last STATUS= the instance sent.
  status: ?string,
  restarts: int,
  last_exit: ?string,
  last_error: ?string
)

# A worker fdsupd did not spawn, admitted on the activation socket.
type ExternalWorker (
  # Unique within fdsupd (instance ids and external ids are one series).
  id: int,
  pid: int,
  uid: int,
  gid: int,
  ready: bool,
  # It handed a connection over: it gets no more.
  draining: bool,
  status: ?string,
  connected_usec: int,
  adopted: int
)

type Service (
  name: string,
  state: ServiceState,
  # The generation new instances start as.
  generation: int,
  wanted: int,
  ready: int,
  restarts: int,
  failed_reason: ?string,
  notify_dropped: int,
  fdstore: []FdStoreEntry,
  instances: []Instance,
  # Where workers fdsupd did not spawn connect, if anywhere.
  activation_socket: ?string,
  external: []ExternalWorker,
  # The rollout in progress, if any.
  rollout: ?Rollout
)

type BoundSocket (address: string, fd: int, origin: (bound, adopted))

type Socket (name: string, listen: []string, bound: []BoundSocket, services: []string)

type RolloutOrder (start-first, stop-first)

type RolloutState (queued, running, rolling-back, succeeded, failed, cancelled)

# One instance slot of a rollout: its old process, its replacement.
type RolloutStep (
  index: int,
  phase: (pending, draining-old, starting, ready, retiring, done, failed, rolled-back),
  old_pid: ?int,
  new_pid: ?int,
  reason: ?string
)

# The replacement that made a rollout fail, and its last output lines.
type RolloutFailure (
  index: int,
  pid: ?int,
  generation: int,
  reason: string,
  output: []string
)

type Rollout (
  id: int,
  service: string,
  from_generation: int,
  to_generation: int,
  order: RolloutOrder,
  batch: int,
  state: RolloutState,
  # Why it failed or was cancelled.
  reason: ?string,
  failure: ?RolloutFailure,
  # CLOCK_REALTIME, microseconds.
  started_usec: int,
  duration_usec: int,
  steps: []RolloutStep
)

type LogLine (
  # CLOCK_REALTIME, microseconds.
  time_usec: int,
  index: int,
  pid: int,
  generation: int,
  stream: (stdout, stderr),
  text: string
)

# A connection a draining worker handed over, waiting to be adopted.
type HeldConnection (
  id: int,
  from_pid: int,
  from_generation: int,
  from_external: bool,
  held_usec: int,
  state_bytes: int
)

# A worker on the channel: an instance (index), or an external worker (id,
# uid); what it adopted so far, and whether it adopts now (ready).
type ChannelInstance (
  index: ?int,
  external: bool,
  id: ?int,
  pid: int,
  uid: ?int,
  generation: int,
  adopted: int,
  ready: bool,
  draining: bool
)

type ServiceConnections (
  service: string,
  handoff: bool,
  handoff_timeout_usec: int,
  held: []HeldConnection,
  instances: []ChannelInstance,
  # Counters since fdsupd started.
  handed: int,
  adopted: int,
  expired: int,
  hung_up: int,
  refused: int
)

type ConfigError (file: string, line: int, column: int, message: string)

type Change (
  kind: (supervisor, socket, service),
  name: string,
  action: (added, removed, changed, restarted, scaled),
  result: (done, failed),
  reason: ?string
)

# Every service, or only the one named.
method Status(service: ?string) -> (services: []Service)

# Every socket, with what it is bound to and which services use it.
method Sockets() -> (sockets: []Socket)

# The handed-over connections fdsupd holds, per service (or the one named).
method Connections(service: ?string) -> (services: []ServiceConnections)

# Starts a service; replies once it is running.
method Start(service: string) -> (service: string, state: ServiceState)

# Stops a service; replies once every instance has exited.
method Stop(service: string) -> (service: string, state: ServiceState)

# Rolls the service out to a new generation, batch by batch. Without wait,
# replies once the rollout is running (or queued). With wait, replies when
# it succeeded, or fails with RolloutFailed after rolling back; with more,
# each step is also sent as it happens (event). A stopped service is
# started as the new generation.
method Restart(
  service: string,
  batch: ?int,
  order: ?RolloutOrder,
  # Wait for a rollout in progress instead of failing with RolloutInProgress.
  queue: ?bool,
  wait: ?bool,
  # Roll back when the rollout has not completed within this.
  timeout_usec: ?int
) -> (rollout: Rollout, event: ?string)

# The rollout in progress, else the last one (null if none yet), and how
# many restarts wait behind it.
method RolloutStatus(service: string) -> (rollout: ?Rollout, queued: int)

# Stops the rollout in progress and rolls back; replies when rolled back.
method RolloutCancel(service: string) -> (rollout: Rollout)

# Starts or drains instances until the service has this many; replies when
# it has.
method Scale(service: string, instances: int) -> (service: string, instances: int, state: ServiceState)

# Reads the configuration file again and applies the difference; replies
# when every change is done.
method Reload() -> (file: string, changes: []Change)

# The service's most recent output lines (lines: how many, default 50).
# With follow and more, new lines are sent as they come.
method Logs(service: string, lines: ?int, follow: ?bool) -> (lines: []LogLine)

error NoSuchService (service: string)

error ServiceFailed (service: string, reason: string)

# fdsupd is shutting down and takes no more orders.
error ShuttingDown ()

# A rollout of the service is in progress (Restart without queue, Scale).
error RolloutInProgress (service: string, rollout: int)

# The rollout failed or was cancelled and was rolled back.
error RolloutFailed (service: string, rollout: Rollout)

# RolloutCancel: no rollout is in progress.
error NoRollout (service: string)

# Reload: the file is invalid; nothing was changed.
error ConfigInvalid (file: string, errors: []ConfigError)

# Reload: the change cannot be applied to a running fdsupd; nothing was changed.
error ReloadRefused (file: string, reasons: []string)

# Reload: some changes failed (each says why); the others were applied.
error ReloadFailed (file: string, changes: []Change)

# The message is not a valid Varlink call.
error InvalidRequest (reason: string)

# The message is longer than the limit (bytes); the connection is closed.
error RequestTooLarge (limit: int)
)";

constexpr std::string_view kServiceIdl =
    R"(# The Varlink service interface: what the service is and what it implements.
interface org.varlink.service

method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

method GetInterfaceDescription(interface: string) -> (description: string)

error InterfaceNotFound (interface: string)

error MethodNotFound (method: string)

error MethodNotImplemented (method: string)

error InvalidParameter (parameter: string)

error PermissionDenied ()

error ExpectedMore ()
)";

} // namespace

std::string_view managerInterfaceDescription()
{
    return kManagerIdl;
}

std::string_view serviceInterfaceDescription()
{
    return kServiceIdl;
}

std::string_view interfaceOf(std::string_view method)
{
    const std::size_t dot = method.rfind('.');
    if (dot == std::string_view::npos || dot == 0 || dot + 1 == method.size()) {
        return {};
    }
    return method.substr(0, dot);
}

std::string encodeCall(const Call &call)
{
    Json j = {{"method", call.method}, {"parameters", call.parameters}};
    // Absent rather than false: what varlink clients send, and shorter.
    if (call.more) {
        j["more"] = true;
    }
    if (call.oneway) {
        j["oneway"] = true;
    }
    return dump(j);
}

std::string encodeReply(const Reply &reply)
{
    Json j = {{"parameters", reply.parameters}};
    if (!reply.error.empty()) {
        j["error"] = reply.error;
    } else if (reply.continues) {
        j["continues"] = true;
    }
    return dump(j);
}

Result<Call> decodeCall(std::string_view message)
{
    auto parsed = parseObject(message);
    if (!parsed) {
        return parsed.error();
    }
    const Json &j = *parsed;
    Call call;
    const auto method = j.find("method");
    if (method == j.end()) {
        return invalid("'method' is missing");
    }
    if (!method->is_string()) {
        return invalid("'method' is not a string");
    }
    call.method = method->get<std::string>();
    if (!isValidMethod(call.method)) {
        return invalid("'method' is not a qualified method name (interface.Method): '" + call.method + "'");
    }
    std::string why;
    if (!optionalParameters(j, call.parameters, why) || !optionalBool(j, "more", call.more, why) ||
        !optionalBool(j, "oneway", call.oneway, why)) {
        return invalid(why);
    }
    if (call.more && call.oneway) {
        return invalid("'more' and 'oneway' exclude each other");
    }
    // "upgrade" (switching to another protocol) is not offered.
    if (const auto upgrade = j.find("upgrade"); upgrade != j.end() && *upgrade == true) {
        return invalid("'upgrade' is not supported");
    }
    return call;
}

Result<Reply> decodeReply(std::string_view message)
{
    auto parsed = parseObject(message);
    if (!parsed) {
        return parsed.error();
    }
    const Json &j = *parsed;
    Reply reply;
    std::string why;
    if (!optionalParameters(j, reply.parameters, why) ||
        !optionalBool(j, "continues", reply.continues, why)) {
        return invalid(why);
    }
    if (const auto error = j.find("error"); error != j.end()) {
        if (!error->is_string() || error->get_ref<const std::string &>().empty()) {
            return invalid("'error' is not a non-empty string");
        }
        reply.error = error->get<std::string>();
    }
    return reply;
}

void FrameReader::append(std::string_view data)
{
    // Compact lazily: moving the unread tail only once the consumed head is
    // the larger part keeps many small pipelined messages linear.
    if (start_ > 0 && start_ >= buffer_.size() - start_) {
        buffer_.erase(0, start_);
        start_ = 0;
    }
    buffer_.append(data);
}

int FrameReader::next(std::string &out)
{
    if (failed_) {
        return -EMSGSIZE;
    }
    const std::size_t nul = buffer_.find('\0', start_ + scanned_);
    if (nul == std::string::npos) {
        scanned_ = buffer_.size() - start_;
        if (scanned_ > maxMessage_) {
            failed_ = true;
            return -EMSGSIZE;
        }
        return 0;
    }
    if (nul - start_ > maxMessage_) {
        failed_ = true;
        return -EMSGSIZE;
    }
    out.assign(buffer_, start_, nul - start_);
    start_ = nul + 1;
    scanned_ = 0;
    if (start_ == buffer_.size()) {
        buffer_.clear();
        start_ = 0;
    }
    return 1;
}

Result<Client> Client::connect(const std::string &path, std::chrono::milliseconds timeout)
{
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(sa.sun_path)) {
        return Error{ENAMETOOLONG, "Invalid control socket path '" + path + "'"};
    }
    std::memcpy(sa.sun_path, path.data(), path.size());

    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        return errnoError(errno, "Failed to create a socket");
    }
    // A unix connect() only waits when the listener's backlog is full. A
    // blocking connect with SO_SNDTIMEO bounds that wait (it then fails with
    // EAGAIN); non-blocking would fail at once instead of waiting.
    // A zero SO_SNDTIMEO means no limit, which is also what a timeout of
    // "infinity" (or anything beyond a year) asks for.
    if (timeout.count() > 0 && timeout < std::chrono::hours(24 * 366)) {
        const auto usec = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
        timeval tv{};
        tv.tv_sec = static_cast<time_t>(usec / 1000000);
        tv.tv_usec = static_cast<suseconds_t>(usec % 1000000);
        if (setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
            return errnoError(errno, "Failed to set SO_SNDTIMEO");
        }
    }
    int r = 0;
    do {
        r = ::connect(fd.get(), reinterpret_cast<const sockaddr *>(&sa), sizeof(sa));
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        const int code = errno == EAGAIN ? ETIMEDOUT : errno;
        return errnoError(code, "Failed to connect to " + path);
    }
    // From here on every wait is a poll() with the caller's deadline.
    const timeval none{};
    if (setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none)) < 0) {
        return errnoError(errno, "Failed to clear SO_SNDTIMEO");
    }
    return Client(std::move(fd), timeout);
}

Result<Reply> Client::call(const Call &call)
{
    const Clock::time_point deadline = deadlineAfter(timeout_);
    const std::string message = encodeCall(call);
    std::size_t sent = 0;
    while (sent < message.size()) {
        const ssize_t n =
            ::send(fd_.get(), message.data() + sent, message.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
            sent += static_cast<std::size_t>(n);
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN) {
            const int w = waitFor(fd_.get(), POLLOUT, deadline);
            if (w < 0) {
                return errnoError(w, "Failed to wait for fdsupd");
            }
            if (w == 0) {
                return errnoError(ETIMEDOUT, "Timed out sending " + call.method);
            }
            continue;
        }
        const int code = errno;
        // fdsupd refuses an oversized or unauthorised request with an error
        // reply and hangs up while we are still sending: that reply says more
        // than EPIPE.
        if (code == EPIPE || code == ECONNRESET) {
            auto reply = next();
            if (reply) {
                return reply;
            }
        }
        return errnoError(code, "Failed to send " + call.method);
    }
    if (call.oneway) {
        return Reply{};
    }
    return next();
}

Result<Reply> Client::next()
{
    const Clock::time_point deadline = deadlineAfter(timeout_);
    std::string message;
    for (;;) {
        const int r = reader_.next(message);
        if (r < 0) {
            return errnoError(r, "Reply from fdsupd too large");
        }
        if (r == 1) {
            auto reply = decodeReply(message);
            if (!reply) {
                return Error{EBADMSG, "Invalid reply from fdsupd: " + reply.error().message};
            }
            return reply;
        }
        char buffer[65536];
        const ssize_t n = ::recv(fd_.get(), buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n > 0) {
            reader_.append(std::string_view(buffer, static_cast<std::size_t>(n)));
            continue;
        }
        if (n == 0) {
            return Error{ECONNRESET, "fdsupd closed the connection"};
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN) {
            return errnoError(errno, "Failed to read from fdsupd");
        }
        const int w = waitFor(fd_.get(), POLLIN, deadline);
        if (w < 0) {
            return errnoError(w, "Failed to wait for fdsupd");
        }
        if (w == 0) {
            return errnoError(ETIMEDOUT, "Timed out waiting for fdsupd");
        }
    }
}

} // namespace fdsup::varlink
