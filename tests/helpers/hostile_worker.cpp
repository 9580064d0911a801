// hostile-worker: a worker that abuses its channel, for the handoff tests.
//
//   hostile-worker [--connect PATH] MODE REPORT_PATH
//
// It joins the channel inherited in FDSUP_CHANNEL, or with --connect the
// activation socket at PATH as an external worker (HELLO with
// HANDOFF|ADOPT, plus LISTENERS when connecting). A REJECT or ERROR instead
// of WELCOME is reported as "rejected CODE" and it exits 5. Otherwise it
// reports "welcome INSTANCE GENERATION CAPABILITIES", says READY, then does MODE
// and reports what fdsupd answered as one datagram to REPORT_PATH:
// "result CODE" for a HANDOFF_RESULT, "error CODE" for an ERROR, "closed"
// when fdsupd closed the channel, "sent" when nothing is expected, "timeout"
// when fdsupd did not answer (or take a message) within 60 s, the tests'
// event deadline (no WELCOME in that time: exit 6). Then it waits for
// SIGTERM (or DRAIN) and exits 0. Modes:
//   garbage       a datagram with a bad magic
//   short         half a header, then the channel is closed
//   no-fd         HANDOFF carrying no descriptor
//   not-socket    HANDOFF of a pipe
//   listener      HANDOFF of its own listener (fd 3)
//   foreign       HANDOFF of a connection accepted on a listener of its own
//   unconnected   HANDOFF of a socket never connected
//   client-of:PORT HANDOFF of its own client connection to 127.0.0.1:PORT
//                 (another service's listener)
//   big-state     HANDOFF with a memfd state over any limit fdsupd allows
//   flood         50,000 READY messages as fast as the socket takes them
//   oversized     a 64 KiB datagram (the body limit is 32 KiB)
//   fd-on-ready   READY with a descriptor attached (it takes none)
//   handoff-flood HANDOFF of a pipe as fast as fdsupd answers, reading its
//                 HANDOFF_RESULTs, until an ERROR or the channel closes:
//                 reports "error CODE after N" (N answers received)
//   unsealed      HANDOFF whose state memfd is not sealed
//   hello         exit 0 at once (the answer is also printed on stdout)
//   empty         an empty datagram before its READY (a SEQPACKET read of 0
//                 bytes, as at the end of the channel), then nothing more
//   join          nothing more
//   echo-die      serve seqnum echo (4-byte numbers) on fd 3; on DRAIN hand
//                 over the first half of the connections, then SIGKILL itself
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/channel.hpp"
#include "core/scm.hpp"

namespace {

using fdsup::BorrowedFd;
using fdsup::ChannelMessage;
using fdsup::ChannelType;
using fdsup::UniqueFd;

std::string reportPath;
volatile sig_atomic_t stop = 0;

// The longest wait for fdsupd: its WELCOME, its answer, room in the channel.
constexpr std::chrono::milliseconds kDeadline{60000};

// Milliseconds left until `until`, for poll(); 0 once it has passed.
int msLeft(std::chrono::steady_clock::time_point until)
{
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<long long>(left.count(), 0));
}

void onTerm(int)
{
    stop = 1;
}

void report(const std::string &event)
{
    const UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    reportPath.copy(addr.sun_path, sizeof addr.sun_path - 1);
    const std::string line = event + " " + std::to_string(getpid());
    (void)sendto(fd.get(), line.data(), line.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr *>(&addr),
                 sizeof addr);
}

int send(BorrowedFd channel, ChannelMessage &msg)
{
    static std::uint32_t seq = 0;
    msg.seq = ++seq;
    const auto until = std::chrono::steady_clock::now() + kDeadline;
    for (;;) {
        const int r = fdsup::sendChannelMessage(channel, msg);
        if (r != -EAGAIN) {
            return r;
        }
        pollfd p{channel.get(), POLLOUT, 0};
        if (poll(&p, 1, msLeft(until)) == 0) {
            return -ETIMEDOUT;
        }
    }
}

// Waits for fdsupd's answer and reports it.
void awaitAnswer(BorrowedFd channel)
{
    const auto until = std::chrono::steady_clock::now() + kDeadline;
    for (;;) {
        pollfd p{channel.get(), POLLIN, 0};
        const int ready = poll(&p, 1, msLeft(until));
        if (ready < 0 && errno == EINTR && stop == 0) {
            continue;
        }
        if (ready <= 0) {
            report(stop != 0 ? "stopped" : "timeout");
            return;
        }
        ChannelMessage msg;
        const int r = fdsup::recvChannelMessage(channel, msg);
        if (r == -EAGAIN) {
            continue;
        }
        if (r < 0) {
            report("closed");
            return;
        }
        if (msg.type == ChannelType::HandoffResult) {
            report("result " + std::to_string(msg.code));
            return;
        }
        if (msg.type == ChannelType::Error || msg.type == ChannelType::Reject) {
            report("error " + std::to_string(msg.code));
            return;
        }
    }
}

