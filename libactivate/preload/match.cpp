// Address normalisation and the match rules of the preload shim (docs/preload.md, "Address matching").
#include "match.hpp"

#include <cerrno>
#include <cstring>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

namespace fdsup::preload {

namespace {

constexpr std::array<std::uint8_t, 12> kMappedPrefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool isAllZero(const std::array<std::uint8_t, 16> &ip)
{
    for (auto b : ip) {
        if (b != 0) {
            return false;
        }
    }
    return true;
}

bool isMappedAny(const std::array<std::uint8_t, 16> &ip)
{
    return std::memcmp(ip.data(), kMappedPrefix.data(), kMappedPrefix.size()) == 0 && ip[12] == 0 &&
           ip[13] == 0 && ip[14] == 0 && ip[15] == 0;
}

void setIpv4(const in_addr &addr, NormalAddress &out)
{
    std::memcpy(out.ip.data(), kMappedPrefix.data(), kMappedPrefix.size());
    std::memcpy(out.ip.data() + kMappedPrefix.size(), &addr.s_addr, 4);
    out.wildcard = addr.s_addr == htonl(INADDR_ANY);
}

void setIpv6(const in6_addr &addr, NormalAddress &out)
{
    std::memcpy(out.ip.data(), addr.s6_addr, 16);
    // ::ffff:0.0.0.0 is the IPv4 wildcard seen through an IPv6 socket.
    out.wildcard = isAllZero(out.ip) || isMappedAny(out.ip);
}

// dir + "/" + name with dir made canonical by the resolver.
int canonicalPath(std::string_view path, DirResolver resolve, void *context, std::string &out)
{
    auto slash = path.rfind('/');
    std::string dir = slash == std::string_view::npos ? "." : std::string(path.substr(0, slash));
    if (dir.empty()) {
        dir = "/";
    }
    std::string name(slash == std::string_view::npos ? path : path.substr(slash + 1));
    if (name.empty() || name == "." || name == "..") {
        return -EINVAL;
    }
    std::string canonical;
    if (!resolve(dir, canonical, context)) {
        return -ENOENT;
    }
    out = canonical == "/" ? "/" + name : canonical + "/" + name;
    return 0;
}

int normaliseUnix(const sockaddr_un *sun, socklen_t length, DirResolver resolve, void *context,
                  NormalAddress &out)
{
    constexpr auto kPathOffset = offsetof(sockaddr_un, sun_path);
    if (length <= kPathOffset) {
        return -EINVAL; // unnamed: autobind, nothing to match
    }
    std::size_t max = std::min<std::size_t>(length - kPathOffset, sizeof(sun->sun_path));
    if (sun->sun_path[0] == '\0') {
        out.abstract = true;
        out.path.assign(sun->sun_path + 1, max - 1);
        return 0;
    }
    std::size_t len = strnlen(sun->sun_path, max);
    return canonicalPath(std::string_view(sun->sun_path, len), resolve, context, out.path);
}

} // namespace

int normaliseSockaddr(const sockaddr *sa, socklen_t length, int type, DirResolver resolve, void *context,
                      NormalAddress &out)
{
    if (sa == nullptr || length < static_cast<socklen_t>(sizeof(sa_family_t))) {
        return -EINVAL;
    }
    NormalAddress result;
    result.family = sa->sa_family;
    result.type = type;
    if (sa->sa_family == AF_INET) {
        if (length < static_cast<socklen_t>(sizeof(sockaddr_in))) {
            return -EINVAL;
        }
        sockaddr_in sin{};
        std::memcpy(&sin, sa, sizeof(sin));
        setIpv4(sin.sin_addr, result);
        result.port = ntohs(sin.sin_port);
    } else if (sa->sa_family == AF_INET6) {
        if (length < static_cast<socklen_t>(sizeof(sockaddr_in6))) {
            return -EINVAL;
        }
        sockaddr_in6 sin6{};
        std::memcpy(&sin6, sa, sizeof(sin6));
        setIpv6(sin6.sin6_addr, result);
        result.port = ntohs(sin6.sin6_port);
    } else if (sa->sa_family == AF_UNIX) {
        sockaddr_un sun{};
        std::memcpy(&sun, sa, std::min<std::size_t>(length, sizeof(sun)));
        if (int r = normaliseUnix(&sun, length, resolve, context, result); r < 0) {
            return r;
        }
    } else {
        return -EAFNOSUPPORT;
    }
    out = std::move(result);
    return 0;
}

Match matchAddress(const NormalAddress &app, const NormalAddress &listener)
{
    if (app.isUnix() != listener.isUnix()) {
        return Match::None;
    }
    if (app.isUnix()) {
        if (app.abstract != listener.abstract || app.path != listener.path) {
            return Match::None;
        }
    } else {
        if (app.port == 0 || app.port != listener.port) {
            return Match::None; // port 0 asks the kernel for a fresh one: never a listener
        }
        bool same = (app.wildcard && listener.wildcard) ||
                    (!app.wildcard && !listener.wildcard && app.ip == listener.ip);
        if (!same) {
            return Match::None;
        }
    }
    if (app.type != listener.type) {
        return Match::TypeMismatch;
    }
    if (app.family == AF_INET && listener.family == AF_INET6) {
        return Match::FamilyMismatch;
    }
    return Match::Same;
}

namespace {

const char *typeName(int type)
{
    switch (type) {
    case SOCK_STREAM:
        return "stream";
    case SOCK_DGRAM:
        return "datagram";
    case SOCK_SEQPACKET:
        return "seqpacket";
    default:
        return "unknown-type";
    }
}

const char *familyName(int family)
{
    return family == AF_INET ? "AF_INET" : family == AF_INET6 ? "AF_INET6" : "AF_UNIX";
}

BindDecision refuse(Match why, const NormalAddress &app, const Listener &listener)
{
    BindDecision d;
    d.action = BindDecision::Action::Refuse;
    if (why == Match::TypeMismatch) {
        d.error = EPROTOTYPE;
        d.reason = std::string("a ") + typeName(app.type) + " socket cannot have listener '" + listener.name +
                   "', a " + typeName(listener.address.type) + " socket";
    } else {
        d.error = EAFNOSUPPORT;
        d.reason = std::string("an ") + familyName(app.family) + " socket cannot have listener '" +
                   listener.name + "', an " + familyName(listener.address.family) + " socket";
    }
    d.reason += " at " + formatNormalAddress(listener.address);
    return d;
}

BindDecision claim(std::size_t index)
{
    BindDecision d;
    d.action = BindDecision::Action::Claim;
    d.listener = index;
    return d;
}

// The listener a map entry designates, for this app socket.
BindDecision decideByName(const NormalAddress &app, const MapEntry &entry,
                          std::span<const Listener> listeners)
{
    const Listener *unusable = nullptr;
    Match why = Match::None;
    for (std::size_t i = 0; i < listeners.size(); ++i) {
        if (listeners[i].name != entry.name) {
            continue;
        }
        // The map matched the address already: only type and family are left.
        const NormalAddress &have = listeners[i].address;
        Match m = Match::Same;
        if (app.type != have.type) {
            m = Match::TypeMismatch;
        } else if (app.isUnix() != have.isUnix() || (app.family == AF_INET && have.family == AF_INET6)) {
            m = Match::FamilyMismatch;
        }
        if (m == Match::Same) {
            return claim(i);
        }
        if (unusable == nullptr) {
            unusable = &listeners[i];
            why = m;
        }
    }
    if (unusable != nullptr) {
        return refuse(why, app, *unusable);
    }
    BindDecision d;
    d.action = BindDecision::Action::Refuse;
    d.error = EADDRNOTAVAIL;
    d.reason = "the map sends " + formatNormalAddress(entry.address) + " to listener '" + entry.name +
               "', which the service does not have";
    return d;
}

} // namespace

BindDecision decideBind(const NormalAddress &app, std::span<const Listener> listeners,
                        std::span<const MapEntry> map)
{
    for (const auto &entry : map) {
        if (matchAddress(app, entry.address) != Match::None) {
            return decideByName(app, entry, listeners);
        }
    }
    const Listener *unusable = nullptr;
    Match why = Match::None;
    for (std::size_t i = 0; i < listeners.size(); ++i) {
        Match m = matchAddress(app, listeners[i].address);
        if (m == Match::Same) {
            return claim(i);
        }
        if (m != Match::None && unusable == nullptr) {
            unusable = &listeners[i];
            why = m;
        }
    }
    if (unusable != nullptr) {
        return refuse(why, app, *unusable);
    }
    return {};
}

} // namespace fdsup::preload
