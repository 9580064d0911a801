// One worker process: its pidfd, pipes, timers and worker channel, driven by its lifecycle.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <sys/types.h>

#include "common/result.hpp"
#include "core/fd.hpp"
#include "io/clock.hpp"
#include "io/event_loop.hpp"
#include "io/log_context.hpp"
#include "io/notify.hpp"
#include "io/pid_file.hpp"
#include "io/spawn.hpp"
#include "model/channel_peer.hpp"
#include "model/lifecycle.hpp"
#include "model/output.hpp"
#include "model/profile.hpp"
#include "model/snapshot.hpp"

namespace fdsup {

// An instance's place in its service, decided by the service (the
// lifecycle does not care): the one serving its slot, a rollout's
// replacement not yet committed (its exit fails the rollout), or one on its
// way out for good (replaced, scaled away, rolled back: its exit is
// expected and its slot is not restarted for it).
enum class InstanceRole : std::uint8_t { Primary, Candidate, Retiring };

class Instance;

// What an instance tells the service that owns it.
class InstanceOwner {
public:
    InstanceOwner() = default;
    InstanceOwner(const InstanceOwner &) = delete;
    InstanceOwner &operator=(const InstanceOwner &) = delete;

    virtual void onInstanceReady(Instance &instance) = 0;
    // The process is gone and the instance final (Exited or Failed); the
    // owner removes it, which destroys it.
    virtual void onInstanceEnded(Instance &instance, const ExitStatus &exit) = 0;
    // Any other change of its state.
    virtual void onInstanceChanged(Instance &instance) = 0;
    virtual void onInstanceOutput(Instance &instance, bool isStderr, std::string_view line) = 0;
    // DRAIN over its channel when it joined for handoff; false: not sent,
    // and the instance falls back to its drain signal.
    virtual bool sendDrain(Instance &instance) = 0;

protected:
    ~InstanceOwner() = default;
};

// Owned by its service; every event source and timer it holds dies with it,
// so no callback can reach a reaped instance. All decisions are the pure
// transition() (lifecycle.hpp); this class carries them out.
class Instance final : public ChannelPeer {
public:
    Instance(InstanceOwner &owner, EventLoop &loop, Clock &clock, unsigned slot, std::uint64_t id,
             InstanceRole role, std::shared_ptr<const Profile> profile);
    ~Instance();

    // Forks and execs; on success the instance is Launching with its
    // start_timeout armed. The request's LISTEN_* and the channel are the
    // caller's. On failure no process is left behind.
    Result<void> spawn(const SpawnRequest &request);

    // Re-exec (instance_snapshot.cpp): what a settled (ready, primary)
    // instance carries; and, in the new image, taking it back (the
    // snapshot's descriptors are owned from here, even on failure).
    [[nodiscard]] InstanceSnapshot snapshot() const;
    Result<void> restore(const InstanceSnapshot &snapshot);
    // Why this instance cannot be carried as it is now ("" when it can).
    [[nodiscard]] std::string busyReason() const;

    // fdsupd's own decisions.
    void stop();
    void drain();
    // What the worker said on its notify socket (FDSTORE is the service's).
    void onNotify(const NotifyMessage &message);

    [[nodiscard]] std::uint64_t id() const { return id_; }
    [[nodiscard]] unsigned slot() const { return slot_; }
    [[nodiscard]] InstanceRole role() const { return role_; }
    void setRole(InstanceRole role) { role_ = role; }
    [[nodiscard]] InstanceState state() const { return lifecycle_.state; }
    [[nodiscard]] const Ending &ending() const { return lifecycle_.ending; }
    [[nodiscard]] const Profile &profile() const { return *profile_; }
    [[nodiscard]] const std::shared_ptr<const Profile> &sharedProfile() const { return profile_; }
    // The process spawned; pid() differs once a pid_file was followed.
    [[nodiscard]] pid_t spawnPid() const { return spawnPid_; }
    [[nodiscard]] const config::ServiceConfig &config() const { return profile_->config; }
    [[nodiscard]] unsigned generation() const { return profile_->generation; }
    // What its log lines are about (the journal's FDSUP_* fields).
    [[nodiscard]] LogSubject logSubject() const
    {
        return LogSubject{config().name, slot_, pid(), generation()};
    }
    [[nodiscard]] Duration since() const { return since_; }         // when its state was entered
    [[nodiscard]] Duration startedAt() const { return startedAt_; } // when spawned
    [[nodiscard]] std::optional<Duration> readyAt() const { return readyAt_; }
    [[nodiscard]] const std::optional<std::string> &status() const { return status_; } // STATUS=
    [[nodiscard]] std::optional<int> errnoValue() const { return errno_; }             // ERRNO=
    // Its drain_timeout or stop_timeout passed: it was sent kill_signal.
    [[nodiscard]] bool killedLeaving() const { return killedLeaving_; }

    // The channel peer: what the broker and the channel session ask.
    [[nodiscard]] const config::ServiceConfig &peerConfig() const override { return config(); }
    [[nodiscard]] unsigned peerGeneration() const override { return generation(); }
    [[nodiscard]] std::uint32_t instanceNumber() const override { return slot_; }
    [[nodiscard]] bool isExternal() const override { return false; }
    [[nodiscard]] std::string describe() const override;
    [[nodiscard]] bool adopting() const override
    {
        return state() == InstanceState::Ready && role_ != InstanceRole::Retiring;
    }
    void channelReady(const std::string &status) override;
    // Its processes claimed every listener (wrap = "preload").
    void bound();

private:
    void deliver(const LifecycleEvent &event);
    void carryOut(const LifecycleEvent &event, InstanceState before, const Transition &t);
    void log(const LifecycleEvent &event, InstanceState before, const Transition &t) const;
    void arm(Timer &timer, Duration after, LifecycleEvent::Kind fires);
    void signal(int sig);
    void onStatusPipe();
    void onChildExit(const siginfo_t &info);
    // pid_file: the started process exited successfully during start; its
    // daemon is followed as the main process once the pid file names it.
    [[nodiscard]] bool followsDaemon(const siginfo_t &info) const;
    void awaitDaemon(const siginfo_t &info);
    void onDaemonPid(Result<pid_t> pid, const siginfo_t &info);

    InstanceOwner &owner_;
    EventLoop &loop_;
    Clock &clock_;
    unsigned slot_;
    std::uint64_t id_;
    InstanceRole role_;
    std::shared_ptr<const Profile> profile_;

    Lifecycle lifecycle_;
    Duration since_{};
    Duration startedAt_{};
    std::optional<Duration> readyAt_;
    std::optional<std::string> status_;
    std::optional<int> errno_;
    Duration watchdogTimeout_{};

    pid_t spawnPid_ = 0;
    bool followed_ = false; // pid() is the daemon named by pid_file
    bool killedLeaving_ = false;
    std::unique_ptr<PidFileWatch> pidFileWatch_;
    UniqueFd spawnPidfd_; // the started process's, kept while its source may still use it
    UniqueFd pidfd_;
    UniqueFd statusPipe_;
    EventSource childSource_;
    EventSource statusSource_;
    OutputCapture output_;
    Timer deadline_;
    Timer watchdog_;
};

} // namespace fdsup
