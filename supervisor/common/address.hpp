// Listen addresses: the URL-like forms users write, parsed and printed back.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <sys/socket.h>

#include "common/result.hpp"

namespace fdsup {

enum class Transport : std::uint8_t {
    Tcp,           // tcp://HOST:PORT
    Udp,           // udp://HOST:PORT
    UnixStream,    // unix:/path, unix:@abstract
    UnixDgram,     // unix-dgram:/path, unix-dgram:@abstract
    UnixSeqpacket, // unix-seqpacket:/path, unix-seqpacket:@abstract
};

// An address as written, validated but not resolved. Host names
// (tcp://localhost:8080) are resolved at bind time, to every result.
struct Address {
    Transport transport = Transport::Tcp;
    // Inet: the host as written without brackets ("0.0.0.0", "::", "localhost").
    // Unix: the path, or the abstract name without its leading '@'.
    std::string host;
    std::uint16_t port = 0;
    bool abstract = false; // unix only: Linux abstract namespace

    [[nodiscard]] bool isInet() const noexcept
    {
        return transport == Transport::Tcp || transport == Transport::Udp;
    }
    [[nodiscard]] bool isUnix() const noexcept { return !isInet(); }
    // SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    [[nodiscard]] int socketType() const noexcept;
    // True when host is a numeric IPv4 or IPv6 literal, not a name.
    [[nodiscard]] bool isNumericHost() const noexcept;
    [[nodiscard]] bool isIpv6Literal() const noexcept;

    friend bool operator==(const Address &, const Address &) = default;
};

// Parses "tcp://0.0.0.0:8080", "tcp://[::]:8080", "tcp://localhost:8080",
// "udp://...", "unix:/run/x.sock", "unix:@abstract", "unix-dgram:...",
// "unix-seqpacket:...". Errors say what is wrong with which part, e.g.
// "invalid port '99999' in 'tcp://1.2.3.4:99999': must be 0-65535".
Result<Address> parseAddress(std::string_view text);

// The canonical text form; parseAddress(formatAddress(a)) == a.
std::string formatAddress(const Address &address);

// A concrete socket address ready for bind(): one per resolver result.
struct SocketAddress {
    sockaddr_storage storage{};
    socklen_t length = 0;
    int family = AF_UNSPEC;
};

// Resolves an inet address (getaddrinfo with AI_PASSIVE, every result,
// duplicates removed) or builds the sockaddr_un of a unix one. Errors name
// the address and the resolver's reason.
Result<std::vector<SocketAddress>> resolveAddress(const Address &address);

// Prints a bound/peer address: "127.0.0.1:8080", "[::1]:8080",
// "/run/x.sock", "@abstract", "unnamed".
std::string formatSocketAddress(const sockaddr *sa, socklen_t length);

} // namespace fdsup
