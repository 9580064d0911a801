// Parsing, printing and resolving listen addresses.
#include "common/address.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "common/units.hpp"

namespace fdsup {

namespace {

struct Scheme {
    std::string_view name;
    Transport transport;
};

constexpr std::array kSchemes{
    Scheme{"tcp", Transport::Tcp},
    Scheme{"udp", Transport::Udp},
    Scheme{"unix", Transport::UnixStream},
    Scheme{"unix-dgram", Transport::UnixDgram},
    Scheme{"unix-seqpacket", Transport::UnixSeqpacket},
};

constexpr std::string_view kSchemeList = "tcp, udp, unix, unix-dgram, unix-seqpacket";

// sun_path holds 108 bytes: a path needs its terminating NUL, an abstract
// name its leading NUL, so both get 107 bytes of name.
constexpr std::size_t kSunPathSize = sizeof(sockaddr_un::sun_path);
constexpr std::size_t kMaxUnixName = kSunPathSize - 1;

std::string_view schemeName(Transport transport)
{
    for (const Scheme &scheme : kSchemes) {
        if (scheme.transport == transport) {
            return scheme.name;
        }
    }
    return "?";
}

std::string quote(std::string_view text)
{
    return "'" + std::string(text) + "'";
}

Error invalid(std::string message)
{
    return Error{EINVAL, std::move(message)};
}

bool isDigit(char c)
{
    return c >= '0' && c <= '9';
}
bool isAlpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string toLower(std::string_view text)
{
    std::string out(text);
    for (char &c : out) {
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c - 'A' + 'a');
        }
    }
    return out;
}

bool isIpv6(std::string_view host)
{
    // A zone ("fe80::1%eth0") is not part of what inet_pton understands.
    const std::string_view addr = host.substr(0, host.find('%'));
    std::string buffer(addr);
    in6_addr out{};
    return inet_pton(AF_INET6, buffer.c_str(), &out) == 1;
}

bool isIpv4(std::string_view host)
{
    std::string buffer(host);
    in_addr out{};
    return inet_pton(AF_INET, buffer.c_str(), &out) == 1;
}

// Checks an IPv6 literal as found between brackets.
std::string checkIpv6Host(std::string_view host, std::string_view text)
{
    const std::size_t percent = host.find('%');
    if (percent != std::string_view::npos) {
        const std::string_view zone = host.substr(percent + 1);
        if (zone.empty() || zone.size() >= IF_NAMESIZE || !std::all_of(zone.begin(), zone.end(), [](char c) {
                return isAlpha(c) || isDigit(c) || c == '-' || c == '_' || c == '.';
            })) {
            return "invalid IPv6 zone " + quote(zone) + " in " + quote(text);
        }
    }
    if (!isIpv6(host)) {
        return "invalid IPv6 address " + quote(host) + " in " + quote(text);
    }
    return {};
}

