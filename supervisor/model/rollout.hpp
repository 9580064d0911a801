// Rollouts: a service moves to a new generation batch by batch, with a readiness gate and a deadline
// at every step, and rolls back on failure (docs/rollouts.md).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "common/result.hpp"
#include "config/config.hpp"
#include "io/clock.hpp"
#include "model/lifecycle.hpp"
#include "model/profile.hpp"

namespace fdsup {

struct RolloutOptions {
    unsigned batch = 1;
    config::RolloutOrder order = config::RolloutOrder::StartFirst;
    Duration timeout = Duration::max(); // roll back when not done by then

    friend bool operator==(const RolloutOptions &, const RolloutOptions &) = default;
};

enum class RolloutState : std::uint8_t { Running, RollingBack, Succeeded, Failed, Cancelled };
const char *rolloutStateName(RolloutState state);
const char *rolloutOrderName(config::RolloutOrder order);

// One instance slot of a rollout. Instances are referred to by id, never by
// pointer: they may be reaped at any time.
struct RolloutStep {
    enum class Phase : std::uint8_t {
        Pending,     // not reached yet
        DrainingOld, // stop-first: the old instance drains before its replacement starts
        Starting,    // the replacement was started and is not ready yet
        Ready,       // the replacement is ready
        Retiring,    // start-first: the old instance drains after its replacement is ready
        Done,
        Failed,     // the replacement exited or missed its deadline
        RolledBack, // the replacement was stopped by the rollback
    };
    unsigned index = 0;
    Phase phase = Phase::Pending;
    std::uint64_t oldId = 0;
    pid_t oldPid = 0;
    std::uint64_t newId = 0;
    pid_t newPid = 0;
    std::string reason;

    friend bool operator==(const RolloutStep &, const RolloutStep &) = default;
};
const char *rolloutPhaseName(RolloutStep::Phase phase);

// The replacement that made a rollout fail.
struct RolloutFailure {
    unsigned index = 0;
    pid_t pid = 0; // 0: it could not even be started
    unsigned generation = 0;
    std::string reason;
    std::vector<std::string> output; // its last lines

    friend bool operator==(const RolloutFailure &, const RolloutFailure &) = default;
};

// What a rollout is or was: what status shows and a waiting caller gets.
struct RolloutRecord {
    std::uint64_t id = 0;
    std::string service;
    unsigned fromGeneration = 0;
    unsigned toGeneration = 0;
    RolloutOptions options;
    RolloutState state = RolloutState::Running;
    std::string reason;
    std::optional<RolloutFailure> failure;
    std::int64_t startedRealtimeUsec = 0;
    Duration duration{}; // so far, or in all once finished
    std::vector<RolloutStep> steps;

    friend bool operator==(const RolloutRecord &, const RolloutRecord &) = default;
};

// An instance as a rollout sees it.
struct InstanceView {
    std::uint64_t id = 0;
    pid_t pid = 0;
    InstanceState state = InstanceState::Launching;
};

// The service state a rollout changes and a rollback puts back.
struct ServiceShape {
    unsigned slots = 0;
    bool active = false; // wanted up
    bool failed = false; // gave up restarting
    std::string failedReason;
};

class Rollout;

// What a rollout needs from the service it rolls out: start an instance of
// a profile, drain, stop, look up; the service's slots and state around
// them; and where progress goes.
class RolloutHost {
public:
    RolloutHost() = default;
    RolloutHost(const RolloutHost &) = delete;
    RolloutHost &operator=(const RolloutHost &) = delete;

    [[nodiscard]] virtual const std::string &serviceName() const = 0;
    // The instance serving the slot (neither a candidate nor retiring).
    [[nodiscard]] virtual std::optional<InstanceView> primaryOf(unsigned slot) const = 0;
    // nullopt: gone.
    [[nodiscard]] virtual std::optional<InstanceView> find(std::uint64_t id) const = 0;
    // Starts an instance of `profile` in `slot`: a candidate, whose exit
    // fails the rollout, or (a rollback's) an ordinary one. The error says
    // why it could not be started.
    virtual Result<InstanceView> start(unsigned slot, const std::shared_ptr<const Profile> &profile,
                                       bool candidate) = 0;
    // Retires an instance by draining it.
    virtual void drain(std::uint64_t id) = 0;
    // Retires a candidate the rollback gives up: stopped, never restarted.
    virtual void stop(std::uint64_t id) = 0;
    // "over its channel" or "with SIGTERM", for events.
    [[nodiscard]] virtual std::string drainHow(std::uint64_t id) const = 0;

