// Unit tests for the worker channel: codec round trips, refusals without fd leaks, and the C API end to end.
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "activate/activate.h"
#include "activate/activate.hpp"
#include "common/address.hpp"
#include "common/result.hpp"
#include "common/socket.hpp"
#include "core/channel.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using test::countOpenFds;
using test::fileId;
using test::TempDir;

struct Pair {
    UniqueFd a;
    UniqueFd b;
};

Pair makePair()
{
    std::array<int, 2> sv{-1, -1};
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv.data()), 0);
    return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

UniqueFd makeFile()
{
    return UniqueFd(::memfd_create("channel-test", MFD_CLOEXEC));
}

std::vector<std::byte> bytesOf(std::string_view s)
{
    const auto b = std::as_bytes(std::span(s));
    return {b.begin(), b.end()};
}

// A loopback TCP connection: the accepted server side and the client.
struct Tcp {
    UniqueFd server;
    UniqueFd client;
};

Tcp makeTcp()
{
    UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr *>(&addr), len), 0);
    EXPECT_EQ(::listen(listener.get(), 1), 0);
    EXPECT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr *>(&addr), &len), 0);
    UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::connect(client.get(), reinterpret_cast<sockaddr *>(&addr), len), 0);
    UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    return {std::move(server), std::move(client)};
}