// Host names by RFC 1123 (plus '_', which real DNS data contains), and
// dotted IPv4 literals that inet_pton accepts; no "1.2.3" shorthands.
std::string checkPlainHost(std::string_view host, std::string_view text)
{
    for (char c : host) {
        if (!(isAlpha(c) || isDigit(c) || c == '-' || c == '.' || c == '_')) {
            const std::string shown =
                (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? "a control character" : quote({&c, 1});
            return "invalid character " + shown + " in host " + quote(host) + " of " + quote(text);
        }
    }
    if (std::all_of(host.begin(), host.end(), [](char c) { return isDigit(c) || c == '.'; })) {
        if (!isIpv4(host)) {
            return "invalid IPv4 address " + quote(host) + " in " + quote(text);
        }
        return {};
    }
    if (host.size() > 253) {
        return "host name in " + quote(text) + " is too long: " + std::to_string(host.size()) +
               " characters, at most 253";
    }
    std::size_t start = 0;
    while (start <= host.size()) {
        std::size_t end = host.find('.', start);
        if (end == std::string_view::npos) {
            end = host.size();
        }
        const std::string_view label = host.substr(start, end - start);
        // A single trailing dot (an absolute name) is allowed.
        if (label.empty() && !(end == host.size() && start > 0)) {
            return "invalid host " + quote(host) + " in " + quote(text) + ": empty label";
        }
        if (label.size() > 63) {
            return "invalid host " + quote(host) + " in " + quote(text) + ": label longer than 63 characters";
        }
        if (!label.empty() && (label.front() == '-' || label.back() == '-')) {
            return "invalid host " + quote(host) + " in " + quote(text) + ": a label starts or ends with '-'";
        }
        start = end + 1;
    }
    return {};
}

// Parses PORT from the text after the host's ':'.
Result<std::uint16_t> parsePort(std::string_view port, std::string_view text)
{
    if (port.empty()) {
        return invalid("missing port in " + quote(text) + " after ':'; write e.g. ':8080', or ':0' for any");
    }
    if (!isDigit(port.front())) {
        return invalid("invalid port " + quote(port) + " in " + quote(text) + ": must be a number 0-65535");
    }
    std::size_t digits = 0;
    while (digits < port.size() && isDigit(port[digits])) {
        ++digits;
    }
    if (digits < port.size()) {
        return invalid("unexpected " + quote(port.substr(digits)) + " after port " +
                       std::string(port.substr(0, digits)) + " in " + quote(text));
    }
    unsigned long value = 0;
    for (char c : port) {
        value = value * 10 + static_cast<unsigned long>(c - '0');
        if (value > 65535) {
            return invalid("invalid port " + quote(port) + " in " + quote(text) + ": must be 0-65535");
        }
    }
    return static_cast<std::uint16_t>(value);
}

Result<Address> parseInet(Transport transport, std::string_view scheme, std::string_view rest,
                          std::string_view text)
{
    Address address;
    address.transport = transport;

    if (rest.empty()) {
        return invalid("missing host and port in " + quote(text) + "; write e.g. '" + std::string(scheme) +
                       "://0.0.0.0:8080'");
    }
    if (const std::size_t slash = rest.find('/'); slash != std::string_view::npos) {
        return invalid("unexpected path " + quote(rest.substr(slash)) + " in " + quote(text) + ": " +
                       std::string(scheme) + ":// addresses are HOST:PORT only");
    }

    std::string_view host;
    std::string_view port;
    if (rest.front() == '[') {
        const std::size_t close = rest.find(']');
        if (close == std::string_view::npos) {
            return invalid("unterminated '[' in " + quote(text) + "; write IPv6 addresses as '[::1]:8080'");
        }
        host = rest.substr(1, close - 1);
        if (host.empty()) {
            return invalid("empty host in " + quote(text) +
                           "; write e.g. '[::]:8080' for every IPv6 address");
        }
        const std::string_view after = rest.substr(close + 1);
        if (after.empty()) {
            return invalid("missing port in " + quote(text) + "; write e.g. '" + std::string(scheme) +
                           "://[" + std::string(host) + "]:8080'");
        }
        if (after.front() != ':') {
            return invalid("unexpected " + quote(after) + " after ']' in " + quote(text) +
                           "; expected ':PORT'");
        }
        port = after.substr(1);
        if (std::string why = checkIpv6Host(host, text); !why.empty()) {
            return invalid(std::move(why));
        }
    } else {
        const std::size_t colon = rest.rfind(':');
        if (colon == std::string_view::npos) {
            return invalid("missing port in " + quote(text) + "; write e.g. '" + std::string(scheme) + "://" +
                           std::string(rest) + ":8080'");
        }
        host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) {
            // Either "::1:80" (host "::1", port 80) or "::1" alone (no port).
            std::string hint;
            if (!port.empty() && std::all_of(port.begin(), port.end(), isDigit) && isIpv6(host)) {
                hint = std::string(scheme) + "://[" + std::string(host) + "]:" + std::string(port);
            } else {
                hint = std::string(scheme) + "://[" + std::string(rest) + "]:PORT";
            }
            return invalid("IPv6 addresses must be in brackets: write " + quote(hint) + " instead of " +
                           quote(text));
        }
        if (host.empty()) {
            return invalid("empty host in " + quote(text) + "; write e.g. '" + std::string(scheme) +
                           "://0.0.0.0:" + std::string(port) + "' for every IPv4 address or '" +
                           std::string(scheme) + "://[::]:" + std::string(port) + "' for every address");
        }
        if (std::string why = checkPlainHost(host, text); !why.empty()) {
            return invalid(std::move(why));
        }
    }

    auto parsed = parsePort(port, text);
    if (!parsed) {
        return parsed.error();
    }
    address.host = std::string(host);
    address.port = *parsed;
    return address;
}