    [[nodiscard]] virtual ServiceShape shape() const = 0;
    virtual void reshape(const ServiceShape &shape) = 0;
    // The rollout fills the slot now: a restart pending for it is cancelled.
    virtual void claim(unsigned slot) = 0;
    // The slot's worker finished its job and the policy does not restart it.
    [[nodiscard]] virtual bool slotDone(unsigned slot) const = 0;
    // Success: the candidates serve and `to` is the current generation.
    virtual void commit(const std::shared_ptr<const Profile> &to) = 0;
    // A restart's target: the current configuration (at its scaled size)
    // as the next generation, made now (the binary on disk now is the build).
    virtual Result<std::shared_ptr<const Profile>> restartProfile() = 0;
    // The generation that serves now.
    [[nodiscard]] virtual std::shared_ptr<const Profile> currentProfile() const = 0;
    // The last `lines` output lines of a process, oldest first.
    [[nodiscard]] virtual std::vector<std::string> lastOutputOf(pid_t pid, std::size_t lines) const = 0;

    // Progress and the result.
    virtual void rolloutEvent(const Rollout &rollout, const std::string &event) = 0;
    virtual void rolloutFinished(const RolloutRecord &record) = 0;
    // A queued restart began as rollout `id`, or ended before it could
    // (could not be started, cancelled, fdsupd stopping): `why` says which.
    virtual void queuedBegan(std::uint64_t ticket, std::uint64_t id) = 0;
    virtual void queuedEnded(std::uint64_t ticket, const Error &why) = 0;

protected:
    ~RolloutHost() = default;
};

// One rollout in progress. Invariants: at most `batch` slots are in
// progress at a time, and a batch begins only when the previous one is
// completely done, old instances included, so at most instances + batch
// processes run; a replacement that exits or misses its deadline, the
// rollout's own deadline or a cancel fail it, and the rollback restores the
// old generation rather than retrying.
class Rollout {
public:
    Rollout(RolloutHost &host, Clock &clock, std::uint64_t id, std::shared_ptr<const Profile> from,
            std::shared_ptr<const Profile> to, const RolloutOptions &options);

    [[nodiscard]] std::uint64_t id() const { return id_; }
    [[nodiscard]] RolloutState state() const { return state_; }
    [[nodiscard]] bool finished() const
    {
        return state_ != RolloutState::Running && state_ != RolloutState::RollingBack;
    }
    [[nodiscard]] const Profile &target() const { return *to_; }
    [[nodiscard]] RolloutRecord record() const;

    // Brings the service up for the new generation and takes the first steps.
    void begin();
    // Takes every step the service's state allows now; call after every
    // change (an instance ready or gone). Re-entrancy safe.
    void advance();
    // A candidate ended before the rollout completed: the rollout fails.
    void candidateEnded(std::uint64_t id, unsigned slot, pid_t pid, const std::string &why);
    // Stops and rolls back (Cancelled); false when it is not running.
    bool cancel(const std::string &reason);
    // Its deadline (RolloutOptions::timeout) passed: fails and rolls back.
    void timeOut();
    // The service is going down: nothing to roll back to.
    void abort(const std::string &reason);

private:
    void step();
    void beginStep(RolloutStep &step);
    void startReplacement(RolloutStep &step);
    void commit();
    void fail(RolloutState final, std::string reason, std::optional<RolloutFailure> failure);
    void finish();
    void event(const std::string &text);
    [[nodiscard]] std::string slotName(unsigned index) const;
    [[nodiscard]] std::string label(unsigned index, pid_t pid, unsigned generation) const;

