// A service and its worker instances: spawning, readiness, deadlines, restarts, stopping.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "core/fd.hpp"
#include "io/event_loop.hpp"
#include "io/notify.hpp"
#include "io/sockets.hpp"
#include "io/spawn.hpp"
#include "io/worker_channel.hpp"

namespace fdsup {

// Each state but the final ones has a deadline: Starting (start_timeout until
// exec, then ready_timeout until ready), Ready (watchdog_timeout, when set),
// Stopping (stop_timeout, then SIGKILL).
// Draining (drain_timeout, then SIGKILL) is how an instance that is being
// replaced or scaled away is told to finish.
enum class InstanceState : std::uint8_t { Starting, Ready, Draining, Stopping, Exited, Failed };
enum class ServiceState : std::uint8_t { Starting, Running, Stopping, Stopped, Failed };

const char *instanceStateName(InstanceState state);
const char *serviceStateName(ServiceState state);

// The largest instance count a service may have (config and Scale).
inline constexpr unsigned kMaxInstances = 1024;

// What one generation of a service runs: its configuration, with everything
// a spawn needs that can fail resolved once (binary, user, groups). A
// rollout moves a service from one profile to the next; every instance keeps
// the profile it was started from.
struct Profile {
    unsigned generation = 1;
    config::ServiceConfig config;
    std::string executable;
    // The binary itself, opened when the generation was made: its instances
    // (crash restarts, a rollback's) run that file even if a deploy has
    // since put another one at `executable`. Scripts run by path.
    UniqueFd executableFd;
    Credentials credentials;
    std::vector<std::string> baseEnvironment; // pass_environment + environment + PATH
    // activation_users and activation_groups, resolved.
    std::vector<uid_t> activationUids;
    std::vector<gid_t> activationGids;
};
// The error names the service: "Service 'web': ...".
Result<std::shared_ptr<const Profile>> makeProfile(const config::ServiceConfig &config, unsigned generation);

// One captured output line of a worker.
struct LogEntry {
    std::int64_t realtimeUsec = 0; // CLOCK_REALTIME
    unsigned index = 0;
    pid_t pid = 0;
    unsigned generation = 0;
    bool isStderr = false;
    std::string text;
};
nlohmann::json toJson(const LogEntry &entry);
// CLOCK_REALTIME in microseconds, for what is shown to people.
std::int64_t realtimeUsec();

struct RolloutOptions {
    unsigned batch = 1;
    config::RolloutOrder order = config::RolloutOrder::StartFirst;
    Duration timeout = Duration::max(); // roll back when not done by then
};

struct RolloutFailure;

enum class RolloutState : std::uint8_t { Running, RollingBack, Succeeded, Failed, Cancelled };
const char *rolloutStateName(RolloutState state);

// What the service needs from the daemon around it.
struct ServiceContext {
    EventLoop &loop;
    const SocketSet &sockets;
    // A prefix unique to this fdsupd, for the services' abstract notify sockets.
    std::string notifyPrefix;
    // RLIMIT_NOFILE as fdsupd found it, before raising its own: what workers
    // get unless their [limits] say otherwise (select() breaks above 1024).
    config::ResourceLimit originalNofile;
    // Instance ids, unique within this fdsupd.
    std::uint64_t nextInstanceId = 1;
    // Handed-over connections held, every service together, and the limits
    // ([supervisor.limits]).
    std::size_t heldTotal = 0;
    std::size_t heldLimit = 65536;
    std::size_t heldLimitPerService = 16384;
    std::uint64_t stateLimit = std::uint64_t{64} * 1024;
};

class Service;
class Instance;
struct ExternalWorker;

// The far end of a worker channel: an instance fdsupd spawned, or an
// external worker that connected to the service's activation socket. The
// broker treats both alike (docs/worker-channel.md).
struct ChannelPeer {
    std::unique_ptr<WorkerChannel> channel; // null when the service uses none
    pid_t pid = 0;
    std::uint64_t adopted = 0;          // connections given to it, for balancing
    Instance *instance = nullptr;       // set for a spawned instance
    ExternalWorker *external = nullptr; // or for an external worker