Result<Address> parseUnix(Transport transport, std::string_view scheme, std::string_view rest,
                          std::string_view text)
{
    Address address;
    address.transport = transport;

    // Accept the "unix:///run/x.sock" spelling other tools use; what follows
    // "//" must then be a full path as usual.
    if (rest.substr(0, 2) == "//") {
        rest.remove_prefix(2);
    }
    if (rest.empty()) {
        return invalid("missing path in " + quote(text) + "; write e.g. '" + std::string(scheme) +
                       ":/run/x.sock', or '" + std::string(scheme) + ":@name' for an abstract socket");
    }
    if (rest.front() == '@') {
        const std::string_view name = rest.substr(1);
        if (name.empty()) {
            return invalid("empty abstract socket name in " + quote(text) + "; write e.g. '" +
                           std::string(scheme) + ":@name'");
        }
        if (name.size() > kMaxUnixName) {
            return invalid("abstract socket name in " + quote(text) + " is too long: " +
                           std::to_string(name.size()) + " bytes, at most " + std::to_string(kMaxUnixName));
        }
        address.abstract = true;
        address.host = std::string(name);
        return address;
    }
    if (rest.front() != '/') {
        return invalid("unix socket path " + quote(rest) + " in " + quote(text) +
                       " must be absolute (start with '/'), or start with '@' for an abstract socket");
    }
    // "/run//x.sock" is the same file as "/run/x.sock": store one spelling so
    // that printing round-trips and duplicate paths compare equal.
    std::string path;
    path.reserve(rest.size());
    for (const char c : rest) {
        if (c != '/' || path.empty() || path.back() != '/') {
            path.push_back(c);
        }
    }
    if (path.size() > kMaxUnixName) {
        return invalid("unix socket path in " + quote(text) + " is too long: " + std::to_string(path.size()) +
                       " bytes, at most " + std::to_string(kMaxUnixName) + " (the kernel's sun_path limit)");
    }
    address.host = std::move(path);
    return address;
}

int gaiErrno(int gai)
{
    switch (gai) {
    case EAI_SYSTEM:
        return errno != 0 ? errno : EIO;
    case EAI_AGAIN:
        return EAGAIN;
    case EAI_MEMORY:
        return ENOMEM;
    case EAI_BADFLAGS:
    case EAI_FAMILY:
    case EAI_SOCKTYPE:
    case EAI_SERVICE:
        return EINVAL;
    default:
        // EAI_NONAME, EAI_NODATA, EAI_ADDRFAMILY, EAI_FAIL: nothing to bind to.
        return EADDRNOTAVAIL;
    }
}

} // namespace

int Address::socketType() const noexcept
{
    switch (transport) {
    case Transport::Tcp:
    case Transport::UnixStream:
        return SOCK_STREAM;
    case Transport::Udp:
    case Transport::UnixDgram:
        return SOCK_DGRAM;
    case Transport::UnixSeqpacket:
        return SOCK_SEQPACKET;
    }
    return SOCK_STREAM;
}

bool Address::isNumericHost() const noexcept
{
    try {
        return isInet() && (isIpv4(host) || isIpv6(host));
    } catch (...) {
        return false;
    }
}

bool Address::isIpv6Literal() const noexcept
{
    try {
        return isInet() && isIpv6(host);
    } catch (...) {
        return false;
    }
}

