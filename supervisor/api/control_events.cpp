// The Events method: a call that follows the daemon's events, and the observer hooks only it needs.
#include <memory>
#include <utility>

#include <spdlog/spdlog.h>

#include "api/control_api.hpp"

namespace fdsup {
namespace {

using Json = nlohmann::json;
using CallPtr = std::shared_ptr<PendingCall>;

// An Events call as the stream sees it: one reply per event.
class CallSink final : public EventSink {
public:
    explicit CallSink(CallPtr call) : call_(std::move(call)) {}
    [[nodiscard]] bool gone() const override { return call_->done(); }
    [[nodiscard]] std::size_t backlog() const override { return call_->unsent(); }
    void send(const Json &event) override { call_->reply({{"event", event}}, true); }
    void end(const Json &event) override { call_->reply({{"event", event}}); }

private:
    CallPtr call_;
};

} // namespace

void ControlApi::callEvents(const CallPtr &call, const CallParams &params, Service * /*service*/)
{
    if (!call->call().more) {
        // A stream needs a way to send more than one reply.
        call->fail(varlink::kErrorExpectedMore);
        return;
    }
    spdlog::debug("Events followed by uid {} (pid {})", call->peer().uid, call->peer().pid);
    events_.follow(std::make_unique<CallSink>(call), params.service);
}

void ControlApi::instanceEvent(Service &service, const InstanceEvent &event)
{
    if (!events_.empty()) {
        events_.publish(events::instance(realtimeUsec(), service.name(), event));
    }
}

void ControlApi::reloadBegun(const std::string &file)
{
    if (!events_.empty()) {
        events_.publish(events::reloadBegun(realtimeUsec(), file));
    }
}

void ControlApi::reloadFinished(const ReloadOutcome &outcome)
{
    if (!events_.empty()) {
        events_.publish(events::reloadFinished(realtimeUsec(), outcome));
    }
}

} // namespace fdsup