    [[nodiscard]] bool joined() const { return channel && channel->isOpen() && channel->welcomed; }
    [[nodiscard]] bool granted(std::uint32_t capability) const
    {
        return joined() && (channel->capabilities & capability) != 0;
    }
};

// A worker fdsupd did not spawn, connected to the activation socket and
// admitted by its credentials. fdsupd never signals, drains or restarts it:
// it gets the listeners, adopts once READY, hands over when it chooses.
struct ExternalWorker {
    std::uint64_t id = 0; // unique within fdsupd, shared with instance ids
    ChannelPeer peer;
    uid_t uid = 0;
    gid_t gid = 0;
    bool ready = false;
    // It handed a connection over: it is draining (on its own initiative),
    // and is given no more connections.
    bool draining = false;
    std::optional<std::string> status; // READY's text
    Duration since{};                  // when it connected
};

// One worker process. Owned by its Service; every event source it holds dies
// with it, so no callback can reach a reaped instance.
class Instance {
public:
    Instance(Service &service, unsigned slot, std::shared_ptr<const Profile> profile);
    ~Instance();
    Instance(const Instance &) = delete;
    Instance &operator=(const Instance &) = delete;

    [[nodiscard]] pid_t pid() const { return pid_; }
    [[nodiscard]] InstanceState state() const { return state_; }
    [[nodiscard]] unsigned slot() const { return slot_; }
    [[nodiscard]] unsigned generation() const { return profile_->generation; }
    [[nodiscard]] std::uint64_t id() const { return id_; }
    [[nodiscard]] nlohmann::json toJson(Duration now) const;

private:
    friend class Service;

    [[nodiscard]] const config::ServiceConfig &config() const { return profile_->config; }

    Service &service_;
    unsigned slot_;
    std::shared_ptr<const Profile> profile_;
    std::uint64_t id_ = 0; // unique within fdsupd: rollouts refer to instances by it
    // Started by a rollout that has not completed: its exit fails the rollout
    // instead of being restarted.
    bool candidate_ = false;
    // Being drained or stopped for good (replaced, scaled away): its exit is
    // expected and its slot is not restarted for it.
    bool retiring_ = false;
    pid_t pid_ = 0;
    UniqueFd pidfd_;
    InstanceState state_ = InstanceState::Starting;
    Duration since_{};     // when state_ was entered
    Duration startedAt_{}; // when spawned
    Duration readyAt_{};
    bool execDone_ = false;
    bool failed_ = false;               // a deadline or the watchdog fired: the exit counts as a failure
    bool stopRequested_ = false;        // fdsupd asked it to stop: the exit is expected
    std::string error_;                 // why it failed, when fdsupd knows better than the exit status
    std::optional<std::string> status_; // STATUS=
    std::optional<int> errno_;          // ERRNO=
    Duration watchdogTimeout_{};

    UniqueFd stdout_;
    UniqueFd stderr_;
    UniqueFd statusPipe_;
    LineSplitter stdoutLines_;
    LineSplitter stderrLines_;

    EventSource childSource_;
    EventSource stdoutSource_;
    EventSource stderrSource_;
    EventSource statusSource_;
    EventSource deadline_;
    EventSource watchdog_;

