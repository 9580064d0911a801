// preload-client: speaks the shim's side of the preload protocol with the real codec, for fdsupd's tests.
//
//   preload-client [--claim NAME,...] [--fork] [--daemonize PIDFILE]
//
// It is not the shim (libactivate/preload/ is): it lets fdsupd's side be
// tested by a real process that fdsupd spawned with a wrapped environment.
// It checks that the environment is the contract's (LD_PRELOAD names
// [supervisor] preload_library, FDSUP_PRELOAD is set, no LISTEN_FDS), prints
// "env ok" or "env bad: WHY" and exits 2 on the latter. Then it connects to
// FDSUP_PRELOAD (a leading '@' is abstract) and sends HELLO; a REJECT is
// printed as "rejected CODE TEXT" (exit 3). Otherwise it prints "welcome
// INSTANCE GENERATION CAPABILITIES", asks for the listeners, prints
// "listener NAME ADDRESS" for each, claims the names given (all without
// --claim; none with --claim ""), and serves every stream listener it
// claimed: each connection gets "PID\n" and is closed. SIGTERM ends it
// (exit 0).
//   --fork          all of it is done by a child; the started process waits for it
//   --daemonize F   the started process forks, the child calls setsid(),
//                   writes its pid to F, the parent exits 0, and the child goes on
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/channel.hpp"

namespace {

using fdsup::ChannelMessage;
using fdsup::ChannelType;
using fdsup::UniqueFd;

volatile sig_atomic_t stop = 0;

bool receive(const UniqueFd &fd, ChannelMessage &out)
{
    pollfd p{fd.get(), POLLIN, 0};
    if (poll(&p, 1, 60000) != 1) {
        return false;
    }
    return fdsup::recvChannelMessage(fd.borrow(), out) == 0;
}

std::vector<std::string> split(const std::string &text)
{
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < text.size()) {
        const std::size_t comma = text.find(',', start);
        out.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        start = comma == std::string::npos ? text.size() : comma + 1;
    }
    return out;
}

UniqueFd connectTo(const std::string &address)
{
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::string path = address;
    if (path.starts_with('@')) {
        path[0] = '\0';
    }
    std::memcpy(a.sun_path, path.data(), std::min(path.size(), sizeof a.sun_path - 1));
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
    if (connect(fd.get(), reinterpret_cast<sockaddr *>(&a), length) < 0) {
        std::printf("connect failed: %s\n", std::strerror(errno));
        std::exit(4);
    }
    return fd;
}

int checkEnvironment()
{
    const char *preload = std::getenv("LD_PRELOAD");
    const char *address = std::getenv("FDSUP_PRELOAD");
    const char *wanted = std::getenv("FDSUP_TEST_PRELOAD_LIBRARY");
    std::string why;
    if (address == nullptr) {
        why = "no FDSUP_PRELOAD";
    } else if (std::getenv("LISTEN_FDS") != nullptr) {
        why = "LISTEN_FDS is set";
    } else if (preload == nullptr || (wanted != nullptr && !std::string(preload).starts_with(wanted))) {
        why = std::string("LD_PRELOAD is ") + (preload != nullptr ? preload : "unset");
    } else if (std::getenv("FDSUP_DRAIN_SIGNAL") == nullptr ||
               std::getenv("FDSUP_DRAIN_TIMEOUT_USEC") == nullptr) {
        why = "no FDSUP_DRAIN_SIGNAL or FDSUP_DRAIN_TIMEOUT_USEC";
    }
    (void)std::printf(why.empty() ? "env ok\n" : "env bad: %s\n", why.c_str());
    (void)std::fflush(stdout);
    return why.empty() ? 0 : 2;
}

