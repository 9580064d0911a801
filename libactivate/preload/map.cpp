// FDSUP_PRELOAD_MAP and addresses in fdsupd's configuration syntax, for the preload shim's matching.
#include <cerrno>
#include <cstring>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "match.hpp"

namespace fdsup::preload {

namespace {

struct Scheme {
    std::string_view prefix;
    int family;
    int type;
};

constexpr Scheme kSchemes[] = {
    {"tcp://", AF_INET6, SOCK_STREAM},    {"udp://", AF_INET6, SOCK_DGRAM},
    {"unix-dgram:", AF_UNIX, SOCK_DGRAM}, {"unix-seqpacket:", AF_UNIX, SOCK_SEQPACKET},
    {"unix:", AF_UNIX, SOCK_STREAM},
};

int fail(std::string &why, std::string text)
{
    why = std::move(text);
    return -EINVAL;
}

int parsePort(std::string_view text, std::uint16_t &port)
{
    if (text.empty() || text.size() > 5) {
        return -EINVAL;
    }
    unsigned value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') {
            return -EINVAL;
        }
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) {
        return -EINVAL;
    }
    port = static_cast<std::uint16_t>(value);
    return 0;
}

// Takes the host (and family) of sa into out, keeping out's port and type.
int keepHost(const sockaddr *sa, socklen_t length, NormalAddress &out)
{
    NormalAddress parsed;
    int r = normaliseSockaddr(sa, length, out.type, nullptr, nullptr, parsed);
    out.family = parsed.family;
    out.ip = parsed.ip;
    out.wildcard = parsed.wildcard;
    return r;
}

int parseInet(std::string_view rest, std::string_view text, NormalAddress &out, std::string &why)
{
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
        return fail(why, "missing ':PORT' in '" + std::string(text) + "'");
    }
    std::string host(rest.substr(0, colon));
    if (parsePort(rest.substr(colon + 1), out.port) < 0) {
        return fail(why, "invalid port in '" + std::string(text) + "': must be 1-65535");
    }
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        in6_addr a6{};
        if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6) != 1) {
            return fail(why, "invalid IPv6 address in '" + std::string(text) + "'");
        }
        sockaddr_in6 sin6{};
        sin6.sin6_family = AF_INET6;
        sin6.sin6_addr = a6;
        return keepHost(reinterpret_cast<sockaddr *>(&sin6), sizeof(sin6), out);
    }
    in_addr a4{};
    if (inet_pton(AF_INET, host.c_str(), &a4) != 1) {
        return fail(why, "'" + std::string(text) + "' is not numeric: the shim does not resolve host names");
    }
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr = a4;
    return keepHost(reinterpret_cast<sockaddr *>(&sin), sizeof(sin), out);
}

int parseUnix(std::string_view rest, std::string_view text, DirResolver resolve, void *context,
              NormalAddress &out, std::string &why)
{
    if (rest.size() > 1 && rest.front() == '@') {
        out.abstract = true;
        out.path = std::string(rest.substr(1));
        return 0;
    }
    if (rest.empty() || rest.front() != '/') {
        return fail(why, "the path in '" + std::string(text) + "' must be absolute or @abstract");
    }
    std::string path(rest);
    auto slash = path.rfind('/');
    std::string dir = slash == 0 ? "/" : path.substr(0, slash);
    std::string canonical;
    if (resolve == nullptr || !resolve(dir, canonical, context)) {
        return fail(why, "the directory of '" + std::string(text) + "' does not exist");
    }
    out.path = (canonical == "/" ? "" : canonical) + path.substr(slash);
    return 0;
}

} // namespace

int parseConfigAddress(std::string_view text, DirResolver resolve, void *context, NormalAddress &out,
                       std::string &why)
{
    for (const auto &scheme : kSchemes) {
        if (!text.starts_with(scheme.prefix)) {
            continue;
        }
        NormalAddress result;
        result.family = scheme.family;
        result.type = scheme.type;
        std::string_view rest = text.substr(scheme.prefix.size());
        int r = scheme.family == AF_UNIX ? parseUnix(rest, text, resolve, context, result, why)
                                         : parseInet(rest, text, result, why);
        if (r < 0) {
            return r;
        }
        out = std::move(result);
        return 0;
    }
    return fail(why, "unknown address '" + std::string(text) +
                         "': expected tcp://, udp://, unix:, unix-dgram: or unix-seqpacket:");
}

int parseMap(std::string_view text, DirResolver resolve, void *context, std::vector<MapEntry> &out,
             std::string &why)
{
    std::vector<MapEntry> result;
    while (!text.empty()) {
        auto semi = text.find(';');
        std::string_view item = text.substr(0, semi);
        text = semi == std::string_view::npos ? std::string_view() : text.substr(semi + 1);
        auto eq = item.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            return fail(why, "map entry '" + std::string(item) + "' is not NAME=ADDRESS");
        }
        MapEntry entry;
        entry.name = std::string(item.substr(0, eq));
        std::string addrWhy;
        if (parseConfigAddress(item.substr(eq + 1), resolve, context, entry.address, addrWhy) < 0) {
            return fail(why, "map entry '" + entry.name + "': " + addrWhy);
        }
        result.push_back(std::move(entry));
    }
    out = std::move(result);
    return 0;
}

std::string formatNormalAddress(const NormalAddress &address)
{
    std::string text;
    if (address.isUnix()) {
        text = (address.abstract ? "@" : "") + address.path;
    } else {
        char buf[INET6_ADDRSTRLEN] = {};
        bool mapped = std::memcmp(address.ip.data(), "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
        if (mapped) {
            inet_ntop(AF_INET, address.ip.data() + 12, buf, sizeof(buf));
            text = buf;
        } else {
            inet_ntop(AF_INET6, address.ip.data(), buf, sizeof(buf));
            text = std::string("[") + buf + "]";
        }
        text += ":" + std::to_string(address.port);
    }
    if (address.type == SOCK_DGRAM) {
        text += " (datagram)";
    } else if (address.type == SOCK_SEQPACKET) {
        text += " (seqpacket)";
    }
    return text;
}

} // namespace fdsup::preload