    // The worker channel, for services that use one (handoff, activation or
    // readiness over the channel).
    ChannelPeer peer_;
};

// A connection a draining worker handed over, waiting for a ready
// replacement to adopt it.
struct HeldConnection {
    std::uint64_t id = 0; // chosen by the worker that handed it over
    UniqueFd fd;
    std::uint32_t stateFlags = 0;
    std::uint64_t stateSize = 0;
    std::vector<std::byte> state; // inline
    UniqueFd stateMemfd;          // or sealed in a memfd
    pid_t from = 0;
    unsigned fromGeneration = 0;
    bool fromExternal = false;
    Duration since{};
    EventSource hangup; // the client went away while held
};

struct HandoffCounters {
    std::uint64_t handed = 0;  // accepted from workers
    std::uint64_t adopted = 0; // given to replacements
    std::uint64_t expired = 0; // closed at handoff_timeout
    std::uint64_t hungUp = 0;  // the client closed while held
    std::uint64_t refused = 0; // refused (not ours, over a limit...)
};

// A descriptor held in the service's store (FDSTORE=1), given to every
// instance started later, after its listeners.
struct StoredFd {
    std::string name;
    UniqueFd fd;
    EventSource poll; // FDPOLL: dropped when the fd reports EPOLLHUP/EPOLLERR
};

class Service {
public:
    using ChangeHandler = std::function<void(Service &)>;

    static Result<std::unique_ptr<Service>> create(ServiceContext &context,
                                                   const config::ServiceConfig &config);
    ~Service();
    Service(const Service &) = delete;
    Service &operator=(const Service &) = delete;

    // Rollout progress: an event line while it runs (finished false), then
    // the final record (finished true, event empty).
    // the record is built only when asked for: most events have nobody
    // waiting for progress, and a record lists every step.
    using RolloutHandler =
        std::function<void(Service &, std::uint64_t id, const std::function<nlohmann::json()> &rollout,
                           const std::string &event, bool finished)>;
    using OutputHandler = std::function<void(Service &, const LogEntry &)>;

    [[nodiscard]] const std::string &name() const { return profile_->config.name; }
    // The configuration of the current generation (what new instances run).
    [[nodiscard]] const config::ServiceConfig &config() const { return profile_->config; }
    [[nodiscard]] const std::shared_ptr<const Profile> &profile() const { return profile_; }
    [[nodiscard]] unsigned generation() const { return profile_->generation; }
    [[nodiscard]] bool active() const { return active_; }
    [[nodiscard]] unsigned wanted() const { return static_cast<unsigned>(slots_.size()); }
    [[nodiscard]] ServiceState state() const;
    [[nodiscard]] const std::string &failedReason() const { return failedReason_; }
    [[nodiscard]] const std::string &notifySocket() const { return notify_->socketPath(); }
    [[nodiscard]] std::size_t liveInstances() const { return instances_.size(); }
    [[nodiscard]] nlohmann::json toJson() const;
    // What the handoff broker holds and has done (Connections).
    [[nodiscard]] nlohmann::json connectionsJson() const;
    // The external workers connected to the activation socket (status).
    [[nodiscard]] nlohmann::json externalJson() const;

    // Brings every slot up (clearing a failed state and its counters).
    void start();
    // Stops every instance (stop signal, SIGKILL at stop_timeout) and keeps
    // the service down until start().
    void stop();
    // Called after every state change of the service or one of its instances.
    void setChangeHandler(ChangeHandler handler) { onChange_ = std::move(handler); }
    void setRolloutHandler(RolloutHandler handler) { onRollout_ = std::move(handler); }
    void setOutputHandler(OutputHandler handler) { onOutputLine_ = std::move(handler); }

    // Rolls the service out to `target` (a profile of the next generation),
    // batch by batch; see docs/rollouts.md. A stopped or failed service is
    // started as the new generation. Returns the rollout's id; progress and
    // the result go to the rollout handler. The caller makes sure no
    // rollout is in progress.
    std::uint64_t beginRollout(std::shared_ptr<const Profile> target, const RolloutOptions &options);
    // A profile of the next generation for a changed configuration (reload);
    // fails when its binary or user cannot be resolved.
    [[nodiscard]] Result<std::shared_ptr<const Profile>> prepare(const config::ServiceConfig &config) const;
    // The current generation or a live instance is configured with the socket.
    [[nodiscard]] bool usesSocket(std::string_view socket) const;
    // The same configuration as a new generation (fdsupctl restart).
    Result<std::uint64_t> restart(const RolloutOptions &options);
    // Stops the rollout in progress and rolls back; false if there is none.
    bool cancelRollout(const std::string &reason);
    [[nodiscard]] bool rolloutActive() const { return rollout_ != nullptr; }
    [[nodiscard]] std::uint64_t rolloutId() const;
    // The rollout in progress, else the last one, else null.
    [[nodiscard]] nlohmann::json rolloutJson() const;

