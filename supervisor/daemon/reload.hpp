// Live reload, after its plan: what a reload prepares, the changes it makes and how they went
// (docs/reload.md).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/fd.hpp"
#include "daemon/reload_plan.hpp"
#include "io/sockets.hpp"
#include "model/profile.hpp"

namespace fdsup {

class Service;

// One change a reload makes, and how it went.
struct ReloadChange {
    enum class Status : std::uint8_t { Pending, Done, Failed };
    std::string kind; // supervisor, socket, service
    std::string name;
    std::string action; // added, removed, changed, restarted, scaled
    Status status = Status::Done;
    std::string reason;
};

// The answer to one reload.
struct ReloadOutcome {
    enum class Kind : std::uint8_t {
        Done,         // every change applied
        Failed,       // applied, but some change failed (changes say which)
        Invalid,      // the file does not load (errors); nothing changed
        Refused,      // it cannot be applied in place (reasons); nothing changed
        ShuttingDown, // fdsupd is stopping; nothing changed
    };
    static constexpr std::size_t kKinds = 5;
    Kind kind = Kind::Done;
    std::string file;
    std::vector<config::Diagnostic> errors;
    std::vector<std::string> reasons;
    std::vector<ReloadChange> changes;
};
// "done", "failed", "invalid", "refused", "shutting-down": the outcome's
// name in events (docs/control-api.md) and metrics (docs/metrics.md).
const char *reloadOutcomeName(ReloadOutcome::Kind kind);
using ReloadCallback = std::function<void(const ReloadOutcome &)>;

// Everything that can fail, done before anything changes: the profiles of
// the services rolled out, the services added (created, not started) and
// the sockets added (bound, all or nothing).
struct PreparedReload {
    std::map<std::string, std::shared_ptr<const Profile>> profiles;
    std::vector<std::unique_ptr<Service>> added;
    SocketSet bound;
    UniqueFd metrics; // the metrics endpoint at its new address, bound
};

// A reload whose changes are applied and may still be in progress (a
// service stopping, scaling or rolling out): answers once none is pending.
class ReloadOperation {
public:
    ReloadOperation(std::string file, ReloadCallback done) : file_(std::move(file)), done_(std::move(done)) {}

    void record(std::string kind, std::string name, std::string action, ReloadChange::Status status,
                std::string reason);
    // A service rolled out, with the configuration it ran before: kept
    // when the rollout fails, so the running configuration says what runs.
    void rolledOut(const std::string &service, config::ServiceConfig previous);
    // A service's rollout finished; a failure (`reason`) puts its old
    // configuration back into `running`.
    void rolloutFinished(const std::string &service, bool succeeded, const std::string &reason,
                         config::Config &running);
    // Settles the pending service changes against the services as they are now.
    void check(const std::vector<std::unique_ptr<Service>> &services);
    [[nodiscard]] bool pending() const;
    // The outcome (Done or Failed), logged; call once nothing is pending.
    [[nodiscard]] ReloadOutcome finish() const;
    [[nodiscard]] const ReloadCallback &callback() const { return done_; }
    [[nodiscard]] const std::string &file() const { return file_; }
    [[nodiscard]] std::size_t size() const { return changes_.size(); }

private:
    std::string file_;
    ReloadCallback done_;
    std::vector<ReloadChange> changes_;
    std::map<std::string, config::ServiceConfig> previous_;
};

} // namespace fdsup
