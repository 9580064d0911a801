// The preload shim's address matching: which listener, if any, an app's bind() gets. Pure: no system calls.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sys/socket.h>

namespace fdsup::preload {

// A socket address reduced to what decides a match. Inet addresses are kept
// in IPv6 form (an IPv4 address as ::ffff:a.b.c.d), so 127.0.0.1 and
// ::ffff:127.0.0.1 are the same address; 0.0.0.0 and :: are both "wildcard".
// Unix paths are canonical (the directory's real path + the name); abstract
// names are compared byte for byte, without the leading NUL.
struct NormalAddress {
    int family = AF_UNSPEC; // the socket's own family: AF_INET, AF_INET6 or AF_UNIX
    int type = 0;           // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
    // inet
    std::array<std::uint8_t, 16> ip{};
    bool wildcard = false;
    std::uint16_t port = 0;
    // unix
    std::string path;
    bool abstract = false;

    [[nodiscard]] bool isUnix() const noexcept { return family == AF_UNIX; }
};

// Turns a directory (absolute or relative to the working directory) into its
// canonical absolute form; returns false when it cannot (it does not exist).
// The shim passes realpath(); tests may pass a table.
using DirResolver = bool (*)(const std::string &dir, std::string &canonical, void *context);

// Normalises a sockaddr of a socket of the given type. Returns 0, or -EINVAL
// (too short, an unnamed unix address), -EAFNOSUPPORT (a family other than
// AF_INET, AF_INET6, AF_UNIX) or -ENOENT (the unix path's directory cannot
// be resolved).
int normaliseSockaddr(const sockaddr *sa, socklen_t length, int type, DirResolver resolve, void *context,
                      NormalAddress &out);

// Parses an address in fdsupd's configuration syntax, numeric hosts only:
// tcp://1.2.3.4:80, tcp://[::1]:80, udp://..., unix:/abs/path, unix:@name,
// unix-dgram:..., unix-seqpacket:.... Returns 0, or -EINVAL with why set.
int parseConfigAddress(std::string_view text, DirResolver resolve, void *context, NormalAddress &out,
                       std::string &why);

// "127.0.0.1:8080", "[::1]:8080", "/run/x.sock", "@name", plus "/udp" etc.
// for types other than SOCK_STREAM.
std::string formatNormalAddress(const NormalAddress &address);

enum class Match : std::uint8_t {
    None,           // another address: not this listener
    Same,           // the same address, a type and family the app can use
    TypeMismatch,   // the same address with another socket type (stream vs dgram...)
    FamilyMismatch, // an AF_INET socket for an AF_INET6 listener (accept would overflow its sockaddr_in)
};

// How the app's address relates to a listener's (or a map entry's) address.
Match matchAddress(const NormalAddress &app, const NormalAddress &listener);

struct Listener {
    std::string name;
    NormalAddress address;
};

struct MapEntry {
    std::string name; // the listener it designates
    NormalAddress address;
};

// Parses FDSUP_PRELOAD_MAP: "name=address[;name=address...]" (an empty
// string is an empty map). Returns 0 or -EINVAL with why naming the entry.
int parseMap(std::string_view text, DirResolver resolve, void *context, std::vector<MapEntry> &out,
             std::string &why);

struct BindDecision {
    enum class Action : std::uint8_t { PassThrough, Claim, Refuse } action = Action::PassThrough;
    std::size_t listener = 0; // Claim: index into the listeners
    int error = 0;            // Refuse: the errno bind() fails with
    std::string reason;       // Refuse: the stderr line's explanation
};

// The decision for an app's bind(): a map entry whose address is the app's
// designates its listener by name (the first of that name the app's socket
// can use); otherwise the first listener whose own address is the app's.
// A match in address but not in type or family is refused; no match at all
// passes through to libc.
BindDecision decideBind(const NormalAddress &app, std::span<const Listener> listeners,
                        std::span<const MapEntry> map);

} // namespace fdsup::preload