    // Starts or drains instances until there are `instances` (a stopped
    // service only records the number). The caller makes sure no rollout is
    // in progress.
    void scale(unsigned instances);
    // No instance is draining away or starting to fill a slot: the last
    // start, stop or scale is complete.
    [[nodiscard]] bool settled() const;

    // A rollout's state (rollout_state.hpp), internal to service.cpp and rollout.cpp.
    struct RolloutStep;
    struct Rollout;

    // The most recent lines the workers printed (oldest first).
    [[nodiscard]] const std::deque<LogEntry> &recentOutput() const { return output_; }

private:
    friend class Instance;

    struct Slot {
        unsigned restarts = 0;
        unsigned consecutiveFailures = 0;
        bool done = false;       // exited cleanly and the policy does not restart it
        bool lastFailed = false; // the last exit counted as a failure
        EventSource restartTimer;
        std::string lastExit;
        std::string lastError;
    };

    Service(ServiceContext &context, std::shared_ptr<const Profile> profile);

    Instance *spawnInstance(unsigned slot, const std::shared_ptr<const Profile> &profile, bool candidate);
    Instance *spawnInstance(unsigned slot) { return spawnInstance(slot, profile_, false); }
    void onStatusPipe(Instance &instance);
    void onExecDone(Instance &instance);
    void onChildExit(Instance &instance, const siginfo_t &info);
    void onOutput(Instance &instance, bool isStderr);
    void drainOutput(Instance &instance);
    void onDeadline(Instance &instance);
    void onWatchdog(Instance &instance);
    void onNotify(NotifyMessage &&message);
    // The worker channel and the handoff broker (handoff.cpp).
    [[nodiscard]] bool wantsChannel(const config::ServiceConfig &config) const;
    void onChannelMessage(ChannelPeer &peer, ChannelMessage &&message);
    void onChannelClosed(ChannelPeer &peer, const std::string &why);
    void welcomePeer(ChannelPeer &peer, const ChannelMessage &hello);
    void sendListeners(ChannelPeer &peer);
    void acceptHandoff(ChannelPeer &peer, ChannelMessage &message);
    void refuseHandoff(ChannelPeer &peer, std::uint64_t id, int code, const std::string &why);
    // The configuration a peer works for: its instance's generation, or
    // the current one for an external worker.
    [[nodiscard]] const config::ServiceConfig &configOf(const ChannelPeer &peer) const;
    [[nodiscard]] unsigned generationOf(const ChannelPeer &peer) const;
    // "web[1] (pid 42)" or "web external worker 7 (pid 42, uid 33)", for logs.
    [[nodiscard]] std::string peerName(const ChannelPeer &peer) const;
    // Ready for connections: a ready instance not being retired, or an
    // external worker that sent READY; in both cases granted ADOPT.
    [[nodiscard]] static bool canAdopt(const ChannelPeer &peer);
    void deliverHeld();
    void expireHeld();
    void dropHeld(HeldConnection *held);
    bool sendDrain(Instance &instance);
    // External workers (external.cpp).
    Result<void> openActivationSocket();
    void onActivationAccept();
    void admitExternal(UniqueFd fd);
    void rejectExternal(UniqueFd fd, int code, const std::string &why);
    void dropRejected(const void *key);
    void closeExternal(const std::string &why);
    void reapExternal();
    // Drained over its channel (it joined for handoff), else by drain_signal.
    [[nodiscard]] static bool drainsOverChannel(const Instance &instance);
    // "over its channel" or "with SIGTERM", for events.
    [[nodiscard]] static std::string drainHow(const Instance &instance);
    void becomeReady(Instance &instance);
    void setState(Instance &instance, InstanceState state);
    void armDeadline(Instance &instance, Duration after);
    void signalInstance(Instance &instance, int sig);
    void stopInstance(Instance &instance);
    void drainInstance(Instance &instance);
    // The instance serving the slot: not a candidate, not retiring.
    Instance *primaryOf(unsigned slot);
    Slot *slotOf(const Instance &instance);
    Instance *findById(std::uint64_t id);
    [[nodiscard]] std::vector<std::string> outputOf(pid_t pid, std::size_t lines) const;

