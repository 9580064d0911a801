// A service: its slots of instances, the restart policy, and the wiring of its parts.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "config/config.hpp"
#include "io/clock.hpp"
#include "io/event_loop.hpp"
#include "io/notify.hpp"
#include "io/sockets.hpp"
#include "model/activation.hpp"
#include "model/channel_session.hpp"
#include "model/fd_store.hpp"
#include "model/handoff_broker.hpp"
#include "model/instance.hpp"
#include "model/output.hpp"
#include "model/preload.hpp"
#include "model/profile.hpp"
#include "model/restart_policy.hpp"
#include "model/rollout.hpp"

namespace fdsup {

enum class ServiceState : std::uint8_t { Starting, Running, Stopping, Stopped, Failed };
const char *serviceStateName(ServiceState state);

// The largest instance count a service may have (config and Scale).
inline constexpr unsigned kMaxInstances = 1024;

// What every service shares, provided by the daemon.
struct ServiceContext {
    EventLoop &loop;
    Clock &clock; // the loop itself; a fake in tests
    const SocketSet &sockets;
    // A prefix unique to this fdsupd, for the services' abstract notify sockets.
    std::string notifyPrefix;
    // RLIMIT_NOFILE as fdsupd found it, before raising its own: what workers
    // get unless their [limits] say otherwise (select() breaks above 1024).
    config::ResourceLimit originalNofile;
    // Instance ids, unique within this fdsupd.
    std::uint64_t nextInstanceId = 1;
    HandoffLimits handoff;
    // [supervisor] preload_library, for wrapped services.
    std::string preloadLibrary;
    // FDSUP_SUPERVISOR in every worker's environment (the control socket):
    // how a successor tells our orphans from another fdsupd's (orphans.hpp).
    std::string supervisorId{};
};

class Service;

// One instance's step, for those following events (fdsupctl events): the
// lifecycle's own decisions stay in the instance and the service.
struct InstanceEvent {
    enum class Kind : std::uint8_t { Started, Ready, Exited };
    Kind kind = Kind::Started;
    unsigned slot = 0;
    std::uint64_t id = 0;
    pid_t pid = 0;
    unsigned generation = 0;
    // Exited: how ("exited with status 1", "killed by SIGKILL"), why
    // (endCauseName), whether it counts as a failure, and whether fdsupd had
    // to kill it because its drain_timeout or stop_timeout passed.
    std::string exit;
    EndCause cause = EndCause::None;
    bool failure = false;
    bool killed = false;
};

// What a service tells the daemon around it.
class ServiceObserver {
public:
    ServiceObserver() = default;
    ServiceObserver(const ServiceObserver &) = delete;
    ServiceObserver &operator=(const ServiceObserver &) = delete;

