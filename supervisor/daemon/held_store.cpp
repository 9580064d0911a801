// Held connections in fdsupd's manager's descriptor store (docs/systemd.md): kept while held, given back at
// start.
#include "daemon/held_store.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <string_view>

#include <sys/stat.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/result.hpp"
#include "core/channel.hpp"

namespace fdsup {
namespace {

constexpr std::string_view kHeldPrefix = "fdsup.held.";

// The descriptors a held connection takes in the store.
std::size_t storedFds(const HeldConnection &held)
{
    return held.stateSize > 0 ? 2 : 1;
}

template <typename T>
bool parseNumber(std::string_view text, T &value)
{
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    return !text.empty() && ec == std::errc() && end == text.data() + text.size();
}

// "SERVICE.PID.ID" (a service name has no '.').
bool parseHeldName(std::string_view rest, StoredHeld &out)
{
    const auto first = rest.find('.');
    const auto second = first == std::string_view::npos ? first : rest.find('.', first + 1);
    if (first == 0 || second == std::string_view::npos) {
        return false;
    }
    out.service = std::string(rest.substr(0, first));
    return parseNumber(rest.substr(first + 1, second - first - 1), out.from) &&
           parseNumber(rest.substr(second + 1), out.id);
}

} // namespace

std::size_t heldStoreCapacity(const SocketSet &sockets)
{
    std::size_t max = kDefaultStoreMax;
    if (const char *value = std::getenv("FDSTORE"); value != nullptr) {
        std::size_t parsed = 0;
        if (parseNumber(std::string_view(value), parsed)) {
            max = parsed;
        }
    }
    std::size_t listeners = 0;
    for (const auto &socket : sockets.sockets()) {
        listeners += socket.adopted ? 0 : socket.fds.size();
    }
    return max - std::min(max, listeners);
}

void HeldStore::put(const std::string &service, HeldConnection &held)
{
    if (!manager_.enabled() || !held.fd) {
        return;
    }
    if (used_ + storedFds(held) > capacity_) {
        if (!warned_) {
            warned_ = true;
            spdlog::warn(
                "The manager's descriptor store is full ({} of {} descriptors for held connections): "
                "held connections are no longer stored, and a restart of fdsupd loses them; raise "
                "FileDescriptorStoreMax= (docs/systemd.md)",
                used_, capacity_);
        }
        return;
    }
    std::vector<BorrowedFd> fds{held.fd.borrow()};
    UniqueFd copy;
    if (held.stateMemfd) {
        fds.push_back(held.stateMemfd.borrow());
    } else if (held.stateSize > 0) {
        if (const int r = createStateMemfd(held.state, copy); r < 0) {
            spdlog::warn("{}: cannot store held connection {}: memfd for its state: {}", service, held.id,
                         errnoText(-r));
            return;
        }
        fds.push_back(copy.borrow());
    }
    const std::string name = fmt::format("{}{}.{}.{}", kHeldPrefix, service, held.from, held.id);
    if (const int r = manager_.store(name, fds); r < 0) {
        // -EAGAIN when many are handed over at once and the manager lags: said once.
        if (!warnedSend_) {
            warnedSend_ = true;
            spdlog::warn(
                "{}: cannot put held connection {} in the manager's descriptor store: {} (said once; "
                "a restart of fdsupd loses the held connections not stored)",
                service, held.id, errnoText(-r));
        }
        return;
    }
    held.storedAs = name;
    used_ += fds.size();
}

void HeldStore::remove(const HeldConnection &held)
{
    forget(held.storedAs, storedFds(held));
}

void HeldStore::forget(const std::string &name, std::size_t fds)
{
    (void)manager_.removeStored(name);
    used_ -= std::min(used_, fds);
}

std::vector<StoredHeld> takeStoredHeld(ManagerNotifier &manager, InheritedFds &inherited)
{
    std::vector<StoredHeld> taken;
    for (auto it = inherited.byName.begin(); it != inherited.byName.end();) {
        if (!it->first.starts_with(kHeldPrefix)) {
            ++it;
            continue;
        }
        auto same =
            std::find_if(taken.begin(), taken.end(), [&](const auto &s) { return s.name == it->first; });
        if (same == taken.end()) {
            StoredHeld stored;
            stored.name = it->first;
            if (!parseHeldName(std::string_view(it->first).substr(kHeldPrefix.size()), stored)) {
                spdlog::warn("Stored descriptor '{}' is not a held connection's name, closing it", it->first);
                (void)manager.removeStored(it->first);
                it = inherited.byName.erase(it);
                continue;
            }
            same = taken.insert(taken.end(), std::move(stored));
        }
        same->fds.push_back(std::move(it->second));
        it = inherited.byName.erase(it);
    }
    return taken;
}

namespace {

// The connection and its state out of what the store gave back under one name.
Result<std::unique_ptr<HeldConnection>> heldFrom(StoredHeld &stored)
{
    auto held = std::make_unique<HeldConnection>();
    held->id = stored.id;
    held->from = stored.from;
    for (auto &fd : stored.fds) {
        struct stat st {};
        if (fstat(fd.get(), &st) < 0) {
            return errnoError(errno, "fstat");
        }
        if (S_ISSOCK(st.st_mode) && !held->fd) {
            held->fd = std::move(fd);
        } else if (S_ISREG(st.st_mode) && !held->stateMemfd) {
            const auto size = static_cast<std::uint64_t>(st.st_size);
            if (const int r = checkStateMemfd(fd.borrow(), size); r < 0 || size == 0) {
                return Error{EBADFD, "its state is not a sealed memfd"};
            }
            held->stateMemfd = std::move(fd);
            held->stateFlags = kChannelStateMemfd;
            held->stateSize = size;
        } else {
            return Error{EBADMSG, fmt::format("{} descriptors, not a connection and at most a state memfd",
                                              stored.fds.size())};
        }
    }
    if (!held->fd) {
        return Error{ENOTSOCK, "no connection among its descriptors"};
    }
    return held;
}

Service *serviceNamed(const std::vector<std::unique_ptr<Service>> &services, const std::string &name)
{
    const auto it =
        std::find_if(services.begin(), services.end(), [&](const auto &s) { return s->name() == name; });
    return it == services.end() ? nullptr : it->get();
}

} // namespace

std::size_t restoreHeld(HeldStore &store, ManagerNotifier &manager, std::vector<StoredHeld> stored,
                        const std::vector<std::unique_ptr<Service>> &services)
{
    std::size_t restored = 0;
    for (auto &one : stored) {
        Result<void> result = Error{ENOENT, "no service '" + one.service + "' here"};
        Service *service = serviceNamed(services, one.service);
        auto held = heldFrom(one);
        if (!held || service == nullptr) {
            result = held ? result : Result<void>(held.error());
            (void)manager.removeStored(one.name);
        } else {
            const std::size_t fds = storedFds(**held);
            (*held)->storedAs = one.name;
            store.counted(fds);
            // Duration::max(): a fresh hold timeout (clamped to the service's).
            result = service->holdTransferred(std::move(*held), Duration::max());
            if (!result) {
                store.forget(one.name, fds); // FDSTOREREMOVE=1 too
            }
        }
        if (!result) {
            spdlog::info("Not holding stored connection '{}' again: {}; closed it and removed it from the "
                         "manager's descriptor store",
                         one.name, result.error().message);
            continue;
        }
        ++restored;
    }
    if (restored > 0) {
        spdlog::info("Holding {} connection{} back from the manager's descriptor store until workers adopt "
                     "them",
                     restored, restored == 1 ? "" : "s");
    }
    return restored;
}

} // namespace fdsup