Result<Address> parseAddress(std::string_view text)
{
    if (text.empty()) {
        return invalid("empty address; write e.g. 'tcp://0.0.0.0:8080' or 'unix:/run/x.sock'");
    }
    if (text.find('\0') != std::string_view::npos) {
        return invalid("address " + quote(text.substr(0, text.find('\0'))) + "... contains a NUL byte");
    }

    const std::size_t colon = text.find(':');
    const std::string_view schemeText =
        colon == std::string_view::npos ? std::string_view{} : text.substr(0, colon);
    const bool schemeShaped = !schemeText.empty() && isAlpha(schemeText.front()) &&
                              std::all_of(schemeText.begin(), schemeText.end(),
                                          [](char c) { return isAlpha(c) || isDigit(c) || c == '-'; });
    const std::string_view afterColon =
        colon == std::string_view::npos ? std::string_view{} : text.substr(colon + 1);
    const bool looksLikeHostPort =
        schemeShaped && !afterColon.empty() && std::all_of(afterColon.begin(), afterColon.end(), isDigit);

    if (!schemeShaped || looksLikeHostPort) {
        std::string hint = "'tcp://" + std::string(text) + "'";
        if (text.front() == '/' || text.front() == '@') {
            hint = "'unix:" + std::string(text) + "'";
        } else if (colon == std::string_view::npos) {
            hint = "e.g. 'tcp://0.0.0.0:8080' or 'unix:/run/x.sock'";
        }
        return invalid("missing scheme in " + quote(text) + "; write " + hint);
    }

    const std::string scheme = toLower(schemeText);
    const auto *found =
        std::find_if(kSchemes.begin(), kSchemes.end(), [&](const Scheme &s) { return s.name == scheme; });
    if (found == kSchemes.end()) {
        std::vector<std::string_view> names;
        names.reserve(kSchemes.size());
        for (const Scheme &s : kSchemes) {
            names.push_back(s.name);
        }
        std::string message = "unknown scheme " + quote(schemeText) + " in " + quote(text);
        if (std::string match = closestMatch(scheme, names); !match.empty()) {
            message += "; did you mean " + quote(match) + "?";
        }
        message += " (expected " + std::string(kSchemeList) + ")";
        return invalid(std::move(message));
    }

    std::string_view rest = afterColon;
    if (found->transport == Transport::Tcp || found->transport == Transport::Udp) {
        if (rest.substr(0, 2) != "//") {
            return invalid("expected '" + scheme + "://' in " + quote(text) + "; write e.g. '" + scheme +
                           "://0.0.0.0:8080'");
        }
        rest.remove_prefix(2);
        return parseInet(found->transport, scheme, rest, text);
    }
    return parseUnix(found->transport, scheme, rest, text);
}

std::string formatAddress(const Address &address)
{
    std::string out(schemeName(address.transport));
    if (address.isInet()) {
        out += "://";
        if (address.host.find(':') != std::string::npos) {
            out += "[" + address.host + "]";
        } else {
            out += address.host;
        }
        out += ":" + std::to_string(address.port);
        return out;
    }
    out += ":";
    if (address.abstract) {
        out += "@";
    }
    out += address.host;
    return out;
}

