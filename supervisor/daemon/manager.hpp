// fdsupd as its manager's service (docs/systemd.md): when it is ready, its status line, its descriptor store.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "io/manager_notify.hpp"
#include "io/sockets.hpp"
#include "model/service.hpp"

namespace fdsup {

// Whether a service's first start is over: every slot has a ready instance,
// has finished its job, or has seen its first instance end (a service that
// cannot start is then reported by STATUS=, not by keeping fdsupd
// "activating" until the manager's start timeout kills every other one). A
// stopped or failed service is settled too.
[[nodiscard]] bool firstStartSettled(const Service &service);

// "2/3 services running, 1 failed": fdsupd's STATUS= line.
[[nodiscard]] std::string statusLine(const std::vector<std::unique_ptr<Service>> &services);

// The name fdsupd stores a socket's listeners under: "fdsup.socket.NAME".
// It tells them apart from a .socket unit's (FileDescriptorName=NAME) when
// they come back as LISTEN_FDNAMES (a valid fdname has no ':').
[[nodiscard]] std::string storedSocketName(std::string_view socket);

// Puts every socket of `sockets` that fdsupd bound itself into the manager's
// descriptor store (FDNAME = storedSocketName()). An adopted socket is never
// sent: it came from a .socket unit (the manager holds it already, and a
// socket unit's descriptor does not belong in a service's store) or back
// from the store (which still holds it). Returns how many were sent.
std::size_t storeListeners(ManagerNotifier &manager, const SocketSet &sockets);

// Asks the manager to drop from its store every inherited name that matches
// no configured socket (SocketSet::open() closes those descriptors), so a
// socket removed from the configuration does not stay bound by the manager.
// A name that is not in the store (a .socket unit's) is ignored by it.
// Takes back the listeners fdsupd stored (named storedSocketName()) from
// `inherited`: one still bound as its [socket.NAME] says (checkBoundAsConfigured)
// is put back under NAME, for SocketSet::open() to adopt. One bound for an
// older configuration (its `listen` edited), of no configured socket, or
// whose NAME a .socket unit also passed, is shut down (it stops listening
// at once, though the manager still holds a copy), closed and removed from
// the store (FDSTOREREMOVE=1), with an info line saying why: the socket is
// then bound anew (and stored), or adopted from the .socket unit. Other
// names are left as they are.
void reclaimStored(ManagerNotifier &manager, const config::Config &config, InheritedFds &inherited);

// A socket closed (removed by a reload): the manager drops what it stores
// for it, under storedSocketName() and under the bare name (stored so by
// earlier versions; a .socket unit's is ignored by the manager).
void forgetStored(ManagerNotifier &manager, std::string_view socket);

void forgetUnmatched(ManagerNotifier &manager, const config::Config &config, const InheritedFds &inherited);

} // namespace fdsup