void serve(const std::vector<UniqueFd> &listeners)
{
    std::vector<pollfd> polls;
    polls.reserve(listeners.size());
    for (const auto &fd : listeners) {
        polls.push_back(pollfd{fd.get(), POLLIN, 0});
    }
    const std::string reply = std::to_string(getpid()) + "\n";
    while (stop == 0) {
        if (poll(polls.data(), polls.size(), -1) < 0) {
            continue; // EINTR: look at stop
        }
        for (auto &p : polls) {
            if ((p.revents & POLLIN) == 0) {
                continue;
            }
            const int c = accept4(p.fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (c >= 0) {
                (void)send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
                close(c);
            }
        }
    }
}

int run(const std::vector<std::string> *claim)
{
    const char *address = std::getenv("FDSUP_PRELOAD");
    if (address == nullptr) {
        return 2;
    }
    UniqueFd fd = connectTo(address);
    ChannelMessage hello;
    hello.type = ChannelType::Hello;
    hello.capabilities = fdsup::kChannelCapListeners | fdsup::kChannelCapPreload;
    (void)fdsup::sendChannelMessage(fd.borrow(), hello);
    ChannelMessage answer;
    if (!receive(fd, answer) || answer.type != ChannelType::Welcome) {
        std::printf("rejected %u %s\n", answer.code, answer.text.c_str());
        return 3;
    }
    std::printf("welcome %u %llu %#x\n", answer.instance, static_cast<unsigned long long>(answer.generation),
                answer.capabilities);
    ChannelMessage request;
    request.type = ChannelType::ListenersRequest;
    (void)fdsup::sendChannelMessage(fd.borrow(), request);
    ChannelMessage listeners;
    if (!receive(fd, listeners) || listeners.type != ChannelType::Listeners) {
        std::printf("no listeners\n");
        return 5;
    }
    std::vector<std::string> claimed = claim != nullptr ? *claim : listeners.names;
    std::vector<UniqueFd> serving;
    for (std::size_t i = 0; i < listeners.fds.size(); ++i) {
        sockaddr_storage a{};
        socklen_t length = sizeof a;
        getsockname(listeners.fds[i].get(), reinterpret_cast<sockaddr *>(&a), &length);
        const auto port = a.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in *>(&a)->sin_port) : 0;
        std::printf("listener %s port %u\n", listeners.names[i].c_str(), static_cast<unsigned>(port));
        int type = 0;
        socklen_t typeLength = sizeof type;
        getsockopt(listeners.fds[i].get(), SOL_SOCKET, SO_TYPE, &type, &typeLength);
        if (type == SOCK_STREAM &&
            std::find(claimed.begin(), claimed.end(), listeners.names[i]) != claimed.end()) {
            serving.push_back(std::move(listeners.fds[i]));
        }
    }
    if (!claimed.empty()) {
        ChannelMessage claimedMessage;
        claimedMessage.type = ChannelType::Claimed;
        claimedMessage.names = claimed;
        (void)fdsup::sendChannelMessage(fd.borrow(), claimedMessage);
    }
    (void)std::fflush(stdout);
    serve(serving);
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    std::vector<std::string> claim;
    bool claimGiven = false;
    bool fork = false;
    std::string pidFile;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--claim" && i + 1 < argc) {
            claim = split(argv[++i]);
            claimGiven = true;
        } else if (arg == "--fork") {
            fork = true;
        } else if (arg == "--daemonize" && i + 1 < argc) {
            pidFile = argv[++i];
        } else {
            (void)std::fprintf(stderr,
                               "usage: preload-client [--claim NAME,...] [--fork] [--daemonize PIDFILE]\n");
            return 64;
        }
    }
    struct sigaction sa {};
    sa.sa_handler = [](int) {
        stop = 1;
    };
    sigaction(SIGTERM, &sa, nullptr);
    (void)setvbuf(stdout, nullptr, _IOLBF, 0);
    if (const int r = checkEnvironment(); r != 0) {
        return r;
    }
    if (!pidFile.empty()) {
        const pid_t child = ::fork();
        if (child > 0) {
            return 0; // the child writes the pid file: the parent may be gone first
        }
        setsid();
        std::ofstream(pidFile) << getpid() << "\n";
    } else if (fork) {
        const pid_t child = ::fork();
        if (child > 0) {
            int status = 0;
            while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
                kill(child, SIGTERM);
            }
            return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        }
    }
    return run(claimGiven ? &claim : nullptr);
}
