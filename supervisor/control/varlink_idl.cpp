// The control API's interface descriptions (Varlink IDL), as GetInterfaceDescription returns them.
#include "control/varlink.hpp"

namespace fdsup::varlink {
namespace {

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
  last_error: ?string,
  # wrap = "preload": each listener of the service, adopted by a process of
  # this instance or not, and why not; null for a service that is not wrapped.
  listeners: ?[]ListenerAdoption
)

# A listener of a wrapped instance: adopted (adopted_by), waiting for the
# program to bind (pending), or not adopted with the likely reason.
type ListenerAdoption (
  name: string,
  adopted_by: ?int,
  pending: bool,
  reason: ?string
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

# A worker a dead fdsupd started, still serving on a listener this fdsupd
# took over at start; stopped (its service's stop_signal, SIGKILL at
# stop_timeout) once the service's own instances are all ready.
type OrphanedWorker (
  pid: int,
  command: string,
  state: (orphaned),
  # The stop signal was sent.
  stopping: bool,
  status: string
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
  # The receive = true socket it waits for before it starts, if any.
  waiting_for: ?string,
  notify_dropped: int,
  fdstore: []FdStoreEntry,
  instances: []Instance,
  # Where workers fdsupd did not spawn connect, if anywhere.
  activation_socket: ?string,
  external: []ExternalWorker,
  # A dead predecessor's workers, until they are replaced.
  orphaned: []OrphanedWorker,
  wrap: (none, preload),
  # Where the preload shim of a wrapped service connects.
  preload_socket: ?string,
  # Why the preload shim cannot load into the program (static, setuid, file
  # capabilities), found when the generation was made.
  wrap_problem: ?string,
  # The rollout in progress, if any.
  rollout: ?Rollout
)

type BoundSocket (address: string, fd: int, origin: (bound, adopted))

# A wrapped service's instance and whether it adopted this socket.
type SocketAdoption (
  service: string,
  index: int,
  pid: int,
  adopted_by: ?int,
  pending: bool,
  reason: ?string
)

type Socket (
  name: string,
  listen: []string,
  bound: []BoundSocket,
  services: []string,
  adoption: []SocketAdoption
)

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

# The daemon's events as they happen, one reply each, until the client hangs
# up (more only): service states, instances started, ready and exited,
# rollouts, reloads, shutdown; with service, that service's and fdsupd's
# own. Each event is an object {time, event, service, ...}
# (docs/control-api.md lists them). A client that reads too slowly misses
# events and gets {event: "dropped", count} first. The stream ends with
# the event "reexec" or "shutdown-done".
method Events(service: ?string) -> (event: object)

# A socket moving between fdsupds (docs/transfer.md); fds: how many of the
# message's descriptors are its, in order.
type TransferredSocket (name: string, addresses: []string, fds: int)

# A connection a broker held, moving with what is left of its hold; its fds
# (the connection, then the state's memfd when it has one) follow the
# sockets'. state: the inline state, in hexadecimal.
type TransferredConnection (
  service: string,
  id: int,
  state_flags: int,
  state_size: int,
  state: string,
  remaining_usec: int,
  fds: int
)

# Every socket this fdsupd holds, its descriptors riding on the reply
# (SCM_RIGHTS); it keeps its own copies and keeps serving. The connections
# its brokers hold move: they are the caller's from here on.
method Export() -> (sockets: []TransferredSocket, connections: []TransferredConnection)

# Takes the sockets whose descriptors ride on the call, each declared with
# receive = true and not held yet, all or nothing, starts the services that
# waited for them, and gives the connections to the brokers of the services
# of the same names; replies once those services are running.
method Import(
  sockets: []TransferredSocket,
  connections: ?[]TransferredConnection
) -> (sockets: []string, started: []string, connections: int, refused_connections: []string)

# Another fdsupd holds these sockets now: stops the services that use them
# and closes this fdsupd's copies.
method Release(sockets: []string) -> (sockets: []string, stopped: []string)
# Re-executes fdsupd in place (docs/reexec.md): the binary (absolute path;
# default: the one fdsupd was started from) is checked, fdsupd waits until
# nothing is in transition (at most timeout_usec, default 60 s), then execs it
# with its whole state. The reply comes from the new image.
method Reexec(binary: ?string, timeout_usec: ?int) -> (version: string, pid: int, reexecs: int, binary: string)

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

# Export, Import or Release refused; nothing was changed.
error TransferRefused (reason: string)
# A re-exec is pending: calls that change state wait until it is done.
error Reexecuting ()

# Reexec failed, nothing changed: why (the check's exit status and stderr, what
# is still busy, the state the new binary rejected).
error ReexecFailed (reason: string)

# The caller may use this interface but lacks the right the call needs
# (docs/access.md): the level (right) or the command that would do, for
# which method and service, and what the caller has.
error PermissionDenied (method: string, service: ?string, right: string, command: string, has: string, message: string)

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

} // namespace fdsup::varlink