// Sends raw bytes with raw fds, bypassing the encoder: a hostile peer.
int rawSend(const UniqueFd &sock, std::span<const std::byte> bytes, std::span<const int> fds)
{
    iovec iov{const_cast<std::byte *>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) std::array<std::byte, CMSG_SPACE(sizeof(int) * 253)> control{};
    if (!fds.empty()) {
        msg.msg_control = control.data();
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr *c = CMSG_FIRSTHDR(&msg);
        if (c == nullptr) {
            return -ENOBUFS;
        }
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    return ::sendmsg(sock.get(), &msg, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

// The 16-byte header, written out here on purpose: these tests pin the wire format.
std::vector<std::byte> header(std::uint8_t type, std::uint32_t bodyLen, std::uint8_t version = 1,
                              std::uint8_t magic1 = 0xC1)
{
    std::vector<std::byte> h{std::byte{0xFD}, std::byte{magic1}, std::byte{version}, std::byte{type}};
    for (int i = 0; i < 4; ++i) {
        h.push_back(std::byte{0});
    }
    for (int i = 0; i < 4; ++i) {
        h.push_back(std::byte{static_cast<std::uint8_t>(7 >> (8 * (3 - i)))}); // seq 7
    }
    for (int i = 0; i < 4; ++i) {
        h.push_back(std::byte{static_cast<std::uint8_t>(bodyLen >> (8 * (3 - i)))});
    }
    return h;
}

ChannelMessage roundTrip(const ChannelMessage &sent)
{
    auto [tx, rx] = makePair();
    EXPECT_EQ(sendChannelMessage(tx.borrow(), sent), 0);
    ChannelMessage got;
    EXPECT_EQ(recvChannelMessage(rx.borrow(), got), 0);
    EXPECT_EQ(got.type, sent.type);
    EXPECT_EQ(got.seq, sent.seq);
    EXPECT_EQ(got.fds.size(), sent.fds.size());
    for (std::size_t i = 0; i < got.fds.size() && i < sent.fds.size(); ++i) {
        EXPECT_EQ(fileId(got.fds[i].borrow()), fileId(sent.fds[i].borrow()));
        EXPECT_NE(::fcntl(got.fds[i].get(), F_GETFD) & FD_CLOEXEC, 0);
    }
    return got;
}

TEST(Channel, HeaderIsSixteenBytesBigEndian)
{
    ChannelMessage m;
    m.type = ChannelType::Done;
    m.seq = 7;
    std::vector<std::byte> out;
    ASSERT_EQ(encodeChannelMessage(m, out), 0);
    EXPECT_EQ(out, header(10, 0));
}

TEST(Channel, RoundTripsEveryType)
{
    const int before = countOpenFds();
    {
        ChannelMessage m;
        m.type = ChannelType::Hello;
        m.seq = 1;
        m.capabilities = kChannelCapHandoff | kChannelCapAdopt;
        const auto got = roundTrip(m);
        EXPECT_EQ(got.minVersion, 1);
        EXPECT_EQ(got.maxVersion, 1);
        EXPECT_EQ(got.capabilities, m.capabilities);
    }
    {
        ChannelMessage m;
        m.type = ChannelType::Welcome;
        m.seq = 2;
        m.capabilities = kChannelCapAdopt;
        m.instance = 3;
        m.generation = 0x1122334455667788;
        m.maxInlineState = 4096;
        m.maxMemfdState = 1 << 20;
        m.service = "wéb";
        const auto got = roundTrip(m);
        EXPECT_EQ(got.service, "wéb");
        EXPECT_EQ(got.instance, 3U);
        EXPECT_EQ(got.generation, m.generation);
        EXPECT_EQ(got.maxInlineState, 4096U);
        EXPECT_EQ(got.maxMemfdState, 1U << 20);
        EXPECT_EQ(got.capabilities, kChannelCapAdopt);
    }
    for (const ChannelType t : {ChannelType::Reject, ChannelType::Error}) {
        ChannelMessage m;
        m.type = t;
        m.code = EPROTONOSUPPORT;
        m.text = "no common version";
        const auto got = roundTrip(m);
        EXPECT_EQ(got.code, static_cast<std::uint32_t>(EPROTONOSUPPORT));
        EXPECT_EQ(got.text, m.text);
    }
    for (const ChannelType t : {ChannelType::ListenersRequest, ChannelType::Done}) {
        ChannelMessage m;
        m.type = t;
        (void)roundTrip(m);
    }
    {
        ChannelMessage m;
        m.type = ChannelType::Listeners;
        m.names = {"web", "admin"};
        m.fds.push_back(makeFile());
        m.fds.push_back(makeFile());
        const auto got = roundTrip(m);
        EXPECT_EQ(got.names, m.names);
    }
    {
        ChannelMessage m;
        m.type = ChannelType::Claimed; // names, no fds
        m.names = {"web", "admin"};
        const auto got = roundTrip(m);
        EXPECT_EQ(got.names, m.names);
        EXPECT_TRUE(got.fds.empty());
    }
    {
        ChannelMessage m;
        m.type = ChannelType::Ready;
        m.text = "serving";
        EXPECT_EQ(roundTrip(m).text, "serving");
    }
    {
        ChannelMessage m;
        m.type = ChannelType::Drain;
        m.deadlineUsec = 123456789012;
        EXPECT_EQ(roundTrip(m).deadlineUsec, 123456789012U);
    }
    for (const ChannelType t : {ChannelType::Handoff, ChannelType::Adopt}) {
        ChannelMessage m;
        m.type = t;
        m.id = 42;
        m.state = bytesOf("GET / HT");
        m.stateSize = m.state.size();
        m.fds.push_back(makeFile());
        const auto got = roundTrip(m);
        EXPECT_EQ(got.id, 42U);
        EXPECT_EQ(got.state, m.state);
        EXPECT_EQ(got.stateFlags, 0U);
    }
    for (const ChannelType t : {ChannelType::Handoff, ChannelType::Adopt}) {
        const std::vector<std::byte> big(kChannelMaxInlineState * 3, std::byte{0x5A});
        ChannelMessage m;
        m.type = t;
        m.id = 43;
        m.stateFlags = kChannelStateMemfd;
        m.stateSize = big.size();
        m.fds.push_back(makeFile());
        UniqueFd memfd;
        ASSERT_EQ(createStateMemfd(big, memfd), 0);
        m.fds.push_back(std::move(memfd));
        const auto got = roundTrip(m);
        EXPECT_EQ(got.stateSize, big.size());
        std::vector<std::byte> state;
        ASSERT_EQ(readStateMemfd(got.fds[1].borrow(), got.stateSize, state), 0);
        EXPECT_EQ(state, big);
    }
    {
        ChannelMessage m;
        m.type = ChannelType::HandoffResult;
        m.id = 44;
        m.code = EXFULL;
        m.text = "too many held";
        const auto got = roundTrip(m);
        EXPECT_EQ(got.id, 44U);
        EXPECT_EQ(got.code, static_cast<std::uint32_t>(EXFULL));
    }
    EXPECT_EQ(countOpenFds(), before);
}

TEST(Channel, EncoderRefusesWhatTheDecoderWould)
{
    std::vector<std::byte> out;
    ChannelMessage m;
    m.type = ChannelType::Handoff; // no connection fd
    EXPECT_EQ(encodeChannelMessage(m, out), -EINVAL);
    m.fds.push_back(makeFile());
    m.state.assign(kChannelMaxInlineState + 1, std::byte{1});
    m.stateSize = m.state.size();
    EXPECT_EQ(encodeChannelMessage(m, out), -EMSGSIZE);
    ChannelMessage ready;
    ready.type = ChannelType::Ready;
    ready.text = std::string("a\0b", 3);
    EXPECT_EQ(encodeChannelMessage(ready, out), -EINVAL);
    ready.text = "\xC0\xAF"; // overlong '/'
    EXPECT_EQ(encodeChannelMessage(ready, out), -EINVAL);
    ready.text.assign(kChannelMaxText + 1, 'x');
    EXPECT_EQ(encodeChannelMessage(ready, out), -EMSGSIZE);
    ChannelMessage error;
    error.type = ChannelType::Error; // code 0
    EXPECT_EQ(encodeChannelMessage(error, out), -EINVAL);
    ChannelMessage claimed;
    claimed.type = ChannelType::Claimed;
    claimed.names = {"web"};
    claimed.fds.push_back(makeFile()); // CLAIMED carries no fd
    EXPECT_EQ(encodeChannelMessage(claimed, out), -EINVAL);
    claimed.fds.clear();
    claimed.names = {""}; // a name is 1-255 bytes
    EXPECT_EQ(encodeChannelMessage(claimed, out), -EINVAL);
}

struct Malformed {
    const char *name;
    std::vector<std::byte> bytes;
    int fds;
    int error;
};

std::vector<Malformed> malformedCases()
{
    auto withBody = [](std::vector<std::byte> h, std::vector<std::byte> body) {
        h.insert(h.end(), body.begin(), body.end());
        return h;
    };
    const std::vector<std::byte> drainBody(8, std::byte{0});
    std::vector<std::byte> inlineOver = {std::byte{0}, std::byte{0}, std::byte{0},    std::byte{0},
                                         std::byte{0}, std::byte{0}, std::byte{0},    std::byte{1}, // id
                                         std::byte{0}, std::byte{0}, std::byte{0},    std::byte{0}, // flags
                                         std::byte{0}, std::byte{0}, std::byte{0},    std::byte{0},
                                         std::byte{0}, std::byte{0}, std::byte{0x40}, std::byte{1}}; // 16385
    std::vector<std::byte> memfdOver = inlineOver;
    memfdOver[11] = std::byte{1};    // kChannelStateMemfd
    memfdOver[15] = std::byte{0x10}; // 2^32 + ...: beyond 64 MiB
    std::vector<std::byte> truncated = header(10, 0);
    truncated.resize(10);
    return {
        {"truncated header", truncated, 0, -EBADMSG},
        {"bad magic", header(10, 0, 1, 0xC2), 0, -EBADMSG},
        {"bad version", header(10, 0, 2), 0, -EPROTONOSUPPORT},
        {"length longer than datagram", header(10, 4), 0, -EBADMSG},
        {"length shorter than datagram", withBody(header(7, 4), drainBody), 0, -EBADMSG},
        {"unknown type", header(99, 0), 0, -EBADMSG},
        {"type zero", header(0, 0), 0, -EBADMSG},
        {"body too short", withBody(header(7, 4), std::vector<std::byte>(4)), 0, -EBADMSG},
        {"fd on DONE", header(10, 0), 1, -EBADMSG},
        {"two fds on DONE", header(10, 0), 2, -EBADMSG},
        {"no fd on HANDOFF", withBody(header(8, 20), std::vector<std::byte>(20)), 0, -EBADMSG},
        {"two fds on inline HANDOFF", withBody(header(8, 20), std::vector<std::byte>(20)), 2, -EBADMSG},
        {"inline state over the limit", withBody(header(8, 20), inlineOver), 1, -EMSGSIZE},
        {"memfd state over the limit", withBody(header(11, 20), memfdOver), 2, -EMSGSIZE},
    };
}

TEST(Channel, MalformedDatagramsAreRefusedAndEveryFdClosed)
{
    for (const Malformed &c : malformedCases()) {
        SCOPED_TRACE(c.name);
        auto [tx, rx] = makePair();
        const int before = countOpenFds();
        {
            std::vector<UniqueFd> files;
            std::vector<int> raw;
            for (int i = 0; i < c.fds; ++i) {
                files.push_back(makeFile());
                raw.push_back(files.back().get());
            }
            ASSERT_EQ(rawSend(tx, c.bytes, raw), 0);
        }
        ChannelMessage got;
        got.seq = 99;
        EXPECT_EQ(recvChannelMessage(rx.borrow(), got), c.error);
        EXPECT_EQ(got.seq, 99U); // untouched
        EXPECT_EQ(countOpenFds(), before);
        // Pure decoding agrees.
        ChannelMessage pure;
        EXPECT_EQ(decodeChannelMessage(c.bytes, static_cast<std::size_t>(c.fds), pure), c.error);
    }
}

TEST(Channel, OversizedDatagramIsTruncatedAndRefused)
{
    auto [tx, rx] = makePair();
    const int before = countOpenFds();
    {
        std::vector<std::byte> big = header(6, kChannelMaxBody + 1);
        big.resize(kChannelHeaderSize + kChannelMaxBody + 1);
        const UniqueFd file = makeFile();
        const std::array<int, 1> raw{file.get()};
        ASSERT_EQ(rawSend(tx, big, raw), 0);
    }
    ChannelMessage got;
    EXPECT_EQ(recvChannelMessage(rx.borrow(), got), -EBADMSG);
    EXPECT_EQ(countOpenFds(), before);
}

// A state fd that is not a sealed memfd of the announced size.
TEST(Channel, StateFdMustBeASealedMemfdOfTheAnnouncedSize)
{
    const std::vector<std::byte> state(100, std::byte{1});
    auto unsealed = [&] {
        UniqueFd fd(::memfd_create("x", MFD_CLOEXEC | MFD_ALLOW_SEALING));
        EXPECT_EQ(::write(fd.get(), state.data(), state.size()), 100);
        return fd;
    };
    auto partlySealed = [&] {
        UniqueFd fd = unsealed();
        EXPECT_EQ(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
        return fd;
    };
    auto sealed = [&] {
        UniqueFd fd;
        EXPECT_EQ(createStateMemfd(state, fd), 0);
        return fd;
    };
    auto socketFd = [] {
        std::array<int, 2> sv{};
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv.data()), 0);
        ::close(sv[1]);
        return UniqueFd(sv[0]);
    };
    struct Case {
        const char *name;
        UniqueFd fd;
        std::uint64_t size;
    };
    std::vector<Case> cases;
    cases.push_back({"socket", socketFd(), 100});
    cases.push_back({"unsealed memfd", unsealed(), 100});
    cases.push_back({"partly sealed memfd", partlySealed(), 100});
    cases.push_back({"plain file", makeFile(), 0});
    cases.push_back({"size mismatch", sealed(), 99});
    for (Case &c : cases) {
        SCOPED_TRACE(c.name);
        auto [tx, rx] = makePair();
        // The encoder does not inspect fds: a worker may send anything.
        ChannelMessage m;
        m.type = ChannelType::Handoff;
        m.stateFlags = kChannelStateMemfd;
        m.stateSize = c.size;
        m.fds.push_back(makeFile());
        m.fds.push_back(std::move(c.fd));
        ASSERT_EQ(sendChannelMessage(tx.borrow(), m), 0);
        m.fds.clear();
        const int before = countOpenFds();
        ChannelMessage got;
        EXPECT_EQ(recvChannelMessage(rx.borrow(), got), -EBADFD);
        EXPECT_EQ(countOpenFds(), before);
    }
}

// At RLIMIT_NOFILE the message arrives whole but without its fds: -EMFILE,
// the message given (so that the receiver can answer it), nothing leaked.
TEST(Channel, ControlTruncationAtTheLimitIsEmfileWithTheMessageAndLeaksNothing)
{
    auto [tx, rx] = makePair();
    {
        ChannelMessage m;
        m.type = ChannelType::Listeners;
        for (int i = 0; i < 8; ++i) {
            m.names.push_back("l" + std::to_string(i));
            m.fds.push_back(makeFile());
        }
        ASSERT_EQ(sendChannelMessage(tx.borrow(), m), 0);
    }
    const int before = countOpenFds();
    // Room for two of the eight fds: the kernel installs some and sets MSG_CTRUNC.
    const int lowestFree = ::fcntl(rx.get(), F_DUPFD_CLOEXEC, 0);
    ASSERT_GE(lowestFree, 0);
    ::close(lowestFree);
    rlimit saved{};
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
    rlimit low = saved;
    low.rlim_cur = static_cast<rlim_t>(lowestFree) + 2;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0) << errnoText(errno);
    ChannelMessage got;
    const int r = recvChannelMessage(rx.borrow(), got);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
    EXPECT_EQ(r, -EMFILE);
    EXPECT_EQ(got.type, ChannelType::Listeners);
    EXPECT_EQ(got.names.size(), 8U);
    EXPECT_TRUE(got.fds.empty());
    EXPECT_EQ(countOpenFds(), before);
}

TEST(Channel, NeverBlocks)
{
    auto [tx, rx] = makePair();
    // Blocking sockets too: the codec passes MSG_DONTWAIT itself.
    ASSERT_EQ(::fcntl(tx.get(), F_SETFL, 0), 0);
    ASSERT_EQ(::fcntl(rx.get(), F_SETFL, 0), 0);
    ChannelMessage got;
    EXPECT_EQ(recvChannelMessage(rx.borrow(), got), -EAGAIN);
    ChannelMessage m;
    m.type = ChannelType::Ready;
    m.text.assign(kChannelMaxText, 'x');
    int r = 0;
    int sent = 0;
    while ((r = sendChannelMessage(tx.borrow(), m)) == 0) {
        ++sent;
        ASSERT_LT(sent, 100000);
    }
    EXPECT_EQ(r, -EAGAIN);
    EXPECT_GT(sent, 0);
    ASSERT_EQ(recvChannelMessage(rx.borrow(), got), 0);
    EXPECT_EQ(got.text, m.text);
}

TEST(Channel, PeerClosedIsEconnreset)
{
    auto [tx, rx] = makePair();
    tx.reset();
    ChannelMessage got;
    EXPECT_EQ(recvChannelMessage(rx.borrow(), got), -ECONNRESET);
}

TEST(Channel, WhatAPeerSentBeforeClosingIsStillReadAfterItsReset)
{
    // The peer sends two messages, then closes with one of ours unread: the
    // kernel reports ECONNRESET first, the codec reads past it.
    auto [tx, rx] = makePair();
    ChannelMessage ours;
    ours.type = ChannelType::Drain;
    ASSERT_EQ(sendChannelMessage(rx.borrow(), ours), 0);
    for (const char *status : {"one", "two"}) {
        ChannelMessage ready;
        ready.type = ChannelType::Ready;
        ready.text = status;
        ASSERT_EQ(sendChannelMessage(tx.borrow(), ready), 0);
    }
    tx.reset();
    ChannelMessage got;
    ASSERT_EQ(recvChannelMessage(rx.borrow(), got), 0);
    EXPECT_EQ(got.text, "one");
    ASSERT_EQ(recvChannelMessage(rx.borrow(), got), 0);
    EXPECT_EQ(got.text, "two");
    EXPECT_EQ(recvChannelMessage(rx.borrow(), got), -ECONNRESET);
}

// The C API against a fake fdsupd built on the codec.
class ChannelApi : public ::testing::Test {
protected:
    void SetUp() override
    {
        auto [daemon, worker] = makePair();
        daemon_ = std::move(daemon);
        // As inherited: blocking, and the library must make it non-blocking.
        ASSERT_EQ(::fcntl(worker.get(), F_SETFL, 0), 0);
        workerFd_ = worker.release();
        ASSERT_EQ(::setenv(ACTIVATE_CHANNEL_ENV, std::to_string(workerFd_).c_str(), 1), 0);
    }
    void TearDown() override
    {
        activate_channel_close(ch_);
        daemon_.reset();
        ::unsetenv(ACTIVATE_CHANNEL_ENV);
    }

    ChannelMessage expectFromWorker(ChannelType type)
    {
        ChannelMessage m;
        EXPECT_EQ(recvChannelMessage(daemon_.borrow(), m), 0);
        EXPECT_EQ(m.type, type) << channelTypeName(m.type);
        return m;
    }
    void sendToWorker(ChannelMessage m)
    {
        m.seq = ++seq_;
        ASSERT_EQ(sendChannelMessage(daemon_.borrow(), m), 0);
    }
    void welcome()
    {
        ChannelMessage w;
        w.type = ChannelType::Welcome;
        w.capabilities = kChannelCapHandoff | kChannelCapAdopt;
        w.service = "web";
        w.instance = 2;
        w.generation = 5;
        w.maxInlineState = 1024;
        sendToWorker(std::move(w));
    }

    UniqueFd daemon_;
    int workerFd_ = -1;
    activate_channel *ch_ = nullptr;
    std::uint32_t seq_ = 0;
};

TEST_F(ChannelApi, OpenSendsHelloAndUnsetsTheEnvironment)
{
    ASSERT_EQ(activate_channel_open(&ch_, ACTIVATE_CAP_HANDOFF | ACTIVATE_CAP_ADOPT), 0);
    EXPECT_EQ(std::getenv(ACTIVATE_CHANNEL_ENV), nullptr);
    EXPECT_EQ(activate_channel_fd(ch_), workerFd_);
    EXPECT_NE(::fcntl(workerFd_, F_GETFL) & O_NONBLOCK, 0);
    EXPECT_NE(::fcntl(workerFd_, F_GETFD) & FD_CLOEXEC, 0);
    const auto hello = expectFromWorker(ChannelType::Hello);
    EXPECT_EQ(hello.seq, 1U);
    EXPECT_EQ(hello.minVersion, 1);
    EXPECT_EQ(hello.maxVersion, 1);
    EXPECT_EQ(hello.capabilities, kChannelCapHandoff | kChannelCapAdopt);
    activate_event ev{};
    EXPECT_EQ(activate_channel_process(ch_, &ev), -EAGAIN);
}

TEST_F(ChannelApi, OpenWithoutChannelIsEnoent)
{
    ASSERT_EQ(::unsetenv(ACTIVATE_CHANNEL_ENV), 0);
    EXPECT_EQ(activate_channel_open(&ch_, 0), -ENOENT);
    ::close(workerFd_);
}

TEST_F(ChannelApi, OpenRefusesWhatIsNotASeqpacketSocket)
{
    ::close(workerFd_);
    EXPECT_EQ(activate_channel_open(&ch_, 0), -EBADF);
    const UniqueFd file = makeFile();
    ASSERT_EQ(::setenv(ACTIVATE_CHANNEL_ENV, std::to_string(file.get()).c_str(), 1), 0);
    EXPECT_EQ(activate_channel_open(&ch_, 0), -ENOTSOCK);
    ASSERT_EQ(::setenv(ACTIVATE_CHANNEL_ENV, "3x", 1), 0);
    EXPECT_EQ(activate_channel_open(&ch_, 0), -EINVAL);
    EXPECT_EQ(ch_, nullptr);
}

// activate_channel_connect(): an external worker's channel, to a listening
// SEQPACKET socket (fdsupd's activation socket), bound as fdsupd binds it.
UniqueFd listenSeqpacket(const std::string &path)
{
    auto address = parseAddress("unix-seqpacket:" + path);
    EXPECT_TRUE(address) << address.error().message;
    auto bound = bindAll(*address, SocketOptions{});
    EXPECT_TRUE(bound) << bound.error().message;
    return bound ? std::move(bound->front()) : UniqueFd();
}

TEST(ChannelConnect, ConnectsSendsHelloAndLeavesNothingBehind)
{
    const int before = countOpenFds();
    const TempDir dir;
    const std::string path = (dir / "web.activation").string();
    UniqueFd listener = listenSeqpacket(path);
    ASSERT_TRUE(listener);

    activate_channel *ch = nullptr;
    ASSERT_EQ(activate_channel_connect(&ch, path.c_str(), ACTIVATE_CAP_LISTENERS | ACTIVATE_CAP_ADOPT), 0);
    const int fd = activate_channel_fd(ch);
    EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    UniqueFd daemon(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(daemon);
    ChannelMessage hello;
    ASSERT_EQ(recvChannelMessage(daemon.borrow(), hello), 0);
    EXPECT_EQ(hello.type, ChannelType::Hello);
    EXPECT_EQ(hello.seq, 1U);
    EXPECT_EQ(hello.capabilities, kChannelCapListeners | kChannelCapAdopt);
    // The library's requests need the capability offered, as with open().
    EXPECT_EQ(activate_channel_request_listeners(ch), 0);
    ChannelMessage request;
    ASSERT_EQ(recvChannelMessage(daemon.borrow(), request), 0);
    EXPECT_EQ(request.type, ChannelType::ListenersRequest);
    activate_channel_close(ch);
    daemon.reset();
    listener.reset();
    EXPECT_EQ(countOpenFds(), before);
}

TEST(ChannelConnect, ReportsWhyItCannotConnect)
{
    const int before = countOpenFds();
    const TempDir dir;
    activate_channel *ch = nullptr;
    EXPECT_EQ(activate_channel_connect(&ch, (dir / "missing").c_str(), 0), -ENOENT);
    EXPECT_EQ(activate_channel_connect(&ch, "", 0), -EINVAL);
    EXPECT_EQ(activate_channel_connect(&ch, nullptr, 0), -EINVAL);
    EXPECT_EQ(activate_channel_connect(nullptr, (dir / "x").c_str(), 0), -EINVAL);
    EXPECT_EQ(activate_channel_connect(&ch, (dir / "x").c_str(), 0x80), -EINVAL);
    EXPECT_EQ(activate_channel_connect(&ch, std::string(200, 'a').c_str(), 0), -EINVAL);
    // A socket file nobody listens on.
    const std::string path = (dir / "bound").string();
    UniqueFd bound(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    ASSERT_EQ(::bind(bound.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)), 0);
    EXPECT_EQ(activate_channel_connect(&ch, path.c_str(), 0), -ECONNREFUSED);
    // A stream socket listening there is the wrong kind.
    const std::string streamPath = (dir / "stream").string();
    auto streamAddress = parseAddress("unix:" + streamPath);
    ASSERT_TRUE(streamAddress);
    auto stream = bindAll(*streamAddress, SocketOptions{});
    ASSERT_TRUE(stream) << stream.error().message;
    EXPECT_EQ(activate_channel_connect(&ch, streamPath.c_str(), 0), -EPROTOTYPE);
    EXPECT_EQ(ch, nullptr);
    bound.reset();
    stream->clear();
    EXPECT_EQ(countOpenFds(), before);
}

TEST(ChannelConnect, ConnectsToAnAbstractSocket)
{
    const std::string name = "@fdsup-test-activation-" + std::to_string(::getpid());
    const UniqueFd listener = listenSeqpacket(name);
    ASSERT_TRUE(listener);
    activate_channel *ch = nullptr;
    ASSERT_EQ(activate_channel_connect(&ch, name.c_str(), 0), 0);
    UniqueFd daemon(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(daemon);
    ChannelMessage hello;
    EXPECT_EQ(recvChannelMessage(daemon.borrow(), hello), 0);
    activate_channel_close(ch);
}

TEST_F(ChannelApi, WelcomeReadyDrainHandoffDone)
{
    ASSERT_EQ(activate_channel_open(&ch_, ACTIVATE_CAP_HANDOFF | ACTIVATE_CAP_ADOPT), 0);
    (void)expectFromWorker(ChannelType::Hello);
    welcome();
    activate_event ev{};
    ASSERT_EQ(activate_channel_process(ch_, &ev), 0);
    ASSERT_EQ(ev.type, ACTIVATE_EVENT_WELCOME);
    EXPECT_EQ(ev.welcome.version, 1U);
    EXPECT_STREQ(ev.welcome.service, "web");
    EXPECT_EQ(ev.welcome.instance, 2U);
    EXPECT_EQ(ev.welcome.generation, 5U);
    EXPECT_EQ(ev.welcome.max_inline_state, 1024U);

    ASSERT_EQ(activate_channel_ready(ch_, "serving"), 0);
    EXPECT_EQ(expectFromWorker(ChannelType::Ready).text, "serving");
    EXPECT_EQ(activate_channel_request_listeners(ch_), -EOPNOTSUPP);

    ChannelMessage drain;
    drain.type = ChannelType::Drain;
    drain.deadlineUsec = 987654321;
    sendToWorker(std::move(drain));
    ASSERT_EQ(activate_channel_process(ch_, &ev), 0);
    ASSERT_EQ(ev.type, ACTIVATE_EVENT_DRAIN);
    EXPECT_EQ(ev.drain.deadline_usec, 987654321U);

    // A real connection with bytes already read: small state inline, large
    // state (over WELCOME's 1024) through a sealed memfd.
    Tcp tcp = makeTcp();
    const auto conn = fileId(tcp.server.borrow());
    ASSERT_EQ(activate_channel_handoff(ch_, tcp.server.get(), 77, "GET /", 5), 0);
    const std::string big(5000, 'b');
    ASSERT_EQ(activate_channel_handoff(ch_, tcp.server.get(), 78, big.data(), big.size()), 0);
    tcp.server.reset(); // the library did not take it; the messages hold their own references

    auto small = expectFromWorker(ChannelType::Handoff);
    EXPECT_EQ(small.id, 77U);
    EXPECT_EQ(small.stateFlags, 0U);
    EXPECT_EQ(small.state, bytesOf("GET /"));
    ASSERT_EQ(small.fds.size(), 1U);
    EXPECT_EQ(fileId(small.fds[0].borrow()), conn);
    auto large = expectFromWorker(ChannelType::Handoff);
    EXPECT_EQ(large.id, 78U);
    EXPECT_EQ(large.stateFlags, kChannelStateMemfd);
    ASSERT_EQ(large.fds.size(), 2U);
    std::vector<std::byte> state;
    ASSERT_EQ(readStateMemfd(large.fds[1].borrow(), large.stateSize, state), 0);
    EXPECT_EQ(state, bytesOf(big));

    // The connection still works end to end through the handed-over fd.
    ASSERT_EQ(::write(tcp.client.get(), "x", 1), 1);
    char c = 0;
    ASSERT_EQ(::read(small.fds[0].get(), &c, 1), 1);
    EXPECT_EQ(c, 'x');

    ChannelMessage result;
    result.type = ChannelType::HandoffResult;
    result.id = 78;
    result.code = EXFULL;
    result.text = "held connections limit";
    sendToWorker(std::move(result));
    ASSERT_EQ(activate_channel_process(ch_, &ev), 0);
    ASSERT_EQ(ev.type, ACTIVATE_EVENT_HANDOFF_RESULT);
    EXPECT_EQ(ev.handoff_result.id, 78U);
    EXPECT_EQ(ev.handoff_result.error, EXFULL);
    EXPECT_STREQ(ev.handoff_result.reason, "held connections limit");

    ASSERT_EQ(activate_channel_done(ch_), 0);
    const auto done = expectFromWorker(ChannelType::Done);
    EXPECT_EQ(done.seq, 5U); // HELLO, READY, HANDOFF, HANDOFF, DONE
}

TEST_F(ChannelApi, AdoptDeliversFdAndStateInline)
{
    ASSERT_EQ(activate_channel_open(&ch_, ACTIVATE_CAP_ADOPT), 0);
    Tcp tcp = makeTcp();
    const auto conn = fileId(tcp.server.borrow());
    ChannelMessage adopt;
    adopt.type = ChannelType::Adopt;
    adopt.id = 9;
    adopt.state = bytesOf("partial");
    adopt.stateSize = adopt.state.size();
    adopt.fds.push_back(std::move(tcp.server));
    sendToWorker(std::move(adopt));
    activate_event ev{};
    ASSERT_EQ(activate_channel_process(ch_, &ev), 0);
    ASSERT_EQ(ev.type, ACTIVATE_EVENT_ADOPT);
    activate::Fd fd(ev.adopt.fd);
    EXPECT_EQ(fileId(BorrowedFd(fd.get())), conn);
    EXPECT_EQ(ev.adopt.id, 9U);
    EXPECT_EQ(std::string(static_cast<const char *>(ev.adopt.state), ev.adopt.state_size), "partial");
}

TEST_F(ChannelApi, AdoptDeliversStateFromMemfd)
{
    ASSERT_EQ(activate_channel_open(&ch_, ACTIVATE_CAP_ADOPT), 0);
    Tcp tcp = makeTcp();
    const auto conn = fileId(tcp.server.borrow());
    const std::string big(100000, 's');
    ChannelMessage adopt;
    adopt.type = ChannelType::Adopt;
    adopt.id = 10;
    adopt.stateFlags = kChannelStateMemfd;
    adopt.stateSize = big.size();
    adopt.fds.push_back(std::move(tcp.server));
    UniqueFd memfd;
    ASSERT_EQ(createStateMemfd(bytesOf(big), memfd), 0);
    adopt.fds.push_back(std::move(memfd));
    sendToWorker(std::move(adopt));
    activate_event ev{};
    ASSERT_EQ(activate_channel_process(ch_, &ev), 0);
    ASSERT_EQ(ev.type, ACTIVATE_EVENT_ADOPT);
    activate::Fd fd(ev.adopt.fd);
    EXPECT_EQ(fileId(BorrowedFd(fd.get())), conn);
    EXPECT_EQ(std::string(static_cast<const char *>(ev.adopt.state), ev.adopt.state_size), big);
}

TEST_F(ChannelApi, ListenersAreTheCallers)
{
    ASSERT_EQ(activate_channel_open(&ch_, ACTIVATE_CAP_LISTENERS), 0);
    ASSERT_EQ(activate_channel_request_listeners(ch_), 0);
    (void)expectFromWorker(ChannelType::Hello);
    (void)expectFromWorker(ChannelType::ListenersRequest);
    UniqueFd l1 = makeFile();
    const auto id1 = fileId(l1.borrow());
    ChannelMessage listeners;
    listeners.type = ChannelType::Listeners;
    listeners.names = {"web"};
    listeners.fds.push_back(std::move(l1));
    sendToWorker(std::move(listeners));
    activate_event ev{};
    ASSERT_EQ(activate_channel_process(ch_, &ev), 0);
    ASSERT_EQ(ev.type, ACTIVATE_EVENT_LISTENERS);
    ASSERT_EQ(ev.listeners.count, 1U);
    activate::Fd fd(ev.listeners.fds[0]);
    EXPECT_STREQ(ev.listeners.names[0], "web");
    EXPECT_EQ(fileId(BorrowedFd(fd.get())), id1);
}

TEST_F(ChannelApi, ErrorEndsTheChannel)
{
    ASSERT_EQ(activate_channel_open(&ch_, ACTIVATE_CAP_HANDOFF), 0);
    ChannelMessage reject;
    reject.type = ChannelType::Reject;
    reject.code = EPROTONOSUPPORT;
    reject.text = "no common version";
    sendToWorker(std::move(reject));
    activate_event ev{};
    ASSERT_EQ(activate_channel_process(ch_, &ev), 0);
    ASSERT_EQ(ev.type, ACTIVATE_EVENT_ERROR);
    EXPECT_EQ(ev.error.error, EPROTONOSUPPORT);
    EXPECT_STREQ(ev.error.reason, "no common version");
    EXPECT_EQ(activate_channel_process(ch_, &ev), -ENOTCONN);
    EXPECT_EQ(activate_channel_ready(ch_, nullptr), -ENOTCONN);
    EXPECT_EQ(activate_channel_handoff(ch_, 0, 1, nullptr, 0), -ENOTCONN);
}

TEST_F(ChannelApi, MessageMeantForFdsupdIsRefused)
{
    ASSERT_EQ(activate_channel_open(&ch_, 0), 0);
    ChannelMessage hello;
    hello.type = ChannelType::Hello;
    sendToWorker(std::move(hello));
    activate_event ev{};
    EXPECT_EQ(activate_channel_process(ch_, &ev), -EBADMSG);
}

TEST_F(ChannelApi, CppLayerOwnsTheChannel)
{
    activate::Channel ch;
    ASSERT_EQ(activate::Channel::open(ch, ACTIVATE_CAP_HANDOFF), 0);
    EXPECT_TRUE(ch.isOpen());
    EXPECT_EQ(ch.fd(), workerFd_);
    EXPECT_EQ(ch.ready("up"), 0);
    (void)expectFromWorker(ChannelType::Hello);
    EXPECT_EQ(expectFromWorker(ChannelType::Ready).text, "up");
    activate::Channel moved = std::move(ch);
    EXPECT_FALSE(ch.isOpen()); // NOLINT(bugprone-use-after-move): the moved-from state is the contract
    EXPECT_TRUE(moved.isOpen());
}

} // namespace
} // namespace fdsup
