// What the kernel says about sockets: /proc/net listeners by address, and the processes holding one.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "common/address.hpp"
#include "common/result.hpp"

namespace fdsup {

// One socket of /proc/net/{tcp,tcp6,udp,udp6,unix}, as the kernel prints it.
struct ProcNetSocket {
    // inet: "0100007F:1F90" (the address as the kernel prints it, then the
    // port); unix: the path, "@name" for an abstract one.
    std::string local;
    unsigned state = 0;     // inet: TCP state (0x0A listen, 0x07 unconnected udp); unix: St
    unsigned type = 0;      // unix only: SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
    bool listening = false; // unix only: __SO_ACCEPTCON in Flags
    ino_t inode = 0;
};

// Parses one line of /proc/net/{tcp,tcp6,udp,udp6} or /proc/net/unix (pure);
// nullopt for the header or a line that is not one.
std::optional<ProcNetSocket> parseInetLine(std::string_view line);
std::optional<ProcNetSocket> parseUnixLine(std::string_view line);

// How /proc/net prints a resolved address's local end ("0100007F:1F90",
// 32 hex digits for IPv6), or the unix path ("/run/x.sock", "@name").
std::string procNetLocal(const SocketAddress &address);

// The inodes of the sockets bound to `resolved` that serve as `address`
// says: a listening stream or seqpacket socket, an unconnected datagram one.
// Our own network namespace only. An error when /proc/net cannot be read.
Result<std::vector<ino_t>> listeningInodes(const Address &address, const SocketAddress &resolved);

// A process holding a socket: its pid and the descriptor number.
struct SocketHolder {
    pid_t pid = 0;
    int fd = -1;
};
// Every process whose /proc/PID/fd has a link to "socket:[inode]" (one entry
// per descriptor). Processes whose fds cannot be read (another user's,
// without root) are not seen.
std::vector<SocketHolder> socketHolders(ino_t inode);

// What fdsupd tells about a process: its command line (arguments joined by
// spaces, at most 200 characters), "?" when it is gone.
std::string commandOf(pid_t pid);
// The owner of /proc/PID (its real uid), nullopt when it is gone.
std::optional<uid_t> ownerOf(pid_t pid);
// The environment the process was started with, NAME=value entries; an
// error (EACCES, ESRCH) when it cannot be read.
Result<std::vector<std::string>> environmentOf(pid_t pid);
// Every process in process group `pgid`.
std::vector<pid_t> processGroupMembers(pid_t pgid);

} // namespace fdsup