Result<std::vector<SocketAddress>> resolveAddress(const Address &address)
{
    std::vector<SocketAddress> results;

    if (address.isUnix()) {
        if (address.host.empty() || address.host.size() > kMaxUnixName) {
            return invalid("invalid unix socket name in " + quote(formatAddress(address)));
        }
        SocketAddress result;
        sockaddr_un un{};
        un.sun_family = AF_UNIX;
        // The abstract name follows a NUL; a path is followed by one (the
        // zeroed sockaddr provides it). The length counts exactly those bytes,
        // since for abstract names trailing NULs would be part of the name.
        const std::size_t offset = address.abstract ? 1 : 0;
        std::memcpy(un.sun_path + offset, address.host.data(), address.host.size());
        result.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + address.host.size());
        std::memcpy(&result.storage, &un, sizeof(un));
        result.family = AF_UNIX;
        results.push_back(result);
        return results;
    }

    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = address.socketType();
    hints.ai_protocol = address.transport == Transport::Tcp ? IPPROTO_TCP : IPPROTO_UDP;
    // No AI_ADDRCONFIG: it drops ::1 on hosts without a global IPv6 address,
    // and a listener may well want loopback-only IPv6.
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV | (address.isNumericHost() ? AI_NUMERICHOST : 0);

    const std::string port = std::to_string(address.port);
    addrinfo *list = nullptr;
    errno = 0;
    const int rc = getaddrinfo(address.host.c_str(), port.c_str(), &hints, &list);
    if (rc == EAI_SYSTEM) {
        return errnoError(gaiErrno(rc), "Failed to resolve " + quote(formatAddress(address)));
    }
    if (rc != 0) {
        return Error{gaiErrno(rc),
                     "Failed to resolve " + quote(formatAddress(address)) + ": " + gai_strerror(rc)};
    }

    for (const addrinfo *ai = list; ai != nullptr; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(sockaddr_storage)) {
            continue;
        }
        SocketAddress result;
        std::memcpy(&result.storage, ai->ai_addr, ai->ai_addrlen);
        result.length = ai->ai_addrlen;
        result.family = ai->ai_family;
        const bool duplicate = std::any_of(results.begin(), results.end(), [&](const SocketAddress &seen) {
            return seen.family == result.family && seen.length == result.length &&
                   std::memcmp(&seen.storage, &result.storage, result.length) == 0;
        });
        if (!duplicate) {
            results.push_back(result);
        }
    }
    freeaddrinfo(list);

    if (results.empty()) {
        return Error{EADDRNOTAVAIL,
                     "Failed to resolve " + quote(formatAddress(address)) + ": no IPv4 or IPv6 address"};
    }
    return results;
}

std::string formatSocketAddress(const sockaddr *sa, socklen_t length)
{
    if (sa == nullptr || length < static_cast<socklen_t>(sizeof(sa_family_t))) {
        return "unnamed";
    }
    switch (sa->sa_family) {
    case AF_INET: {
        if (length < static_cast<socklen_t>(sizeof(sockaddr_in))) {
            break;
        }
        sockaddr_in in{};
        std::memcpy(&in, sa, sizeof(in));
        std::array<char, INET_ADDRSTRLEN> buf{};
        inet_ntop(AF_INET, &in.sin_addr, buf.data(), buf.size());
        return std::string(buf.data()) + ":" + std::to_string(ntohs(in.sin_port));
    }
    case AF_INET6: {
        if (length < static_cast<socklen_t>(sizeof(sockaddr_in6))) {
            break;
        }
        sockaddr_in6 in6{};
        std::memcpy(&in6, sa, sizeof(in6));
        std::array<char, INET6_ADDRSTRLEN> buf{};
        inet_ntop(AF_INET6, &in6.sin6_addr, buf.data(), buf.size());
        std::string host(buf.data());
        if (in6.sin6_scope_id != 0) {
            std::array<char, IF_NAMESIZE> name{};
            if (if_indextoname(in6.sin6_scope_id, name.data()) != nullptr) {
                host += "%" + std::string(name.data());
            } else {
                host += "%" + std::to_string(in6.sin6_scope_id);
            }
        }
        return "[" + host + "]:" + std::to_string(ntohs(in6.sin6_port));
    }
    case AF_UNIX: {
        const auto offset = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path));
        if (length <= offset) {
            return "unnamed";
        }
        sockaddr_un un{};
        std::memcpy(&un, sa, std::min<std::size_t>(length, sizeof(un)));
        const std::size_t size = std::min<std::size_t>(length - offset, kSunPathSize);
        if (un.sun_path[0] == '\0') {
            return "@" + std::string(un.sun_path + 1, size - 1);
        }
        return std::string(un.sun_path, strnlen(un.sun_path, size));
    }
    default:
        break;
    }
    return "unknown address family " + std::to_string(sa->sa_family);
}

} // namespace fdsup