ChannelMessage handoffOf(UniqueFd fd)
{
    ChannelMessage msg;
    msg.type = ChannelType::Handoff;
    msg.id = 1;
    msg.fds.push_back(std::move(fd));
    return msg;
}

// A connection accepted on a listener of our own (not one of fdsupd's).
UniqueFd foreignConnection(UniqueFd &client)
{
    UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    (void)bind(listener.get(), reinterpret_cast<sockaddr *>(&a), sizeof a);
    (void)listen(listener.get(), 1);
    (void)getsockname(listener.get(), reinterpret_cast<sockaddr *>(&a), &len);
    client = UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    (void)connect(client.get(), reinterpret_cast<sockaddr *>(&a), len);
    return UniqueFd(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
}

// client-of:PORT: a connection to someone else's listener, the client end.
UniqueFd clientOf(int port)
{
    UniqueFd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    (void)connect(client.get(), reinterpret_cast<sockaddr *>(&a), sizeof a);
    return client;
}

// handoff-flood: HANDOFFs of a pipe, answers read as they come, until fdsupd
// gives up on us. Reports "error CODE after N", "closed after N" or "timeout".
void handoffFlood(BorrowedFd channel)
{
    int p[2];
    (void)pipe2(p, O_CLOEXEC);
    const UniqueFd readEnd(p[0]);
    const UniqueFd writeEnd(p[1]);
    const BorrowedFd attached[1] = {readEnd.borrow()};
    std::uint64_t id = 0;
    std::uint64_t answers = 0;
    const auto until = std::chrono::steady_clock::now() + kDeadline;
    for (;;) {
        pollfd pfd{channel.get(), POLLIN | POLLOUT, 0};
        if (poll(&pfd, 1, msLeft(until)) <= 0) {
            report(stop != 0 ? "stopped" : "timeout");
            return;
        }
        if ((pfd.revents & POLLIN) != 0) {
            ChannelMessage msg;
            const int r = fdsup::recvChannelMessage(channel, msg);
            if (r < 0 && r != -EAGAIN) {
                report("closed after " + std::to_string(answers) + " (" + std::strerror(-r) + ")");
                return;
            }
            if (r == 0 && msg.type == ChannelType::HandoffResult) {
                ++answers;
            } else if (r == 0 && msg.type == ChannelType::Error) {
                report("error " + std::to_string(msg.code) + " after " + std::to_string(answers));
                return;
            }
        }
        if ((pfd.revents & POLLOUT) != 0) {
            ChannelMessage msg;
            msg.type = ChannelType::Handoff;
            msg.id = ++id;
            msg.seq = static_cast<std::uint32_t>(id);
            msg.fds.emplace_back(fcntl(readEnd.get(), F_DUPFD_CLOEXEC, 3)); // counted by the encoder
            std::vector<std::byte> bytes;
            if (fdsup::encodeChannelMessage(msg, bytes) < 0) {
                report("encode failed");
                return;
            }
            (void)fdsup::sendDatagram(channel, bytes, attached, MSG_DONTWAIT);
        }
    }
}

// echo-die: echo 4-byte numbers; on DRAIN hand over half, then die.
void echoThenDie(BorrowedFd channel)
{
    std::vector<pollfd> fds{{channel.get(), POLLIN, 0}, {3, POLLIN, 0}};
    std::vector<std::string> pending(2);
    for (;;) {
        if (poll(fds.data(), fds.size(), -1) < 0) {
            continue;
        }
        if ((fds[0].revents & POLLIN) != 0) {
            ChannelMessage msg;
            if (fdsup::recvChannelMessage(channel, msg) == 0 && msg.type == ChannelType::Drain) {
                const std::size_t connections = fds.size() - 2;
                for (std::size_t i = 2; i < 2 + connections / 2; ++i) {
                    ChannelMessage handoff;
                    handoff.type = ChannelType::Handoff;
                    handoff.id = i;
                    handoff.fds.emplace_back(fcntl(fds[i].fd, F_DUPFD_CLOEXEC, 3));
                    handoff.state.assign(reinterpret_cast<const std::byte *>(pending[i].data()),
                                         reinterpret_cast<const std::byte *>(pending[i].data()) +
                                             pending[i].size());
                    handoff.stateSize = handoff.state.size();
                    (void)send(channel, handoff);
                }
                report("handed " + std::to_string(connections / 2));
                // Die before DONE, with the other half still open.
                (void)kill(getpid(), SIGKILL);
            }
        }
        if ((fds[1].revents & POLLIN) != 0) {
            const int conn = accept4(3, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (conn >= 0) {
                fds.push_back({conn, POLLIN, 0});
                pending.emplace_back();
            }
        }
        for (std::size_t i = 2; i < fds.size(); ++i) {
            if ((fds[i].revents & POLLIN) == 0) {
                continue;
            }
            char buffer[4096];
            const ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
            if (n <= 0) {
                continue;
            }
            pending[i].append(buffer, static_cast<std::size_t>(n));
            const std::size_t whole = pending[i].size() / 4 * 4;
            (void)!write(fds[i].fd, pending[i].data(), whole);
            pending[i].erase(0, whole);
        }
    }
}

// The activation socket at path, connected (blocking: this is a test helper).
UniqueFd connectTo(const std::string &path)
{
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof addr.sun_path - 1);
    if (connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) < 0) {
        (void)std::fprintf(stderr, "hostile-worker: connect %s: %s\n", path.c_str(), std::strerror(errno));
        return UniqueFd();
    }
    return fd;
}

} // namespace

