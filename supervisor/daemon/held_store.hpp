// Held connections in fdsupd's manager's descriptor store (docs/systemd.md): kept while held, given back at
// start.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

#include "core/fd.hpp"
#include "io/manager_notify.hpp"
#include "io/sockets.hpp"
#include "model/handoff_broker.hpp"
#include "model/service.hpp"

namespace fdsup {

// FileDescriptorStoreMax= when the unit does not say it ($FDSTORE, set by
// systemd 254 and later): the packaged unit's.
inline constexpr std::size_t kDefaultStoreMax = 512;

// How many descriptors the store takes besides `sockets`' listeners:
// $FDSTORE (or kDefaultStoreMax) less the listeners fdsupd bound.
[[nodiscard]] std::size_t heldStoreCapacity(const SocketSet &sockets);

// Puts every connection a broker holds in the manager's descriptor store,
// as FDNAME=fdsup.held.SERVICE.PID.ID (PID: the worker that handed it over,
// ID: the worker's id for it), FDPOLL=0, with the connection and, when it
// has state, the state in a sealed memfd (an inline state is copied into
// one); removes it (FDSTOREREMOVE=1) when it leaves the broker. Past
// `capacity` descriptors it stores no more, and says so once (warning).
class HeldStore final : public HeldConnectionStore {
public:
    HeldStore(ManagerNotifier &manager, std::size_t capacity) : manager_(manager), capacity_(capacity) {}
    void put(const std::string &service, HeldConnection &held) override;
    void remove(const HeldConnection &held) override;
    // A connection given back from the store (restoreHeld()) counts as stored.
    void counted(std::size_t fds) { used_ += fds; }
    void forget(const std::string &name, std::size_t fds);

private:
    ManagerNotifier &manager_;
    std::size_t capacity_;
    std::size_t used_ = 0;
    bool warned_ = false;     // the store is full
    bool warnedSend_ = false; // a message to the manager failed
};

// A held connection of an earlier fdsupd, back from the store.
struct StoredHeld {
    std::string name; // its FDNAME
    std::string service;
    pid_t from = 0;
    std::uint64_t id = 0;
    std::vector<UniqueFd> fds; // the connection, and its state's memfd if any, in any order
};

// Takes every descriptor named fdsup.held.* out of `inherited`. A name that
// does not parse is closed and removed from the store, with a warning.
std::vector<StoredHeld> takeStoredHeld(ManagerNotifier &manager, InheritedFds &inherited);

// Gives each to its service's broker, with a fresh hold timeout and its
// state read back, on the checks of a transferred one
// (Service::holdTransferred): its new workers adopt it. One that cannot be
// held (no such service, handoff = false, not a connection of its
// listeners, a state that is not a sealed memfd...) is closed and removed
// from the store, with the reason (info). Returns how many are held.
std::size_t restoreHeld(HeldStore &store, ManagerNotifier &manager, std::vector<StoredHeld> stored,
                        const std::vector<std::unique_ptr<Service>> &services);

} // namespace fdsup