    void advanceRollout();
    void stepRollout();
    void beginStep(RolloutStep &step);
    void startReplacement(RolloutStep &step);
    [[nodiscard]] std::string label(unsigned index, pid_t pid, unsigned generation) const;
    void commitRollout();
    void failRollout(RolloutState final, std::string reason, std::optional<RolloutFailure> failure);
    void finishRollout();
    void abortRollout(const std::string &reason);
    void rolloutEvent(const std::string &event);
    void onRolloutInstanceExit(Instance &instance, const std::string &how);
    [[nodiscard]] nlohmann::json rolloutToJson(const Rollout &rollout) const;
    void failInstance(Instance &instance, std::string reason);
    void scheduleRestart(unsigned slot, bool failure);
    void giveUp(std::string reason);
    void storeFds(NotifyMessage &message);
    void logLine(const Instance &instance, bool isStderr, std::string_view line);
    void changed();
    Instance *findByPid(pid_t pid);
    void remove(Instance &instance);

    ServiceContext &context_;
    std::shared_ptr<const Profile> profile_;
    std::unique_ptr<NotifyServer> notify_;
    std::vector<Slot> slots_;
    std::vector<std::unique_ptr<Instance>> instances_;
    std::vector<StoredFd> fdStore_;
    std::deque<Duration> restartTimes_; // automatic restarts within start_limit_interval
    std::deque<LogEntry> output_;
    std::deque<std::unique_ptr<HeldConnection>> held_;
    // The activation socket (activation_socket) and who connected to it.
    UniqueFd activationListener_;
    EventSource activationSource_;
    EventSource activationBackoff_;
    std::string activationPath_; // the file to unlink when it goes: empty for an abstract one
    dev_t activationDev_ = 0;
    ino_t activationIno_ = 0;
    std::vector<std::unique_ptr<ExternalWorker>> external_;
    EventSource externalReaper_; // removes external workers whose channel closed
    // Refused workers, kept until they have sent HELLO or hung up (the 64
    // most recent):
    // closing at once could fail their HELLO with EPIPE before they read why.
    struct Rejected {
        UniqueFd fd;
        EventSource io;
    };
    std::vector<std::unique_ptr<Rejected>> rejected_;
    HandoffCounters handoff_;
    EventSource holdTimer_;  // the oldest held connection's handoff_timeout
    EventSource retryTimer_; // a replacement's channel was full
    bool active_ = false;    // wanted up
    bool failed_ = false;    // gave up restarting
    std::string failedReason_;
    unsigned restartsTotal_ = 0;
    std::unique_ptr<Rollout> rollout_;
    nlohmann::json lastRollout_; // null until a rollout has finished
    std::uint64_t rolloutSerial_ = 0;
    std::string lastSpawnError_;
    unsigned nextGeneration_ = 2; // generations are never reused, even after a failed rollout
    bool advancing_ = false;      // advanceRollout() is on the stack
    bool advanceAgain_ = false;
    ChangeHandler onChange_;
    RolloutHandler onRollout_;
    OutputHandler onOutputLine_;
};

} // namespace fdsup
