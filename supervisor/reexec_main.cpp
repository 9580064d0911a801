// fdsupd started by its own re-exec: takes the state over, or goes back to the previous binary.
#include "reexec_main.hpp"

#include <cerrno>
#include <filesystem>

#include <fcntl.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "api/control_api.hpp"
#include "api/metrics.hpp"
#include "config/config.hpp"
#include "daemon/daemon.hpp"
#include "daemon/reexec_state.hpp"
#include "fdsup_build_config.h"
#include "io/event_loop.hpp"
#include "io/log.hpp"

namespace fdsup {
namespace {

constexpr int kExitStartup = 4;

// Back to the previous binary; returns only when that is impossible.
int giveBack(IncomingState &incoming, const std::string &reason)
{
    if (incoming.rejected) {
        // We are the previous binary already: nowhere to go back to.
        spdlog::critical("Re-exec: the previous binary cannot take its own state either ({}); exiting, "
                         "the workers keep serving without a supervisor",
                         reason);
        return kExitStartup;
    }
    const Error failed = fallBack(incoming, reason);
    spdlog::critical("Re-exec: {}; cannot go back to the previous binary: {}", reason, failed.message);
    return kExitStartup;
}

// Checks that need no side effect: the state's every field and descriptor,
// and its configuration.
Result<config::Config> validate(const ReexecState &state)
{
    const std::string dir = std::filesystem::path(state.configPath).parent_path().string();
    config::LoadResult loaded =
        config::loadConfigString(state.configText, state.configPath, dir.empty() ? "/" : dir);
    if (!loaded.config) {
        return Error{EBADMSG, "state: config: " + loaded.diagnostics.front().str()};
    }
    loaded.config->files = {state.configPath}; // a reload reads the file again
    if (auto checked = Daemon::checkState(*loaded.config, state); !checked) {
        return checked.error();
    }
    return std::move(*loaded.config);
}

// Duplicates every descriptor of the state: the restore works on copies, so
// a restore that fails midway still leaves the originals for the fallback.
Result<ReexecState> duplicated(const ReexecState &state, std::vector<UniqueFd> &copies)
{
    ReexecState copy = state;
    int failed = 0;
    copy.remapFds([&](int fd) {
        UniqueFd dup(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
        if (!dup) {
            failed = errno;
            return -1;
        }
        const int n = dup.get();
        copies.push_back(std::move(dup));
        return n;
    });
    if (failed != 0) {
        return errnoError(failed, "Failed to duplicate the state's descriptors");
    }
    // The copies are owned by what restores them from here.
    for (auto &c : copies) {
        (void)c.release();
    }
    return copy;
}

} // namespace

int runRestored(IncomingState incoming, const std::string &logLevel)
{
    setupLogging(logLevel.empty() ? "info" : logLevel, config::LogTarget::Console);
    if (!incoming.unreadable.empty()) {
        return giveBack(incoming, incoming.unreadable);
    }
    auto state = decodeAndCheckState(incoming.text);
    if (!state) {
        return giveBack(incoming, state.error().message);
    }
    auto config = validate(*state);
    if (!config) {
        return giveBack(incoming, config.error().message);
    }
    std::vector<int> keep = state->fds();
    for (const int fd : {incoming.state.get(), incoming.originalState, incoming.fallback.get(),
                         ReexecImage::get().self().get()}) {
        keep.push_back(fd);
    }
    closeOtherFds(keep);
    if (!setupLogging(logLevel.empty() ? config->supervisor.logLevel : logLevel,
                      config->supervisor.logTarget)) {
        setupLogging("info", config->supervisor.logTarget);
    }
    std::vector<UniqueFd> copies;
    auto copy = duplicated(*state, copies);
    if (!copy) {
        return giveBack(incoming, copy.error().message);
    }
    auto loop = EventLoop::create();
    if (!loop) {
        return giveBack(incoming, loop.error().message);
    }
    auto daemon = Daemon::restore(**loop, std::move(*config), *copy);
    if (!daemon) {
        return giveBack(incoming, daemon.error().message);
    }
    installMetrics(**daemon);
    const unsigned reexecs = incoming.rejected ? state->reexecs - 1 : state->reexecs;
    ReexecImage::get().restored(state->startedFrom, reexecs);
    auto api = ControlApi::restore(**loop, **daemon, *copy);
    if (!api) {
        const std::string why = api.error().message;
        daemon->reset();
        return giveBack(incoming, why);
    }
    // Taken over: the originals, the state and the previous binary go.
    for (const int fd : state->fds()) {
        (void)::close(fd);
    }
    if (incoming.originalState != incoming.state.get()) {
        (void)::close(incoming.originalState);
    }
    incoming.state.reset();
    incoming.fallback.reset();
    (*api)->answerReexec(incoming.rejected);
    if (incoming.rejected) {
        spdlog::error("Re-exec failed: the new binary rejected the state ({}); fdsupd {} goes on as it was",
                      *incoming.rejected, FDSUP_VERSION);
    } else {
        spdlog::info(
            "Re-executed in place as fdsupd {} (pid {}, re-exec {}): {} socket(s), {} service(s) adopted",
            FDSUP_VERSION, getpid(), reexecs, state->sockets.size(), state->services.size());
    }
    return (*daemon)->run();
}

} // namespace fdsup
