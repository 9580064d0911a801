// The preload shim's listener sources: the environment at start-up, LISTEN_FDS, and fdsupd's preload socket.
#include "source.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/channel.hpp"
#include "real.hpp"

namespace fdsup::preload {

namespace {

constexpr int kReplyTimeoutMs = 10'000;

bool parseInt(const char *text, long long &out)
{
    if (text == nullptr || *text == '\0') {
        return false;
    }
    char *end = nullptr;
    errno = 0;
    long long v = std::strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0) {
        return false;
    }
    out = v;
    return true;
}

std::vector<std::string> split(std::string_view text, char sep)
{
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= text.size()) {
        auto end = text.find(sep, start);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        out.emplace_back(text.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

// Removes the entries of LD_PRELOAD that are this library, so exec'd
// programs run without the shim.
void dropSelfFromPreload(const char *selfPath)
{
    const char *value = std::getenv("LD_PRELOAD");
    if (value == nullptr) {
        return;
    }
    std::string kept;
    std::string_view text(value);
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find_first_of(": ", start);
        std::string entry(
            text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
        start = end == std::string_view::npos ? text.size() : end + 1;
        bool self = (selfPath != nullptr && entry == selfPath) || entry == "libactivate-preload.so" ||
                    entry.ends_with("/libactivate-preload.so");
        if (!entry.empty() && !self) {
            kept += (kept.empty() ? "" : ":") + entry;
        }
    }
    if (kept.empty()) {
        unsetenv("LD_PRELOAD");
    } else {
        setenv("LD_PRELOAD", kept.c_str(), 1);
    }
}

void takeInheritedFds(Config &config)
{
    long long pid = 0;
    long long count = 0;
    if (!parseInt(std::getenv("LISTEN_PID"), pid) || pid != getpid() ||
        !parseInt(std::getenv("LISTEN_FDS"), count) || count > 64) {
        return;
    }
    const char *names = std::getenv("LISTEN_FDNAMES");
    std::vector<std::string> nameList = names != nullptr ? split(names, ':') : std::vector<std::string>();
    for (int i = 0; i < count; ++i) {
        int moved = moveHigh(3 + i);
        if (moved < 0) {
            warn("cannot keep inherited fd %d: %s", 3 + i, std::strerror(-moved));
            continue;
        }
        config.inheritedFds.push_back(moved);
        auto idx = static_cast<std::size_t>(i);
        config.inheritedNames.push_back(
            idx < nameList.size() && !nameList[idx].empty() ? nameList[idx] : "fd" + std::to_string(3 + i));
    }
    for (const char *var : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID"}) {
        unsetenv(var);
    }
}

void removeOwnVariables()
{
    std::vector<std::string> names;
    for (char **e = environ; e != nullptr && *e != nullptr; ++e) {
        std::string_view entry(*e);
        if (entry.starts_with("FDSUP_PRELOAD") || entry.starts_with("FDSUP_DRAIN_")) {
            names.emplace_back(entry.substr(0, entry.find('=')));
        }
    }
    for (const auto &name : names) {
        unsetenv(name.c_str());
    }
}

} // namespace

void readEnvironment(Config &config, const char *selfPath)
{
    auto get = [](const char *name) {
        const char *v = std::getenv(name);
        return v != nullptr ? std::string(v) : std::string();
    };
    config.preloadAddress = get("FDSUP_PRELOAD");
    config.mapText = get("FDSUP_PRELOAD_MAP");
    config.debug = !get("FDSUP_PRELOAD_DEBUG").empty() && get("FDSUP_PRELOAD_DEBUG") != "0";
    long long value = 0;
    if (parseInt(std::getenv("FDSUP_DRAIN_SIGNAL"), value) && value > 0 && value < NSIG) {
        config.drainSignal = static_cast<int>(value);
    }
    if (parseInt(std::getenv("FDSUP_DRAIN_TIMEOUT_USEC"), value)) {
        config.drainTimeoutUsec = static_cast<std::uint64_t>(value);
    }
    if (config.preloadAddress.empty()) {
        takeInheritedFds(config);
    }
    removeOwnVariables();
    dropSelfFromPreload(selfPath);
}

namespace {

int describeListener(int fd, std::string name, ListenerFd &out)
{
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    int type = 0;
    socklen_t typeLen = sizeof(type);
    if (getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &typeLen) < 0) {
        return -errno;
    }
    out.fd = fd;
    out.info.name = std::move(name);
    return normaliseSockaddr(reinterpret_cast<sockaddr *>(&ss), len, type, resolveDir, nullptr,
                             out.info.address);
}

void addListeners(State &s, const std::vector<int> &fds, const std::vector<std::string> &names)
{
    for (std::size_t i = 0; i < fds.size(); ++i) {
        ListenerFd l;
        if (int r = describeListener(fds[i], names[i], l); r < 0) {
            warn("listener '%s' (fd %d) is not a bound socket, ignoring it: %s", names[i].c_str(), fds[i],
                 std::strerror(-r));
            continue;
        }
        debug("listener '%s' at %s", l.info.name.c_str(), formatNormalAddress(l.info.address).c_str());
        s.listeners.push_back(std::move(l));
    }
}

int waitFor(int fd, ChannelMessage &msg)
{
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, kReplyTimeoutMs);
    if (r == 0) {
        return -ETIMEDOUT;
    }
    if (r < 0) {
        return -errno;
    }
    return recvChannelMessage(BorrowedFd(fd), msg);
}

int connectPreload(const std::string &address)
{
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (address.size() >= sizeof(sun.sun_path)) {
        return -ENAMETOOLONG;
    }
    std::memcpy(sun.sun_path, address.data(), address.size());
    if (address.starts_with('@')) {
        sun.sun_path[0] = '\0';
    }
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size() +
                                      (address.starts_with('@') ? 0 : 1));
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!fd || connect(fd.get(), reinterpret_cast<sockaddr *>(&sun), len) < 0) {
        return -errno;
    }
    return fd.release();
}

