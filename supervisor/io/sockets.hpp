// The listening sockets fdsupd holds: bound from the configuration or adopted from its own LISTEN_FDS.
#pragma once

#include <map>
#include <string>
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
    std::vector<UniqueFd> fds;          // one per bound address
    std::vector<std::string> addresses; // the local address of each fd, printed
    bool adopted = false;               // from InheritedFds rather than bound here
};

class SocketSet {
public:
    // Adopts every configured socket whose name was inherited (checking that
    // each inherited fd is a listening socket of the configured type) and
    // binds the rest. All or nothing: on error nothing stays bound and the
    // error names the socket. Inherited fds that match no configured socket
    // are closed with a warning.
    static Result<SocketSet> open(const config::Config &config, InheritedFds inherited);

    [[nodiscard]] const HeldSocket *find(std::string_view name) const;
    [[nodiscard]] HeldSocket *find(std::string_view name);
    // Reload: takes over the sockets of `other` (bound for the new
    // configuration), and closes one that no instance uses any more (its
    // unix socket file, if fdsupd bound it, is removed).
    void merge(SocketSet &&other);
    void close(std::string_view name);
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
