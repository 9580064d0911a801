// The listening sockets fdsupd holds: bound from the configuration or adopted from its own LISTEN_FDS.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "config/config.hpp"
#include "core/fd.hpp"

namespace fdsup {

// Descriptors passed to fdsupd itself with the socket activation protocol
// (systemd, systemd-socket-activate), by LISTEN_FDNAMES name.
struct InheritedFds {
    std::multimap<std::string, UniqueFd> byName;

    // Takes LISTEN_FDS/LISTEN_FDNAMES (sd_listen_fds_with_names, which checks
    // LISTEN_PID and unsets the environment so workers never see it), after
    // checking LISTEN_PIDFDID when set (listenFdsAreOurs).
    static Result<InheritedFds> fromEnvironment();
};

// Whether LISTEN_FDS in this environment is meant for this process, judged
// by LISTEN_PIDFDID (systemd 254+: the inode id of the receiver's pidfd), as
// LISTEN_PID is judged by libsystemd: true when it is absent, names this
// process, or cannot be compared (pidfds not on pidfs, before Linux 6.9,
// where their inode numbers mean nothing); false when it names another
// process (a mismatch, like a LISTEN_PID mismatch: the fds are not ours and
// are left alone). A value that is not a decimal number is an error.
// When it returns false it unsets LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES;
// it always unsets LISTEN_PIDFDID, so workers never see it.
Result<bool> listenFdsAreOurs();

struct HeldSocket {
    config::SocketConfig config;
    std::vector<UniqueFd> fds;          // one per bound address; none: not received yet, or released
    std::vector<std::string> addresses; // the local address of each fd, printed
    bool adopted = false;               // inherited, received or released: its unix socket file is not ours
};

// Asked when an address of a socket cannot be bound because it is in use
// (EADDRINUSE): the listeners already bound there that fdsupd may take over
// (a dead predecessor's, still held by its workers), each checked by
// SocketSet as an inherited one; or an error saying why not, which then
// stops start-up. `bindError` is what bind() said. The daemon implements it
// (daemon/takeover.hpp); a socket taken over counts as bound here, so its
// unix socket file is removed when it is closed. With `probe` (a socket
// with reuse_port, whose bind would succeed beside a live listener, asked
// before binding) an address where nothing listens gives no fds, not an
// error.
class ListenerRecovery {
public:
    virtual Result<std::vector<UniqueFd>> recover(const config::SocketConfig &socket, const Address &address,
                                                  const Error &bindError, bool probe) = 0;

protected:
    ~ListenerRecovery() = default;
};
// An fd for `socket` that fdsupd did not bind (`how`: "inherited",
// "received") must be what the configuration says: a socket of its type and
// family, listening unless datagram. Returns its local address, printed.
Result<std::string> checkInherited(const config::SocketConfig &socket, BorrowedFd fd, std::string_view how);
// The same for every fd of `fds`, and each must be bound to one of the
// socket's `listen` addresses (compared as a received one is: any port for
// port 0, any IP for a host name), and every `listen` address must have one:
// a listener bound for an older configuration fails (socket_transfer.cpp).
// Returns their local addresses, printed; the error names the socket, the
// address it is bound to and the ones configured.
Result<std::vector<std::string>> checkBoundAsConfigured(const config::SocketConfig &socket,
                                                        const std::vector<UniqueFd> &fds,
                                                        std::string_view how);

class SocketSet {
public:
    // Adopts every configured socket whose name was inherited (checking that
    // each inherited fd is a listening socket of the configured type) and
    // binds the rest. All or nothing: on error nothing stays bound and the
    // error names the socket. Inherited fds that match no configured socket
    // are closed with a warning. With `recovery`, an address in use is
    // taken over instead when it can be (docs/fdsupd.md, "Taking over after
    // a crash").
    static Result<SocketSet> open(const config::Config &config, InheritedFds inherited,
                                  ListenerRecovery *recovery = nullptr);

    [[nodiscard]] const HeldSocket *find(std::string_view name) const;
    [[nodiscard]] HeldSocket *find(std::string_view name);
    // Reload: takes over the sockets of `other` (bound for the new
    // configuration), and closes one that no instance uses any more (its
    // unix socket file, if fdsupd bound it, is removed).
    void merge(SocketSet &&other);
    void close(std::string_view name);
    // Transfer (socket_transfer.cpp, docs/transfer.md). receive(): a
    // `receive = true` socket with no fds yet takes fds, each checked like an
    // inherited one and against its `listen` addresses; all or nothing, the
    // error names the socket and the reason. release(): closes fdsupd's
    // copies of a socket another fdsupd now holds; it stays defined, with no
    // fds, so a service that uses it waits for it. Returns the fds closed.
    Result<void> receive(std::string_view name, std::vector<UniqueFd> fds);
    std::size_t release(std::string_view name);
    [[nodiscard]] const std::vector<HeldSocket> &sockets() const { return sockets_; }
    // Total number of descriptors held.
    [[nodiscard]] std::size_t fdCount() const;

private:
    std::vector<HeldSocket> sockets_;
};

// Raises RLIMIT_NOFILE's soft limit (to `wanted`, or to the hard limit when
// 0) and returns the soft limit now in force; logs when it cannot.
std::uint64_t raiseFileLimit(std::uint64_t wanted);

} // namespace fdsup