// A REJECT or ERROR as "reason (errno text)".
std::string refusal(const ChannelMessage &msg)
{
    return std::string(channelTypeName(msg.type)) + " " + std::strerror(static_cast<int>(msg.code)) + ": " +
           msg.text;
}

// HELLO, WELCOME, LISTENERS_REQUEST, LISTENERS. Returns 0 or -errno with why.
int handshake(State &s, int fd, ChannelMessage &listeners, std::string &why)
{
    ChannelMessage hello;
    hello.type = ChannelType::Hello;
    hello.seq = ++s.seq;
    hello.capabilities = kChannelCapListeners | kChannelCapPreload;
    ChannelMessage reply;
    int r = sendChannelMessage(BorrowedFd(fd), hello);
    if (r == 0) {
        r = waitFor(fd, reply);
    }
    if (r == 0 && reply.type != ChannelType::Welcome) {
        why = refusal(reply);
        return reply.type == ChannelType::Reject ? -static_cast<int>(reply.code) : -EPROTO;
    }
    ChannelMessage request;
    request.type = ChannelType::ListenersRequest;
    request.seq = ++s.seq;
    if (r == 0) {
        r = sendChannelMessage(BorrowedFd(fd), request);
    }
    if (r == 0) {
        r = waitFor(fd, listeners);
    }
    if (r == 0 && listeners.type != ChannelType::Listeners) {
        why = refusal(listeners);
        return -EPROTO;
    }
    if (r < 0) {
        why = std::strerror(-r);
    }
    return r;
}

void loadFromFdsupd(State &s)
{
    const std::string &address = s.config.preloadAddress;
    std::string why;
    int fd = connectPreload(address);
    ChannelMessage msg;
    int r = fd < 0 ? fd : handshake(s, fd, msg, why);
    if (fd < 0) {
        why = std::strerror(-fd);
    }
    if (r < 0) {
        warn("cannot get the listeners from fdsupd at %s: %s", address.c_str(), why.c_str());
        if (fd >= 0) {
            real::close(fd);
        }
        return;
    }
    // Kept open for the life of the process: fdsupd counts it as ours.
    int movedChannel = moveHigh(fd);
    s.channelFd = movedChannel < 0 ? fd : movedChannel;
    addOwnFd(s, s.channelFd);
    std::vector<int> fds;
    for (auto &owned : msg.fds) {
        int raw = owned.release();
        int moved = moveHigh(raw);
        fds.push_back(moved < 0 ? raw : moved);
    }
    for (int l : fds) {
        addOwnFd(s, l);
    }
    addListeners(s, fds, msg.names);
    debug("fdsupd gave %zu listener(s)", fds.size());
}

} // namespace

bool ensureListeners(State &s)
{
    if (s.load != LoadState::NotYet) {
        return s.load == LoadState::Loaded && !s.listeners.empty() && !s.mapBroken;
    }
    ShimScope scope;
    ErrnoKeeper keep;
    s.load = LoadState::Failed;
    std::string why;
    if (parseMap(s.config.mapText, resolveDir, nullptr, s.map, why) < 0) {
        warn("FDSUP_PRELOAD_MAP is invalid, claiming nothing: %s", why.c_str());
        s.mapBroken = true;
    }
    if (!s.config.preloadAddress.empty()) {
        loadFromFdsupd(s);
    } else {
        addListeners(s, s.config.inheritedFds, s.config.inheritedNames);
    }
    s.load = LoadState::Loaded;
    return !s.listeners.empty() && !s.mapBroken;
}

void reportClaims(State &s)
{
    if (s.channelFd < 0) {
        return;
    }
    ShimScope scope;
    ErrnoKeeper keep;
    ChannelMessage msg;
    msg.type = ChannelType::Claimed;
    msg.seq = ++s.seq;
    for (const auto &l : s.listeners) {
        if (l.claimed && std::find(msg.names.begin(), msg.names.end(), l.info.name) == msg.names.end()) {
            msg.names.push_back(l.info.name);
        }
    }
    if (int r = sendChannelMessage(BorrowedFd(s.channelFd), msg); r < 0) {
        debug("CLAIMED not sent: %s", std::strerror(-r));
    }
}

} // namespace fdsup::preload