int main(int argc, char **argv)
{
    std::string connectPath;
    if (argc == 5 && std::strcmp(argv[1], "--connect") == 0) {
        connectPath = argv[2];
        argv += 2;
        argc -= 2;
    }
    if (argc != 3) {
        (void)std::fprintf(stderr, "usage: hostile-worker [--connect PATH] MODE REPORT_PATH\n");
        return 2;
    }
    const std::string mode = argv[1];
    reportPath = argv[2];
    (void)signal(SIGTERM, onTerm);
    UniqueFd channel;
    if (!connectPath.empty()) {
        channel = connectTo(connectPath);
    } else if (const char *env = std::getenv("FDSUP_CHANNEL")) {
        channel = UniqueFd(std::atoi(env));
    } else {
        (void)std::fprintf(stderr, "hostile-worker: no FDSUP_CHANNEL\n");
        return 3;
    }
    if (!channel) {
        return 3;
    }
    ChannelMessage hello;
    hello.type = ChannelType::Hello;
    hello.capabilities = fdsup::kChannelCapHandoff | fdsup::kChannelCapAdopt |
                         (connectPath.empty() ? 0 : fdsup::kChannelCapListeners);
    ChannelMessage welcome;
    if (send(channel.borrow(), hello) < 0) {
        return 4;
    }
    const auto until = std::chrono::steady_clock::now() + kDeadline;
    for (;;) {
        pollfd p{channel.get(), POLLIN, 0};
        if (poll(&p, 1, msLeft(until)) == 0) {
            (void)std::printf("timeout: no WELCOME\n");
            report("timeout");
            return 6;
        }
        const int r = fdsup::recvChannelMessage(channel.borrow(), welcome);
        if (r == 0) {
            break;
        }
        if (r != -EAGAIN && r != -EINTR) {
            report("closed");
            return 5;
        }
    }
    if (welcome.type != ChannelType::Welcome) {
        (void)std::printf("rejected %u %s\n", welcome.code, welcome.text.c_str());
        report("rejected " + std::to_string(welcome.code));
        return 5;
    }
    (void)std::printf("welcome %u %llu %u\n", welcome.instance,
                      static_cast<unsigned long long>(welcome.generation), welcome.capabilities);
    (void)std::fflush(stdout);
    report("welcome " + std::to_string(welcome.instance) + " " + std::to_string(welcome.generation) + " " +
           std::to_string(welcome.capabilities));
    if (mode == "hello") {
        return 0;
    }
    if (mode == "empty") {
        (void)fdsup::sendDatagram(channel.borrow(), {}, {}, 0);
    }
    ChannelMessage ready;
    ready.type = ChannelType::Ready;
    ready.text = "hostile: " + mode;
    (void)send(channel.borrow(), ready);
    report("ready");

    if (mode == "echo-die") {
        echoThenDie(channel.borrow());
        return 0;
    }
    UniqueFd keep; // the other end of what is handed over, kept open
    if (mode == "join" || mode == "empty") {
        report("sent");
    } else if (mode == "garbage") {
        const std::byte bad[16] = {std::byte{0x00}, std::byte{0x01}};
        (void)fdsup::sendDatagram(channel.borrow(), bad, {}, 0);
        awaitAnswer(channel.borrow());
    } else if (mode == "short") {
        const std::byte half[8] = {std::byte{0xFD}, std::byte{0xC1}, std::byte{1}, std::byte{8}};
        (void)fdsup::sendDatagram(channel.borrow(), half, {}, 0);
        report("sent");
        return 0; // closes the channel right after
    } else if (mode == "no-fd") {
        // A well-formed HANDOFF body, but no descriptor attached.
        ChannelMessage msg = handoffOf(UniqueFd(fcntl(0, F_DUPFD_CLOEXEC, 3)));
        std::vector<std::byte> bytes;
        (void)fdsup::encodeChannelMessage(msg, bytes);
        (void)fdsup::sendDatagram(channel.borrow(), bytes, {}, 0);
        awaitAnswer(channel.borrow());
    } else if (mode == "not-socket") {
        int p[2];
        (void)pipe2(p, O_CLOEXEC);
        keep = UniqueFd(p[1]);
        ChannelMessage msg = handoffOf(UniqueFd(p[0]));
        (void)send(channel.borrow(), msg);
        awaitAnswer(channel.borrow());
    } else if (mode == "listener") {
        ChannelMessage msg = handoffOf(UniqueFd(fcntl(3, F_DUPFD_CLOEXEC, 3)));
        (void)send(channel.borrow(), msg);
        awaitAnswer(channel.borrow());
    } else if (mode == "foreign") {
        ChannelMessage msg = handoffOf(foreignConnection(keep));
        (void)send(channel.borrow(), msg);
        awaitAnswer(channel.borrow());
    } else if (mode.starts_with("client-of:")) {
        ChannelMessage msg = handoffOf(clientOf(std::atoi(mode.c_str() + std::strlen("client-of:"))));
        (void)send(channel.borrow(), msg);
        awaitAnswer(channel.borrow());
    } else if (mode == "unconnected") {
        ChannelMessage msg = handoffOf(UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)));
        (void)send(channel.borrow(), msg);
        awaitAnswer(channel.borrow());
    } else if (mode == "big-state") {
        ChannelMessage msg = handoffOf(foreignConnection(keep));
        const std::vector<std::byte> state(std::size_t{1} << 20, std::byte{'x'});
        UniqueFd memfd;
        (void)fdsup::createStateMemfd(state, memfd);
        msg.stateFlags = fdsup::kChannelStateMemfd;
        msg.stateSize = state.size();
        msg.fds.push_back(std::move(memfd));
        (void)send(channel.borrow(), msg);
        awaitAnswer(channel.borrow());
    } else if (mode == "unsealed") {
        ChannelMessage msg = handoffOf(foreignConnection(keep));
        UniqueFd memfd(memfd_create("state", MFD_CLOEXEC));
        (void)!write(memfd.get(), "ab", 2);
        msg.stateFlags = fdsup::kChannelStateMemfd;
        msg.stateSize = 2;
        msg.fds.push_back(std::move(memfd));
        // The encoder does not check seals; the receiver must.
        (void)send(channel.borrow(), msg);
        awaitAnswer(channel.borrow());
    } else if (mode == "oversized") {
        std::vector<std::byte> big(std::size_t{64} * 1024);
        std::vector<std::byte> header;
        ChannelMessage msg;
        msg.type = ChannelType::Ready;
        (void)fdsup::encodeChannelMessage(msg, header);
        std::copy(header.begin(), header.end(), big.begin()); // a real header, a body far too long
        (void)fdsup::sendDatagram(channel.borrow(), big, {}, 0);
        awaitAnswer(channel.borrow());
    } else if (mode == "fd-on-ready") {
        ChannelMessage msg;
        msg.type = ChannelType::Ready;
        std::vector<std::byte> bytes;
        (void)fdsup::encodeChannelMessage(msg, bytes);
        const UniqueFd extra(fcntl(0, F_DUPFD_CLOEXEC, 3));
        const BorrowedFd attached[1] = {extra.borrow()};
        (void)fdsup::sendDatagram(channel.borrow(), bytes, attached, 0);
        awaitAnswer(channel.borrow());
    } else if (mode == "handoff-flood") {
        handoffFlood(channel.borrow());
    } else if (mode == "flood") {
        int sent = 0;
        for (; sent < 50000; ++sent) {
            ChannelMessage msg;
            msg.type = ChannelType::Ready;
            if (send(channel.borrow(), msg) < 0) {
                break;
            }
        }
        awaitAnswer(channel.borrow());
    } else {
        (void)std::fprintf(stderr, "hostile-worker: unknown mode %s\n", mode.c_str());
        return 2;
    }
    while (stop == 0) {
        pause();
    }
    return 0;
}
