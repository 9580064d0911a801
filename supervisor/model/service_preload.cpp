// A wrapped service's part of Service: its preload socket, the shim's connections and what they claimed.
#include <spdlog/spdlog.h>

#include "model/service.hpp"

namespace fdsup {

std::string Service::preloadAddress() const
{
    // "fdsupd/1234-89abcdef" -> "@fdsup-1234-89abcdef-preload-web" (docs/preload.md).
    std::string prefix = context_.notifyPrefix;
    if (prefix.starts_with("fdsupd/")) {
        prefix.erase(0, std::string_view("fdsupd/").size());
    }
    std::replace(prefix.begin(), prefix.end(), '/', '-');
    return "@fdsup-" + prefix + "-preload-" + name();
}

Result<void> Service::openPreload()
{
    if (preload_) {
        return {};
    }
    PreloadHost &host = *this;
    auto socket = PreloadSocket::open(context_.loop, context_.clock, preloadAddress(), host);
    if (!socket) {
        return Error{socket.error().code, "Service '" + name() + "': " + socket.error().message};
    }
    preload_ = std::move(*socket);
    return {};
}

std::vector<ListenerReport> Service::listenerReport(const Instance &instance) const
{
    const Profile &profile = instance.profile();
    if (profile.config.wrap != config::Wrap::Preload || !preload_) {
        return {};
    }
    static const Adoption none;
    const Adoption *adoption = preload_->adoption(instance.id());
    std::optional<std::string> missing;
    if (profile.preloadLibraryMissing) {
        missing = profile.preloadLibrary;
    }
    return adoptionReport(profile.config.sockets, adoption != nullptr ? *adoption : none,
                          profile.preloadBlocker, missing);
}

std::string Service::unadopted(const Instance &instance) const
{
    const Profile &profile = instance.profile();
    const Adoption *adoption = preload_ ? preload_->adoption(instance.id()) : nullptr;
    if (profile.config.wrap != config::Wrap::Preload || adoption == nullptr) {
        return {};
    }
    Adoption final = *adoption;
    final.deadlinePassed = true; // the instance is over: nothing is pending any more
    std::optional<std::string> missing;
    if (profile.preloadLibraryMissing) {
        missing = profile.preloadLibrary;
    }
    std::string out;
    for (const auto &report :
         adoptionReport(profile.config.sockets, final, profile.preloadBlocker, missing)) {
        if (report.adoptedBy == 0) {
            out += ": listener '" + report.name + "' not adopted: " + report.reason;
        }
    }
    return out;
}

std::vector<PreloadOwner> Service::preloadOwners() const
{
    std::vector<PreloadOwner> owners;
    for (const auto &instance : instances_) {
        if (!isFinal(instance->state())) {
            owners.push_back(PreloadOwner{instance->id(), instance->slot(), instance->pid(),
                                          instance->spawnPid(), instance->sharedProfile()});
        }
    }
    return owners;
}

void Service::onPreloadMessage(ChannelPeer &peer, ChannelMessage &&message)
{
    const bool claim = message.type == ChannelType::Claimed;
    session_.onMessage(peer, std::move(message));
    if (claim) {
        changed();
    }
}

void Service::onPreloadClosed(ChannelPeer &peer, const std::string &why)
{
    session_.onClosed(peer, why);
}

void Service::onPreloadDropped(ChannelPeer &peer, const std::string &why)
{
    session_.onDropped(peer, why);
}

void Service::onPreloadBound(std::uint64_t instance)
{
    if (Instance *bound = findInstance(instance)) {
        bound->bound(); // may make it ready: the rollout advances from onInstanceReady
    }
}

} // namespace fdsup
