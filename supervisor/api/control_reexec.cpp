// The Reexec call and SIGUSR2: check the binary, wait for quiet, serialise, exec; and the new image's answer.
#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "api/control_api.hpp"
#include "daemon/reexec_exec.hpp"
#include "fdsup_build_config.h"

namespace fdsup {
namespace {

using Json = nlohmann::json;

constexpr Duration kDefaultTimeout = std::chrono::seconds(60);
constexpr Duration kCheckDeadline = std::chrono::seconds(10);
// A safety net beside the model's events: what is busy is looked at again
// this often while a re-exec waits (only then).
constexpr Duration kRecheck = std::chrono::milliseconds(100);

// The Reexec call as the new image sees it again (its parameters do not matter there).
varlink::Call reexecCall()
{
    varlink::Call call;
    call.method = std::string(varlink::kInterface) + ".Reexec";
    return call;
}

} // namespace

bool ControlApi::refusedWhileReexecuting(std::string_view method)
{
    // The calls that would change what is being serialised.
    static constexpr std::array<std::string_view, 7> kChanging{"Start",  "Stop",          "Restart", "Scale",
                                                               "Reload", "RolloutCancel", "Reexec"};
    return std::find(kChanging.begin(), kChanging.end(), method) != kChanging.end();
}

Result<void> ControlApi::watchSigusr2(EventLoop &loop)
{
    auto source = loop.addSignal(SIGUSR2, [this](const signalfd_siginfo & /*info*/) {
        spdlog::info("SIGUSR2: re-executing {}", ReexecImage::get().startedFrom());
        requestReexec(nullptr, std::nullopt, kDefaultTimeout);
    });
    if (!source) {
        return source.error();
    }
    sigusr2_ = std::move(*source);
    return {};
}

void ControlApi::callReexec(const std::shared_ptr<PendingCall> &call, const CallParams &params,
                            Service * /*service*/)
{
    if (params.binary && (params.binary->empty() || params.binary->front() != '/')) {
        call->fail(varlink::kErrorInvalidParameter, {{"parameter", "binary"}});
        return;
    }
    spdlog::info("Reexec requested by uid {} (pid {})", call->peer().uid, call->peer().pid);
    requestReexec(call, params.binary, params.timeoutUsec ? Duration(*params.timeoutUsec) : kDefaultTimeout);
}

void ControlApi::requestReexec(const std::shared_ptr<PendingCall> &call,
                               const std::optional<std::string> &binary, Duration timeout)
{
    const auto refuse = [&](const std::string &reason) {
        spdlog::error("Re-exec refused: {}", reason);
        if (call) {
            call->fail(varlink::kErrorReexecFailed, {{"reason", reason}});
        }
    };
    if (reexec_) {
        return refuse("a re-exec is already pending");
    }
    if (daemon_.shuttingDown()) {
        return refuse("fdsupd is stopping");
    }
    auto op = std::make_unique<ReexecOperation>();
    op->call = call;
    op->binaryPath = binary.value_or(ReexecImage::get().startedFrom());
    op->binary.reset(::open(op->binaryPath.c_str(), O_RDONLY | O_CLOEXEC));
    if (!op->binary) {
        return refuse("cannot open " + op->binaryPath + ": " + std::strerror(errno));
    }
    EventLoop &loop = *loop_;
    auto preflight =
        ReexecPreflight::start(loop, op->binary.borrow(), op->binaryPath, kCheckDeadline,
                               [this](Result<PreflightAnswer> answer) { reexecChecked(std::move(answer)); });
    if (!preflight) {
        return refuse("cannot check " + op->binaryPath + ": " + preflight.error().message);
    }
    op->preflight = std::move(*preflight);
    auto deadline = loop.startTimer(timeout, [this] {
        const std::string busy = reexec_->checked ? reexec_->busy : "the check of the new binary";
        reexecFail("still busy after the timeout: " + busy);
    });
    if (!deadline) {
        return refuse(deadline.error().message);
    }
    op->deadline = std::move(*deadline);
    reexec_ = std::move(op);
    spdlog::info("Re-exec: checking {}", reexec_->binaryPath);
}

void ControlApi::reexecChecked(Result<PreflightAnswer> answer)
{
    if (!answer) {
        reexecFail(answer.error().message);
        return;
    }
    const auto &versions = answer->stateVersions;
    if (std::find(versions.begin(), versions.end(), kReexecStateVersion) == versions.end()) {
        reexecFail(reexec_->binaryPath + " (fdsupd " + answer->version + ") cannot read state version " +
                   std::to_string(kReexecStateVersion));
        return;
    }
    reexec_->version = answer->version;
    reexec_->checked = true;
    spdlog::info("Re-exec: {} is fdsupd {}; waiting until nothing is in transition", reexec_->binaryPath,
                 answer->version);
    reexecProgress();
}

void ControlApi::reexecProgress()
{
    if (!reexec_ || !reexec_->checked || reexec_->defer) {
        return;
    }
    // Never from inside the model's callback: the exec happens from the loop.
    auto defer = loop_->addDefer([this] {
        reexec_->defer.reset();
        bool unsupported = false;
        std::string busy = importWaiters_.empty() ? daemon_.reexecBusy(unsupported)
                                                  : std::string("an Import waits for its services to run");
        if (busy.empty()) {
            reexecNow();
            return;
        }
        if (unsupported) {
            reexecFail(busy);
            return;
        }
        if (busy != reexec_->busy) {
            spdlog::info("Re-exec: waiting: {}", busy);
            reexec_->busy = std::move(busy);
        }
        if (!reexec_->recheck) {
            if (auto t = loop_->startTimer(kRecheck, [this] {
                    reexec_->recheck.reset();
                    reexecProgress();
                })) {
                reexec_->recheck = std::move(*t);
            }
        }
    });
    if (defer) {
        reexec_->defer = std::move(*defer);
    }
}

void ControlApi::reexecFail(const std::string &reason)
{
    const std::unique_ptr<ReexecOperation> op = std::move(reexec_);
    spdlog::error("Re-exec failed, fdsupd goes on as it was: {}", reason);
    if (op->call && !op->call->done()) {
        op->call->fail(varlink::kErrorReexecFailed, {{"reason", reason}});
    }
}

namespace {

Result<void> selfCheck(const std::string &text, const config::Config &running)
{
    auto decoded = decodeAndCheckState(text);
    if (!decoded) {
        return decoded.error();
    }
    const std::string dir = std::filesystem::path(decoded->configPath).parent_path().string();
    config::LoadResult loaded =
        config::loadConfigString(decoded->configText, decoded->configPath, dir.empty() ? "/" : dir);
    if (!loaded.config) {
        return Error{EBADMSG, "state: config: " + loaded.diagnostics.front().str()};
    }
    return Daemon::checkState(running, *decoded);
}

} // namespace

void ControlApi::reexecNow()
{
    ReexecImage &image = ReexecImage::get();
    ReexecState state;
    state.fdsupdVersion = FDSUP_VERSION;
    state.reexecs = image.reexecs() + 1;
    state.startedFrom = image.startedFrom();
    state.controlFd = server_->listener().get();
    if (reexec_->call && !reexec_->call->done()) {
        const Peer &peer = reexec_->call->peer();
        state.caller = CallerSnapshot{reexec_->call->connectionFd(), peer.pid, peer.uid, peer.gid};
    }
    // Event streams end here (their clients call again, on the same
    // connection, carried below when it is idle).
    events_.endAll(events::daemon(realtimeUsec(), "reexec"));
    state.controlClients = server_->idleConnections();
    for (const auto &follower : followers_) {
        if (const int fd = follower.call->carriableFd(); fd >= 0) {
            state.followers.push_back(FollowerSnapshot{fd, follower.service});
        }
    }
    daemon_.snapshot(state);
    const std::string text = encodeState(state);
    // Never hand over a state no image can take (this one included: it is
    // the fallback): read it back and check it as the new image will.
    if (auto readable = selfCheck(text, daemon_.config()); !readable) {
        reexecFail("fdsupd cannot read its own state back (" + readable.error().message +
                   "); not re-executing");
        return;
    }
    auto sealed = sealState(text);
    if (!sealed) {
        reexecFail(sealed.error().message);
        return;
    }
    spdlog::info("Re-exec: executing {} (fdsupd {}) with {} descriptors", reexec_->binaryPath,
                 reexec_->version, state.fds().size());
    const Error failed = execInPlace(reexec_->binary.borrow(), state.fds(), sealed->borrow());
    reexecFail(failed.message);
}

void ControlApi::resumeFollower(UniqueFd fd, const std::string &service)
{
    varlink::Call call;
    call.method = std::string(varlink::kInterface) + ".Logs";
    call.parameters = {{"service", service}, {"follow", true}};
    call.more = true;
    auto resumed = server_->resumeCall(std::move(fd), std::move(call));
    if (!resumed) {
        spdlog::warn("{}, ignoring", resumed.error().message);
        return;
    }
    if (daemon_.findService(service) == nullptr) {
        (*resumed)->reply({{"lines", Json::array()}}); // the stream's end, as when a service is removed
        return;
    }
    followers_.push_back(Follower{*resumed, service});
}

void ControlApi::answerReexec(const std::optional<std::string> &rejected)
{
    const std::shared_ptr<PendingCall> call = std::move(resumed_);
    if (!call || call->done()) {
        return;
    }
    if (rejected) {
        call->fail(varlink::kErrorReexecFailed,
                   {{"reason", "the new binary rejected the state: " + *rejected}});
        return;
    }
    std::error_code ec;
    call->reply({{"version", FDSUP_VERSION},
                 {"pid", getpid()},
                 {"reexecs", ReexecImage::get().reexecs()},
                 {"binary", std::filesystem::read_symlink("/proc/self/exe", ec).string()}});
}

Result<std::unique_ptr<ControlApi>> ControlApi::restore(EventLoop &loop, Daemon &daemon, ReexecState &state)
{
    UniqueFd listener(std::exchange(state.controlFd, -1));
    UniqueFd caller(state.caller ? std::exchange(state.caller->fd, -1) : -1);
    std::vector<UniqueFd> clients;
    for (const int fd : std::exchange(state.controlClients, {})) {
        clients.emplace_back(fd);
    }
    std::vector<std::pair<UniqueFd, std::string>> followers;
    for (auto &follower : std::exchange(state.followers, {})) {
        followers.emplace_back(UniqueFd(follower.fd), follower.service);
    }
    std::unique_ptr<ControlApi> api(new ControlApi(daemon));
    if (auto watched = api->watchSigusr2(loop); !watched) {
        return watched.error();
    }
    api->loop_ = &loop;
    ControlApi *self = api.get();
    auto server = ControlServer::create(
        loop, api->optionsFor(daemon.config().supervisor),
        [self](const std::shared_ptr<PendingCall> &call) { self->dispatch(call); }, std::move(listener));
    if (!server) {
        return Error{server.error().code,
                     "Failed to serve the control socket again: " + server.error().message};
    }
    api->server_ = std::move(*server);
    daemon.setObserver(api.get());
    for (auto &client : clients) {
        api->server_->resumeIdle(std::move(client));
    }
    for (auto &[fd, service] : followers) {
        api->resumeFollower(std::move(fd), service);
    }
    if (caller) {
        auto call = api->server_->resumeCall(std::move(caller), reexecCall());
        if (!call) {
            spdlog::warn("{}, ignoring", call.error().message);
        } else {
            api->resumed_ = std::move(*call);
            // The previous image took the call; this one answers it, and audits it.
            const Peer &peer = api->resumed_->peer();
            api->resumed_->audit(auditRecord(peer.uid, peer.pid, "Reexec", nlohmann::json::object()));
        }
    }
    return api;
}

} // namespace fdsup