    RolloutHost &host_;
    Clock &clock_;
    std::uint64_t id_;
    std::shared_ptr<const Profile> from_;
    std::shared_ptr<const Profile> to_;
    RolloutOptions options_;
    RolloutState state_ = RolloutState::Running;
    // What the rollout ends as once the rollback is complete.
    RolloutState finalState_ = RolloutState::Failed;
    std::string reason_;
    std::optional<RolloutFailure> failure_;
    std::int64_t startedRealtimeUsec_ = 0;
    Duration startedAt_{};
    Duration finishedAt_{};
    std::vector<RolloutStep> steps_;
    ServiceShape before_;        // the service before the rollout
    unsigned fromInstances_ = 0; // of which were wanted up (0 for a stopped service)
    unsigned toInstances_ = 0;
    // The rollback: replacements it stopped, old-generation instances it started.
    std::vector<std::uint64_t> stopped_;
    std::vector<std::uint64_t> restored_;
    bool advancing_ = false; // advance() is on the stack
    bool again_ = false;
};

// What a service's rollouts did since fdsupd started (fdsup_rollouts_*,
// docs/metrics.md). Durations are counted in buckets (upper bounds, in
// seconds, each counting the rollouts at most that long; not cumulative).
struct RolloutCounters {
    static constexpr std::array<double, 13> kDurationBuckets{0.1, 0.25, 0.5, 1,   2.5, 5,   10,
                                                             30,  60,   120, 300, 600, 1800};
    std::uint64_t started = 0;
    std::uint64_t succeeded = 0;
    std::uint64_t rolledBack = 0; // RolloutState::Failed: a candidate failed, the old generation restored
    std::uint64_t cancelled = 0;
    std::array<std::uint64_t, kDurationBuckets.size() + 1> durations{}; // the last one: longer than all
    double durationSeconds = 0;                                         // the sum, of finished rollouts

    void finished(const RolloutRecord &record);

    friend bool operator==(const RolloutCounters &, const RolloutCounters &) = default;
};

// A service's rollouts: the one in progress, the restarts queued behind it
// and the last record. One rollout at a time; a restart asked for while one
// runs is refused (EBUSY) unless it asks to be queued.
class Rollouts {
public:
    // Restarts that may wait behind the rollout in progress; past it EBUSY.
    static constexpr std::size_t kMaxQueued = 64;

    Rollouts(RolloutHost &host, Clock &clock) : host_(host), clock_(clock) {}

    struct Begun {
        std::uint64_t id = 0;     // the rollout, when it began now
        std::uint64_t ticket = 0; // the queued restart, when queued
    };
    // A rollout to `target` (a reload's), or with a null target a restart:
    // the current configuration as the next generation. Begins now, or with
    // `queue` waits behind the rollout in progress and those queued; else
    // EBUSY names the rollout in progress (also when kMaxQueued restarts
    // wait already).
    Result<Begun> request(std::shared_ptr<const Profile> target, const RolloutOptions &options, bool queue);
    // Cancels the rollout in progress (rolled back) and every restart queued
    // behind it (they would undo the cancel); false when none is running.
    bool cancel(const std::string &reason);
    // The service is stopping: the rollout ends at once, the queue is dropped.
    void abort(const std::string &reason);
    // Forwards a change to the rollout in progress, and begins the next
    // queued restart when it finished.
    void advance();
    void candidateEnded(std::uint64_t id, unsigned slot, pid_t pid, const std::string &why);

    [[nodiscard]] bool active() const { return current_ != nullptr; }
    [[nodiscard]] const Rollout *current() const { return current_.get(); }
    [[nodiscard]] const std::optional<RolloutRecord> &last() const { return last_; }
    [[nodiscard]] std::size_t queued() const { return queue_.size(); }
    // The id the rollout in progress has (0 when none).
    [[nodiscard]] std::uint64_t currentId() const { return current_ ? current_->id() : 0; }
    // Re-exec: the ids given so far (rollouts, queued restarts) and, in the
    // new image, taking them and the last record back (none in progress).
    [[nodiscard]] std::uint64_t serial() const { return serial_; }
    [[nodiscard]] std::uint64_t tickets() const { return tickets_; }
    [[nodiscard]] const RolloutCounters &counters() const { return counters_; }
    void restoreCounters(const RolloutCounters &counters) { counters_ = counters; }
    void restoreHistory(std::optional<RolloutRecord> last, std::uint64_t serial, std::uint64_t tickets)
    {
        last_ = std::move(last);
        serial_ = serial;
        tickets_ = tickets;
    }

private:
    struct Queued {
        std::uint64_t ticket = 0;
        RolloutOptions options;
    };
    // Makes the rollout current and begins it; a queued one's ticket is
    // announced with its id first.
    Result<std::uint64_t> start(std::shared_ptr<const Profile> target, const RolloutOptions &options,
                                std::uint64_t ticket);
    // Records a finished rollout and begins the next queued restart.
    void settle();
    void dropQueue(const std::string &reason);

    RolloutHost &host_;
    Clock &clock_;
    std::unique_ptr<Rollout> current_;
    std::optional<RolloutRecord> last_;
    std::deque<Queued> queue_;
    Timer deadline_; // the current rollout's RolloutOptions::timeout
    std::uint64_t serial_ = 0;
    std::uint64_t tickets_ = 0;
    RolloutCounters counters_;
    bool settling_ = false;
};

} // namespace fdsup