    // After every change of the service or one of its instances.
    virtual void serviceChanged(Service &service) = 0;
    // A rollout step (the rollout is in progress) and the final record.
    virtual void rolloutEvent(Service &service, const Rollout &rollout, const std::string &event) = 0;
    virtual void rolloutFinished(Service &service, const RolloutRecord &record) = 0;
    // A queued restart began as rollout `id`, or ended before it could.
    virtual void queuedBegan(Service &service, std::uint64_t ticket, std::uint64_t id) = 0;
    virtual void queuedEnded(Service &service, std::uint64_t ticket, const Error &why) = 0;
    virtual void outputLine(Service &service, const LogLine &line) = 0;
    // An instance spawned, got ready or ended (before serviceChanged). Only
    // the event stream listens: empty by default.
    virtual void instanceEvent(Service & /*service*/, const InstanceEvent & /*event*/) {}

protected:
    ~ServiceObserver() = default;
};

// A service is slots of instances: `instances = N` gives N slots, each with
// one live instance (two during a rollout: the old and the new generation)
// and its history. The instance lifecycle, the rollout, the broker, the
// activation socket, the descriptor store and the output are parts of their
// own; the service keeps the slots, the restart policy and the wiring.
class Service final : private InstanceOwner,
                      private RolloutHost,
                      private ActivationHost,
                      private PreloadHost {
public:
    static Result<std::unique_ptr<Service>>
    create(ServiceContext &context, const config::ServiceConfig &config, ServiceObserver &observer);
    // Re-exec (service_snapshot.cpp): the service in the new image, from the
    // snapshot the old one took (whose descriptors it owns from here, even
    // on failure); nothing is spawned, every instance is adopted.
    static Result<std::unique_ptr<Service>> restore(ServiceContext &context,
                                                    const config::ServiceConfig &config,
                                                    const ServiceSnapshot &snapshot,
                                                    ServiceObserver &observer);
    ~Service();
    [[nodiscard]] ServiceSnapshot snapshot() const;
    // What stops the service being carried across a re-exec now, always
    // transitional ("rollout 7 in progress": wait). "" when it can be carried.
    [[nodiscard]] std::string busyReason() const;

    [[nodiscard]] const std::string &name() const { return profile_->config.name; }
    // The configuration of the current generation (what new instances run).
    [[nodiscard]] const config::ServiceConfig &config() const { return profile_->config; }
    [[nodiscard]] const std::shared_ptr<const Profile> &profile() const { return profile_; }
    [[nodiscard]] unsigned generation() const { return profile_->generation; }
    [[nodiscard]] bool active() const { return active_; }
    [[nodiscard]] unsigned wanted() const { return static_cast<unsigned>(slots_.size()); }
    [[nodiscard]] ServiceState state() const;
    [[nodiscard]] const std::string &failedReason() const { return failedReason_; }
    // The socket start() found missing (not received yet); empty once started or stopped.
    [[nodiscard]] const std::string &waitingFor() const { return waitingFor_; }
    [[nodiscard]] unsigned restartsTotal() const { return restartsTotal_; }
    // Automatic restarts by cause, since this fdsupd image started (docs/metrics.md).
    [[nodiscard]] const std::array<std::uint64_t, kRestartCauses> &restartsByCause() const
    {
        return restartsByCause_;
    }
    // Worker channels (instances', external workers', shims') closed by
    // fdsupd for a message it refused: malformed, flooding or unexpected.
    [[nodiscard]] std::uint64_t channelMessagesDropped() const { return session_.dropped(); }
    // Instances that had to be killed because their drain_timeout or stop_timeout passed.
    [[nodiscard]] unsigned killedLeavingTotal() const { return killedLeavingTotal_; }
    [[nodiscard]] const std::vector<SlotHistory> &slots() const { return slots_; }
    [[nodiscard]] const std::vector<std::unique_ptr<Instance>> &instances() const { return instances_; }
    [[nodiscard]] std::size_t liveInstances() const { return instances_.size(); }
    [[nodiscard]] const NotifyServer &notify() const { return *notify_; }
    [[nodiscard]] const FdStore &fdStore() const { return fdStore_; }
    [[nodiscard]] const OutputLog &output() const { return output_; }
    [[nodiscard]] const HandoffBroker &broker() const { return broker_; }
    // Transfer (service_transfer.cpp, docs/transfer.md): the connections its
    // broker holds, taken out; one another fdsupd held, held here for its
    // remaining time (refused, and closed, with the reason).
    std::vector<std::unique_ptr<HeldConnection>> takeHeldConnections();
    Result<void> holdTransferred(std::unique_ptr<HeldConnection> held, Duration remaining);
    [[nodiscard]] const Rollouts &rollouts() const { return rollouts_; }
    // The workers connected to the activation socket (none without one).
    [[nodiscard]] const std::vector<std::unique_ptr<ExternalWorker>> &externalWorkers() const;
    [[nodiscard]] Duration now() const { return context_.clock.now(); }
    // A wrapped service's preload socket (null otherwise) and what it
    // knows of each instance's listeners.
    [[nodiscard]] const PreloadSocket *preloadSocket() const { return preload_.get(); }
    [[nodiscard]] std::vector<ListenerReport> listenerReport(const Instance &instance) const;

    // Brings every slot up (clearing a failed state and its counters).
    void start();
    // Stops every instance (stop signal, SIGKILL at stop_timeout), ends a
    // rollout in progress and keeps the service down until start().
    void stop();
    // Starts or drains instances until there are `instances` (a stopped
    // service only records the number). EBUSY during a rollout.
    Result<void> scale(unsigned instances);
    // No instance is draining away or starting to fill a slot: the last
    // start, stop or scale is complete.
    [[nodiscard]] bool settled() const;

    // A rollout (docs/rollouts.md): to `target` (a reload's profile, from
    // prepare()), or with a null target a restart of the current
    // configuration as the next generation. Begins now, or with `queue`
    // behind the rollout in progress; EBUSY when one runs and `queue` is not set.
    Result<Rollouts::Begun> rollOut(std::shared_ptr<const Profile> target, const RolloutOptions &options,
                                    bool queue);
    // Cancels the rollout in progress and the restarts queued behind it; false if none.
    bool cancelRollout(const std::string &reason);
    // A profile of the next generation for a changed configuration (reload);
    // fails when its binary or user cannot be resolved.
    [[nodiscard]] Result<std::shared_ptr<const Profile>> prepare(const config::ServiceConfig &config) const;
    // The current generation, a rollout's target or a live instance is configured with the socket.
    [[nodiscard]] bool usesSocket(std::string_view socket) const;

private:
    Service(ServiceContext &context, std::shared_ptr<const Profile> profile, ServiceObserver &observer);

    Result<InstanceView> spawn(unsigned slot, const std::shared_ptr<const Profile> &profile,
                               InstanceRole role);
    void onNotify(NotifyMessage &&message);
    // service_snapshot.cpp: one instance of a snapshot; fds: its pidfd,
    // stdout, stderr and channel, owned by the caller until taken.
    Result<void> adoptInstance(const InstanceSnapshot &snapshot, UniqueFd *fds);
    void resizeSlots(unsigned count);
    // service_restart.cpp (with onInstanceEnded): the restart policy applied to a slot.
    void scheduleRestart(unsigned slot, Duration readyFor, bool failure, RestartCause cause);
    void giveUp(std::string reason);
    void remove(const Instance &instance);
    void changed();
    [[nodiscard]] Instance *findInstance(std::uint64_t id) const;
    // start(): a socket it uses has no descriptors yet; sets waitingFor_.
    bool waitsForSocket();
    [[nodiscard]] Instance *primaryInstance(unsigned slot) const;
    [[nodiscard]] std::vector<BorrowedFd> listenersOf(const config::ServiceConfig &config) const;
    // service_preload.cpp: a wrapped service's part of a spawn.
    Result<void> openPreload();
    // service_snapshot.cpp: the preload socket taken back across re-exec (opened afresh without a snapshot).
    Result<void> restorePreload(const std::optional<PreloadSnapshot> &snapshot, std::vector<UniqueFd> fds);
    Result<void> restoreActivation(const std::optional<ActivationSnapshot> &snapshot,
                                   std::vector<UniqueFd> fds);
    [[nodiscard]] std::string preloadAddress() const;
    // ": listener 'web' not adopted: REASON" for each listener a wrapped
    // instance never claimed, as if its deadline had passed; "" otherwise.
    [[nodiscard]] std::string unadopted(const Instance &instance) const;
    static InstanceView viewOf(const Instance &instance);
    // An instance event of `kind` naming the instance (slot, id, pid, generation).
    static InstanceEvent instanceEventOf(InstanceEvent::Kind kind, const Instance &instance);

    // InstanceOwner
    void onInstanceReady(Instance &instance) override;
    void onInstanceEnded(Instance &instance, const ExitStatus &exit) override;
    void onInstanceChanged(Instance &instance) override;
    void onInstanceOutput(Instance &instance, bool isStderr, std::string_view line) override;
    bool sendDrain(Instance &instance) override;

    // RolloutHost (service_rollout.cpp)
    [[nodiscard]] const std::string &serviceName() const override { return name(); }
    [[nodiscard]] std::optional<InstanceView> primaryOf(unsigned slot) const override;
    [[nodiscard]] std::optional<InstanceView> find(std::uint64_t id) const override;
    Result<InstanceView> start(unsigned slot, const std::shared_ptr<const Profile> &profile,
                               bool candidate) override;
    void drain(std::uint64_t id) override;
    void stop(std::uint64_t id) override;
    [[nodiscard]] std::string drainHow(std::uint64_t id) const override;
    [[nodiscard]] ServiceShape shape() const override;
    void reshape(const ServiceShape &shape) override;
    void claim(unsigned slot) override;
    [[nodiscard]] bool slotDone(unsigned slot) const override;
    void commit(const std::shared_ptr<const Profile> &to) override;
    Result<std::shared_ptr<const Profile>> restartProfile() override;
    [[nodiscard]] std::shared_ptr<const Profile> currentProfile() const override { return profile_; }
    [[nodiscard]] std::vector<std::string> lastOutputOf(pid_t pid, std::size_t lines) const override;
    void rolloutEvent(const Rollout &rollout, const std::string &event) override;
    void rolloutFinished(const RolloutRecord &record) override;
    void queuedBegan(std::uint64_t ticket, std::uint64_t id) override;
    void queuedEnded(std::uint64_t ticket, const Error &why) override;

    // ActivationHost
    [[nodiscard]] const Profile &activeProfile() const override { return *profile_; }
    [[nodiscard]] bool admitting() const override { return active_; }
    std::uint64_t nextWorkerId() override { return context_.nextInstanceId++; }
    void onExternalMessage(ChannelPeer &peer, ChannelMessage &&message) override;
    void onExternalClosed(ChannelPeer &peer, const std::string &why) override;
    void onExternalDropped(ChannelPeer &peer, const std::string &why) override;
    void onExternalReady(ExternalWorker &worker) override;
    void onExternalsChanged() override;

    // PreloadHost (service_preload.cpp)
    [[nodiscard]] const std::string &preloadService() const override { return name(); }
    [[nodiscard]] bool preloadAdmitting() const override { return active_; }
    [[nodiscard]] std::vector<PreloadOwner> preloadOwners() const override;
    void onPreloadMessage(ChannelPeer &peer, ChannelMessage &&message) override;
    void onPreloadClosed(ChannelPeer &peer, const std::string &why) override;
    void onPreloadDropped(ChannelPeer &peer, const std::string &why) override;
    void onPreloadBound(std::uint64_t instance) override;

    ServiceContext &context_;
    ServiceObserver &observer_;
    std::shared_ptr<const Profile> profile_;
    std::unique_ptr<NotifyServer> notify_;
    std::vector<SlotHistory> slots_;
    std::vector<Timer> restartTimers_; // per slot
    std::vector<std::unique_ptr<Instance>> instances_;
    std::deque<Duration> restartTimes_; // automatic restarts within start_limit_interval
    FdStore fdStore_;
    OutputLog output_;
    HandoffBroker broker_;
    ChannelSession session_;
    std::unique_ptr<ActivationSocket> activation_;
    std::unique_ptr<PreloadSocket> preload_;
    Rollouts rollouts_;
    bool active_ = false; // wanted up
    bool failed_ = false; // gave up restarting
    std::string failedReason_;
    unsigned restartsTotal_ = 0;
    std::array<std::uint64_t, kRestartCauses> restartsByCause_{};
    unsigned killedLeavingTotal_ = 0;
    std::string waitingFor_;
    unsigned nextGeneration_ = 2; // generations are never reused, even after a failed rollout
};

} // namespace fdsup
