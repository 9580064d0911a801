// Unit tests for the SCM_RIGHTS transport: batching, wire format, and no fd leaked on any path.
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <future>
#include <span>
#include <string>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "common/result.hpp"
#include "core/scm.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using test::countOpenFds;
using test::fileId;
using test::FileId;

// Linux >= 6.5; older libc headers lack the name.
#ifndef SO_PASSPIDFD
constexpr int kSoPassPidfd = 76;
#else
constexpr int kSoPassPidfd = SO_PASSPIDFD;
#endif

// The frame header as documented at the top of scm.cpp, written out here on
// purpose rather than shared: these tests pin the wire format.
constexpr std::size_t kHeaderSize = 20;
constexpr std::uint8_t kFirst = 0x01;
constexpr std::uint8_t kLast = 0x02;

struct Frame {
    std::uint8_t magic = 0xFD;
    std::uint8_t version = 1;
    std::uint8_t flags = kFirst | kLast;
    std::uint8_t reserved1 = 0;
    std::uint32_t totalFds = 0;
    std::uint32_t totalPayload = 0;
    std::uint32_t payloadHere = 0;
    std::uint16_t fdsHere = 0;
    std::uint16_t reserved2 = 0;
};

void putBe(std::vector<std::byte> &out, std::uint64_t value, int bytes)
{
    for (int i = bytes - 1; i >= 0; --i) {
        out.push_back(std::byte((value >> (8 * i)) & 0xFF));
    }
}

std::vector<std::byte> encode(const Frame &frame)
{
    std::vector<std::byte> out;
    putBe(out, frame.magic, 1);
    putBe(out, frame.version, 1);
    putBe(out, frame.flags, 1);
    putBe(out, frame.reserved1, 1);
    putBe(out, frame.totalFds, 4);
    putBe(out, frame.totalPayload, 4);
    putBe(out, frame.payloadHere, 4);
    putBe(out, frame.fdsHere, 2);
    putBe(out, frame.reserved2, 2);
    return out;
}

std::vector<std::byte> pattern(std::size_t size, unsigned seed = 0)
{
    std::vector<std::byte> bytes(size);
    for (std::size_t i = 0; i < size; ++i) {
        bytes[i] = std::byte((i * 131 + std::size_t{seed} * 7 + (i >> 8)) & 0xFF);
    }
    return bytes;
}

// A frame header followed by payloadBytes bytes of payload.
std::vector<std::byte> datagram(const Frame &frame, std::size_t payloadBytes)
{
    std::vector<std::byte> bytes = encode(frame);
    const std::vector<std::byte> payload = pattern(payloadBytes);
    bytes.insert(bytes.end(), payload.begin(), payload.end());
    return bytes;
}

// One sendmsg() with whatever bytes and fds a test wants, bypassing sendFds.
int rawSend(const UniqueFd &sock, std::span<const std::byte> bytes, std::span<const int> fds)
{
    iovec iov{const_cast<std::byte *>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<std::byte> control;
    if (!fds.empty()) {
        control.resize(CMSG_SPACE(fds.size() * sizeof(int)));
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        if (cmsg == nullptr) {
            return -ENOBUFS;
        }
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
        std::memcpy(CMSG_DATA(cmsg), fds.data(), fds.size() * sizeof(int));
    }
    return sendmsg(sock.get(), &msg, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

struct SocketPair {
    UniqueFd sender;
    UniqueFd receiver;
};

SocketPair makePair(bool nonBlocking = false)
{
    int sv[2] = {-1, -1};
    const int type = SOCK_SEQPACKET | SOCK_CLOEXEC | (nonBlocking ? SOCK_NONBLOCK : 0);
    if (socketpair(AF_UNIX, type, 0, sv) != 0) {
        ADD_FAILURE() << "socketpair: " << errnoText(errno);
    }
    return SocketPair{UniqueFd(sv[0]), UniqueFd(sv[1])};
}

void setIntOption(const UniqueFd &sock, int option, int value)
{
    ASSERT_EQ(setsockopt(sock.get(), SOL_SOCKET, option, &value, sizeof(value)), 0) << errnoText(errno);
}

// n distinct files of several kinds (each its own inode, so identity and
// order can be proven with fileId), every one created CLOEXEC.
std::vector<UniqueFd> makeFiles(std::size_t n)
{
    std::vector<UniqueFd> fds;
    fds.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        int fd = -1;
        switch (i % 3) {
        case 0:
            fd = memfd_create("scm-test", MFD_CLOEXEC);
            break;
        case 1:
            fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            break;
        default: {
            int p[2] = {-1, -1};
            if (pipe2(p, O_CLOEXEC) == 0) {
                close(p[1]);
                fd = p[0];
            }
            break;
        }
        }
        if (fd < 0) {
            ADD_FAILURE() << "creating fd " << i << ": " << errnoText(errno);
            break;
        }
        fds.emplace_back(fd);
    }
    return fds;
}

std::vector<BorrowedFd> borrowAll(const std::vector<UniqueFd> &fds)
{
    std::vector<BorrowedFd> views;
    views.reserve(fds.size());
    for (const UniqueFd &fd : fds) {
        views.push_back(fd.borrow());
    }
    return views;
}

std::vector<int> rawFds(const std::vector<UniqueFd> &fds)
{
    std::vector<int> raw;
    raw.reserve(fds.size());
    for (const UniqueFd &fd : fds) {
        raw.push_back(fd.get());
    }
    return raw;
}

std::vector<FileId> idsOf(const std::vector<UniqueFd> &fds)
{
    std::vector<FileId> ids;
    ids.reserve(fds.size());
    for (const UniqueFd &fd : fds) {
        ids.push_back(fileId(fd.borrow()));
    }
    return ids;
}

bool isCloexec(const UniqueFd &fd)
{
    const int flags = fcntl(fd.get(), F_GETFD);
    return flags >= 0 && (flags & FD_CLOEXEC) != 0;
}

// The received message is exactly what was sent: the same payload bytes and
// the same files, in order, each with FD_CLOEXEC set.
void expectSame(const Message &got, std::span<const std::byte> payload, const std::vector<UniqueFd> &sent)
{
    EXPECT_TRUE(std::equal(got.payload.begin(), got.payload.end(), payload.begin(), payload.end()))
        << "payload differs: got " << got.payload.size() << " bytes, sent " << payload.size();
    ASSERT_EQ(got.fds.size(), sent.size());
    const std::vector<FileId> want = idsOf(sent);
    const std::vector<FileId> have = idsOf(got.fds);
    for (std::size_t i = 0; i < sent.size(); ++i) {
        ASSERT_EQ(have[i], want[i]) << "fd " << i << " is not the file that was sent in that position";
        ASSERT_TRUE(isCloexec(got.fds[i])) << "fd " << i << " arrived without FD_CLOEXEC";
    }
}

// Highest fd number open in this process.
int highestOpenFd()
{
    int highest = -1;
    DIR *dir = opendir("/proc/self/fd");
    if (dir == nullptr) {
        ADD_FAILURE() << "opendir /proc/self/fd: " << errnoText(errno);
        return highest;
    }
    const int own = dirfd(dir);
    // readdir() is only unsafe on a DIR shared between threads; this one is not.
    while (const dirent *entry = readdir(dir)) { // NOLINT(concurrency-mt-unsafe)
        if (entry->d_name[0] != '.') {
            const int fd = std::stoi(entry->d_name);
            if (fd != own) {
                highest = std::max(highest, fd);
            }
        }
    }
    closedir(dir);
    return highest;
}

// Every test leaves the descriptor table as it found it (checked for every
// test by the shared main()); that is how the error paths prove they closed
// every fd that arrived. Tests that change RLIMIT_NOFILE get it back here.
class ScmTest : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &savedLimit_), 0); }
    void TearDown() override { EXPECT_EQ(setrlimit(RLIMIT_NOFILE, &savedLimit_), 0) << errnoText(errno); }

    // Makes room for `needed` more descriptors (sender copies plus received
    // ones), raising the soft limit and, where permitted, the hard one.
    // Skips the test when the system does not allow that many.
    void requireFds(std::size_t needed)
    {
        const rlim_t want = static_cast<rlim_t>(countOpenFds()) + static_cast<rlim_t>(needed) + 64;
        rlimit limit = savedLimit_;
        if (limit.rlim_cur >= want) {
            return;
        }
        limit.rlim_cur = want;
        limit.rlim_max = std::max(limit.rlim_max, want);
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
            GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << savedLimit_.rlim_max << " is below the " << want
                         << " this test needs, and raising it failed: " << errnoText(errno);
        }
    }

    rlimit savedLimit_{};
};

// ---------------------------------------------------------------------------
// Round trips

struct RoundTripCase {
    std::size_t fds;
    std::size_t payload;
};

class ScmRoundTrip : public ScmTest, public ::testing::WithParamInterface<RoundTripCase> {};

TEST_P(ScmRoundTrip, FilesArriveInOrderWithPayload)
{
    const auto [nFds, nPayload] = GetParam();
    requireFds(2 * nFds);
    if (IsSkipped()) {
        return;
    }
    auto [sender, receiver] = makePair();
    const std::vector<UniqueFd> files = makeFiles(nFds);
    ASSERT_EQ(files.size(), nFds);
    const std::vector<BorrowedFd> views = borrowAll(files);
    const std::vector<std::byte> payload = pattern(nPayload, static_cast<unsigned>(nFds));

    // Concurrently: a large message does not fit in the socket buffer at once.
    auto sent =
        std::async(std::launch::async, [&, sock = sender.borrow()] { return sendFds(sock, payload, views); });
    Message got;
    const int r = recvFds(receiver.borrow(), got);
    ASSERT_EQ(sent.get(), 0);
    ASSERT_EQ(r, 0);
    expectSame(got, payload, files);
}

INSTANTIATE_TEST_SUITE_P(
    Counts, ScmRoundTrip,
    ::testing::Values(RoundTripCase{0, 0}, RoundTripCase{0, 1}, RoundTripCase{1, 0}, RoundTripCase{1, 100},
                      RoundTripCase{252, 7}, RoundTripCase{253, 64}, RoundTripCase{254, 64},
                      RoundTripCase{506, 0}, RoundTripCase{507, 3},
                      // payload alone spanning many datagrams
                      RoundTripCase{0, kMaxDatagramPayload}, RoundTripCase{0, kMaxDatagramPayload + 1},
                      RoundTripCase{3, kMaxMessagePayload}, RoundTripCase{2000, kMaxMessagePayload}),
    [](const ::testing::TestParamInfo<RoundTripCase> &p) {
        return std::to_string(p.param.fds) + "fds_" + std::to_string(p.param.payload) + "bytes";
    });

// The sender is another process, as in real use, so that each side holds
// only its own copies: 10,000 fds on each side fit where 20,000 in one
// process would not. The child sends the fstat identity of every fd in the
// payload, which proves order and identity on arrival.
TEST_F(ScmTest, TenThousandFdsFromAnotherProcess)
{
    constexpr std::size_t kCount = 10000;
    requireFds(kCount);
    if (IsSkipped()) {
        return;
    }
    auto [sender, receiver] = makePair();
    const pid_t child = fork();
    ASSERT_GE(child, 0) << errnoText(errno);
    if (child == 0) {
        // Only the fd table and memory are used here; no gtest machinery.
        receiver.reset();
        std::vector<UniqueFd> files = makeFiles(kCount);
        std::vector<std::byte> ids;
        for (const UniqueFd &fd : files) {
            const FileId id = fileId(fd.borrow());
            putBe(ids, id.dev, 8);
            putBe(ids, id.ino, 8);
        }
        const int r = files.size() == kCount ? sendFds(sender.borrow(), ids, borrowAll(files)) : -EMFILE;
        _exit(r == 0 ? 0 : std::min(-r, 255));
    }
    sender.reset(); // so that a child that dies early is ECONNRESET, not a hang

    Message got;
    const int r = recvFds(receiver.borrow(), got);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
    ASSERT_EQ(WEXITSTATUS(status), 0) << "child: " << errnoText(WEXITSTATUS(status));
    ASSERT_EQ(r, 0);
    ASSERT_EQ(got.fds.size(), kCount);
    ASSERT_EQ(got.payload.size(), kCount * 16);
    for (std::size_t i = 0; i < kCount; ++i) {
        std::uint64_t dev = 0;
        std::uint64_t ino = 0;
        for (std::size_t b = 0; b < 8; ++b) {
            dev = (dev << 8) | std::to_integer<std::uint64_t>(got.payload[i * 16 + b]);
            ino = (ino << 8) | std::to_integer<std::uint64_t>(got.payload[i * 16 + 8 + b]);
        }
        const FileId id = fileId(got.fds[i].borrow());
        ASSERT_EQ(id.dev, dev) << "fd " << i;
        ASSERT_EQ(id.ino, ino) << "fd " << i;
        ASSERT_TRUE(isCloexec(got.fds[i])) << "fd " << i;
    }
}

TEST_F(ScmTest, MessagesKeepTheirBoundaries)
{
    auto [sender, receiver] = makePair();
    const std::vector<UniqueFd> a = makeFiles(1);
    const std::vector<UniqueFd> b = makeFiles(300);
    const std::vector<UniqueFd> c;
    const auto pa = pattern(10, 1);
    const auto pb = pattern(100000, 2);
    const auto pc = pattern(5, 3);
    ASSERT_EQ(sendFds(sender.borrow(), pa, borrowAll(a)), 0);
    ASSERT_EQ(sendFds(sender.borrow(), pb, borrowAll(b)), 0);
    ASSERT_EQ(sendFds(sender.borrow(), pc, borrowAll(c)), 0);
    Message got;
    ASSERT_EQ(recvFds(receiver.borrow(), got), 0);
    expectSame(got, pa, a);
    ASSERT_EQ(recvFds(receiver.borrow(), got), 0);
    expectSame(got, pb, b);
    ASSERT_EQ(recvFds(receiver.borrow(), got), 0);
    expectSame(got, pc, c);
}

TEST_F(ScmTest, SmallSendBufferStillDeliversLargeMessages)
{
    auto [sender, receiver] = makePair();
    setIntOption(sender, SO_SNDBUF, 4096); // the kernel rounds up to its minimum
    const std::vector<UniqueFd> files = makeFiles(600);
    const std::vector<BorrowedFd> views = borrowAll(files);
    const auto payload = pattern(kMaxMessagePayload, 9);
    auto sent =
        std::async(std::launch::async, [&, sock = sender.borrow()] { return sendFds(sock, payload, views); });
    Message got;
    const int r = recvFds(receiver.borrow(), got);
    ASSERT_EQ(sent.get(), 0);
    ASSERT_EQ(r, 0);
    expectSame(got, payload, files);
}

TEST_F(ScmTest, SendingTheFirstFrameWritesTheDocumentedHeader)
{
    auto [sender, receiver] = makePair();
    const std::vector<UniqueFd> files = makeFiles(2);
    const auto payload = pattern(3);
    ASSERT_EQ(sendFds(sender.borrow(), payload, borrowAll(files)), 0);

    std::array<std::byte, 64> bytes{};
    alignas(cmsghdr) std::array<std::byte, CMSG_SPACE(2 * sizeof(int))> control{};
    iovec iov{bytes.data(), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    const ssize_t n = recvmsg(receiver.get(), &msg, MSG_CMSG_CLOEXEC);
    ASSERT_EQ(n, static_cast<ssize_t>(kHeaderSize + payload.size()));
    std::vector<UniqueFd> received;
    for (cmsghdr *c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd = -1;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            received.emplace_back(fd);
        }
    }
    EXPECT_EQ(received.size(), 2U);

    Frame want;
    want.totalFds = 2;
    want.totalPayload = 3;
    want.payloadHere = 3;
    want.fdsHere = 2;
    const std::vector<std::byte> header = encode(want);
    EXPECT_TRUE(std::equal(header.begin(), header.end(), bytes.begin()));
    EXPECT_TRUE(std::equal(payload.begin(), payload.end(), bytes.begin() + kHeaderSize));
}

TEST_F(ScmTest, HandCraftedMultiDatagramMessageIsAccepted)
{
    auto [sender, receiver] = makePair();
    const std::vector<UniqueFd> files = makeFiles(3);
    const std::array<int, 2> firstFds{files[0].get(), files[1].get()};
    const std::array<int, 1> secondFds{files[2].get()};
    ASSERT_EQ(
        rawSend(
            sender,
            datagram(Frame{.flags = kFirst, .totalFds = 3, .totalPayload = 5, .payloadHere = 2, .fdsHere = 2},
                     2),
            firstFds),
        0);
    ASSERT_EQ(
        rawSend(
            sender,
            datagram(Frame{.flags = kLast, .totalFds = 3, .totalPayload = 5, .payloadHere = 3, .fdsHere = 1},
                     3),
            secondFds),
        0);
    Message got;
    ASSERT_EQ(recvFds(receiver.borrow(), got), 0);
    ASSERT_EQ(got.fds.size(), 3U);
    EXPECT_EQ(idsOf(got.fds), idsOf(files));
    EXPECT_EQ(got.payload.size(), 5U);
}

TEST_F(ScmTest, SuccessReplacesThePreviousContentsOfOut)
{
    auto [sender, receiver] = makePair();
    Message got;
    got.payload = pattern(9);
    got.fds = makeFiles(2); // closed when replaced
    ASSERT_EQ(sendFds(sender.borrow(), {}, {}), 0);
    ASSERT_EQ(recvFds(receiver.borrow(), got), 0);
    EXPECT_TRUE(got.payload.empty());
    EXPECT_TRUE(got.fds.empty());
}

// ---------------------------------------------------------------------------
// Non-blocking behaviour

TEST_F(ScmTest, ReceivingFromAnEmptyNonBlockingSocketIsEagainAndLeavesOutAlone)
{
    auto [sender, receiver] = makePair(true);
    Message got;
    got.payload = pattern(4);
    got.fds = makeFiles(1);
    const FileId before = fileId(got.fds[0].borrow());
    EXPECT_EQ(recvFds(receiver.borrow(), got), -EAGAIN);
    EXPECT_EQ(got.payload, pattern(4));
    ASSERT_EQ(got.fds.size(), 1U);
    EXPECT_EQ(fileId(got.fds[0].borrow()), before);
}

TEST_F(ScmTest, FullSendBufferIsEagainWithNothingSentAndTheRetryArrivesIntact)
{
    auto [sender, receiver] = makePair(true);
    setIntOption(sender, SO_SNDBUF, 4096);
    const std::vector<UniqueFd> files = makeFiles(300); // two datagrams per message
    const std::vector<BorrowedFd> views = borrowAll(files);
    const auto payload = pattern(1000, 5);

    int sent = 0;
    int r = 0;
    while ((r = sendFds(sender.borrow(), payload, std::span(views).first(1))) == 0) {
        ++sent;
        ASSERT_LT(sent, 100000) << "the send buffer never filled";
    }
    ASSERT_EQ(r, -EAGAIN);
    ASSERT_GT(sent, 0);
    // The refused multi-datagram message left nothing half-sent behind.
    ASSERT_EQ(sendFds(sender.borrow(), payload, views), -EAGAIN);

    Message got;
    for (int i = 0; i < sent; ++i) {
        ASSERT_EQ(recvFds(receiver.borrow(), got), 0) << "message " << i;
        EXPECT_EQ(got.payload, payload);
        ASSERT_EQ(got.fds.size(), 1U);
        EXPECT_EQ(fileId(got.fds[0].borrow()), fileId(files[0].borrow()));
    }
    EXPECT_EQ(recvFds(receiver.borrow(), got), -EAGAIN) << "a refused send left a datagram behind";

    // The same message again, now that there is room. Its continuation does
    // not fit at once: the sender waits in poll while this thread drains.
    const auto big = pattern(64000, 6);
    auto later =
        std::async(std::launch::async, [&, sock = sender.borrow()] { return sendFds(sock, big, views); });
    int rr = -EAGAIN;
    while (rr == -EAGAIN) {
        pollfd pfd{receiver.get(), POLLIN, 0};
        ASSERT_EQ(poll(&pfd, 1, 10000), 1);
        rr = recvFds(receiver.borrow(), got);
    }
    ASSERT_EQ(later.get(), 0);
    ASSERT_EQ(rr, 0);
    expectSame(got, big, files);
}

// ---------------------------------------------------------------------------
// Refusals by the sender

TEST_F(ScmTest, OversizedMessagesAreRefusedBeforeSending)
{
    auto [sender, receiver] = makePair(true);
    const std::vector<std::byte> tooBig(kMaxMessagePayload + 1);
    EXPECT_EQ(sendFds(sender.borrow(), tooBig, {}), -EMSGSIZE);
    const std::vector<BorrowedFd> tooMany(kMaxMessageFds + 1, BorrowedFd(0));
    EXPECT_EQ(sendFds(sender.borrow(), {}, tooMany), -EMSGSIZE);
    Message got;
    EXPECT_EQ(recvFds(receiver.borrow(), got), -EAGAIN);
}

TEST_F(ScmTest, AnInvalidFdInALaterBatchIsRefusedBeforeSending)
{
    auto [sender, receiver] = makePair(true);
    const std::vector<UniqueFd> files = makeFiles(300);
    std::vector<BorrowedFd> views = borrowAll(files);
    views[280] = BorrowedFd(highestOpenFd() + 1000); // not open
    EXPECT_EQ(sendFds(sender.borrow(), {}, views), -EBADF);
    views[280] = BorrowedFd();
    EXPECT_EQ(sendFds(sender.borrow(), {}, views), -EBADF);
    Message got;
    EXPECT_EQ(recvFds(receiver.borrow(), got), -EAGAIN) << "part of a refused message was sent";
}

TEST_F(ScmTest, SendingToAClosedPeerIsEpipeWithoutSigpipe)
{
    auto [sender, receiver] = makePair();
    receiver.reset();
    const auto payload = pattern(10);
    EXPECT_EQ(sendFds(sender.borrow(), payload, {}), -EPIPE); // SIGPIPE would have killed the test
}

TEST_F(ScmTest, NotASocketIsRefused)
{
    const std::vector<UniqueFd> files = makeFiles(1); // a memfd
    EXPECT_EQ(sendFds(files[0].borrow(), {}, {}), -ENOTSOCK);
    Message got;
    EXPECT_EQ(recvFds(files[0].borrow(), got), -ENOTSOCK);
}

// ---------------------------------------------------------------------------
// Receiver error paths: each must close every fd that arrived.

TEST_F(ScmTest, PeerClosedIsEconnreset)
{
    auto [sender, receiver] = makePair();
    sender.reset();
    Message got;
    EXPECT_EQ(recvFds(receiver.borrow(), got), -ECONNRESET);
}

struct BadFrameCase {
    const char *name;
    Frame frame;
    std::size_t payloadBytes; // actually sent after the header
    std::size_t fds;          // actually attached
};

class ScmBadFrame : public ScmTest, public ::testing::WithParamInterface<BadFrameCase> {};

TEST_P(ScmBadFrame, IsEbadmsgAndClosesEveryFd)
{
    const BadFrameCase &c = GetParam();
    auto [sender, receiver] = makePair();
    {
        const std::vector<UniqueFd> files = makeFiles(c.fds);
        const std::vector<int> raw = rawFds(files);
        ASSERT_EQ(rawSend(sender, datagram(c.frame, c.payloadBytes), raw), 0);
    } // only the in-flight copies remain
    sender.reset();
    Message got;
    EXPECT_EQ(recvFds(receiver.borrow(), got), -EBADMSG);
    EXPECT_TRUE(got.fds.empty());
}

constexpr Frame kTwoFds{.totalFds = 2, .totalPayload = 4, .payloadHere = 4, .fdsHere = 2};

constexpr Frame with(Frame frame, auto &&change)
{
    change(frame);
    return frame;
}

constexpr BadFrameCase kBadFrames[] = {
    {"MoreFdsThanTheHeaderSays", kTwoFds, 4, 3},
    {"FewerFdsThanTheHeaderSays", kTwoFds, 4, 1},
    {"BadMagic", with(kTwoFds, [](Frame &f) { f.magic = 0xFE; }), 4, 2},
    {"UnknownVersion", with(kTwoFds, [](Frame &f) { f.version = 2; }), 4, 2},
    {"UnknownFlag", with(kTwoFds, [](Frame &f) { f.flags |= 0x04; }), 4, 2},
    {"ReservedByteSet", with(kTwoFds, [](Frame &f) { f.reserved1 = 1; }), 4, 2},
    {"ReservedWordSet", with(kTwoFds, [](Frame &f) { f.reserved2 = 1; }), 4, 2},
    {"ContinuationFirst", with(kTwoFds, [](Frame &f) { f.flags = kLast; }), 4, 2},
    {"PayloadShorterThanTheHeaderSays", kTwoFds, 3, 2},
    {"PayloadLongerThanTheHeaderSays", kTwoFds, 5, 2},
    {"LastButFdsMissing", with(kTwoFds, [](Frame &f) { f.totalFds = 5; }), 4, 2},
    {"LastButPayloadMissing", with(kTwoFds, [](Frame &f) { f.totalPayload = 9; }), 4, 2},
    {"CompleteButNotLast", with(kTwoFds, [](Frame &f) { f.flags = kFirst; }), 4, 2},
    {"MoreFdsHereThanTotal", with(kTwoFds, [](Frame &f) { f.totalFds = 1; }), 4, 2},
    {"MoreFdsThanABatch",
     with(kTwoFds,
          [](Frame &f) {
              f.fdsHere = 254;
              f.totalFds = 254;
          }),
     4, 2},
    {"TotalFdsOverTheLimit",
     with(kTwoFds, [](Frame &f) { f.totalFds = static_cast<std::uint32_t>(kMaxMessageFds + 1); }), 4, 2},
    {"TotalPayloadOverTheLimit",
     with(kTwoFds, [](Frame &f) { f.totalPayload = static_cast<std::uint32_t>(kMaxMessagePayload + 1); }), 4,
     2},
};

INSTANTIATE_TEST_SUITE_P(Frames, ScmBadFrame, ::testing::ValuesIn(kBadFrames),
                         [](const ::testing::TestParamInfo<BadFrameCase> &p) { return p.param.name; });

TEST_F(ScmTest, DatagramShorterThanAHeaderIsEbadmsg)
{
    auto [sender, receiver] = makePair();
    {
        const std::vector<UniqueFd> files = makeFiles(2);
        const std::array<int, 2> raw{files[0].get(), files[1].get()};
        std::vector<std::byte> bytes = encode(kTwoFds);
        bytes.resize(5);
        ASSERT_EQ(rawSend(sender, bytes, raw), 0);
    }
    Message got;
    EXPECT_EQ(recvFds(receiver.borrow(), got), -EBADMSG);
}

TEST_F(ScmTest, DatagramLargerThanTheFormatAllowsIsTruncatedAndEbadmsg)
{
    auto [sender, receiver] = makePair();
    {
        const std::vector<UniqueFd> files = makeFiles(3);
        const std::array<int, 3> raw{files[0].get(), files[1].get(), files[2].get()};
        const std::size_t size = kMaxDatagramPayload + 1;
        ASSERT_EQ(rawSend(sender,
                          datagram(Frame{.totalFds = 3,
                                         .totalPayload = static_cast<std::uint32_t>(size),
                                         .payloadHere = static_cast<std::uint32_t>(size),
                                         .fdsHere = 3},
                                   size),
                          raw),
                  0);
    }
    Message got;
    EXPECT_EQ(recvFds(receiver.borrow(), got), -EBADMSG); // MSG_TRUNC
    // The next message is unaffected: the truncated datagram was consumed whole.
    ASSERT_EQ(sendFds(sender.borrow(), pattern(2), {}), 0);
    ASSERT_EQ(recvFds(receiver.borrow(), got), 0);
    EXPECT_EQ(got.payload, pattern(2));
}

TEST_F(ScmTest, ControlTruncationAtTheFdLimitIsEbadmsgAndClosesWhatArrived)
{
    auto [sender, receiver] = makePair();
    const std::vector<UniqueFd> files = makeFiles(kMaxFdsPerDatagram);
    ASSERT_EQ(sendFds(sender.borrow(), {}, borrowAll(files)), 0);

    // Leave the receiver room for only a few of the fds (whatever gaps the
    // table has plus two), so the kernel installs some and sets MSG_CTRUNC.
    const int highest = highestOpenFd();
    const int before = countOpenFds();
    const int freeSlots = highest + 1 - before + 2;
    ASSERT_LT(freeSlots, static_cast<int>(kMaxFdsPerDatagram));
    rlimit low = savedLimit_;
    low.rlim_cur = static_cast<rlim_t>(highest) + 3;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0) << errnoText(errno);
    Message got;
    const int r = recvFds(receiver.borrow(), got);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &savedLimit_), 0);
    EXPECT_EQ(r, -EBADMSG);
    EXPECT_EQ(countOpenFds(), before);
}

TEST_F(ScmTest, ControlTruncationWithNoFdInstalledIsStillEbadmsg)
{
    auto [sender, receiver] = makePair();
    {
        // The header claims no fds, so only MSG_CTRUNC tells that some were dropped.
        const std::vector<UniqueFd> files = makeFiles(3);
        const std::array<int, 3> raw{files[0].get(), files[1].get(), files[2].get()};
        ASSERT_EQ(rawSend(sender, datagram(Frame{}, 0), raw), 0);
    }
    // A limit at the lowest free fd number leaves the receiver no slot at all.
    const int lowestFree = fcntl(receiver.get(), F_DUPFD_CLOEXEC, 0);
    ASSERT_GE(lowestFree, 0);
    close(lowestFree);
    rlimit low = savedLimit_;
    low.rlim_cur = static_cast<rlim_t>(lowestFree);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0) << errnoText(errno);
    Message got;
    const int r = recvFds(receiver.borrow(), got);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &savedLimit_), 0);
    EXPECT_EQ(r, -EBADMSG);
}

TEST_F(ScmTest, PeerClosingMidMessageIsEconnresetAndClosesEveryFd)
{
    auto [sender, receiver] = makePair();
    {
        const std::vector<UniqueFd> files = makeFiles(kMaxFdsPerDatagram);
        const std::vector<int> raw = rawFds(files);
        ASSERT_EQ(
            rawSend(sender,
                    datagram(Frame{.flags = kFirst, .totalFds = 300, .payloadHere = 0, .fdsHere = 253}, 0),
                    raw),
            0);
    }
    sender.reset();
    Message got;
    EXPECT_EQ(recvFds(receiver.borrow(), got), -ECONNRESET);
}

// Two datagrams: a valid first one with fds, then a broken continuation.
void expectBrokenContinuation(Frame second, std::size_t secondPayload, std::size_t secondFds)
{
    auto [sender, receiver] = makePair();
    {
        const std::vector<UniqueFd> files = makeFiles(10 + secondFds);
        const std::vector<int> raw = rawFds(files);
        ASSERT_EQ(
            rawSend(
                sender,
                datagram(
                    Frame{
                        .flags = kFirst, .totalFds = 20, .totalPayload = 8, .payloadHere = 4, .fdsHere = 10},
                    4),
                std::span(raw).first(10)),
            0);
        ASSERT_EQ(rawSend(sender, datagram(second, secondPayload), std::span(raw).subspan(10)), 0);
    }
    Message got;
    EXPECT_EQ(recvFds(receiver.borrow(), got), -EBADMSG);
    EXPECT_TRUE(got.fds.empty());
}

constexpr Frame kGoodSecond{
    .flags = kLast, .totalFds = 20, .totalPayload = 8, .payloadHere = 4, .fdsHere = 10};

TEST_F(ScmTest, ContinuationWithOtherTotalsIsEbadmsg)
{
    expectBrokenContinuation(with(kGoodSecond, [](Frame &f) { f.totalFds = 21; }), 4, 10);
    expectBrokenContinuation(with(kGoodSecond, [](Frame &f) { f.totalPayload = 9; }), 4, 10);
}

TEST_F(ScmTest, ANewMessageWhereAContinuationBelongsIsEbadmsg)
{
    expectBrokenContinuation(with(kGoodSecond, [](Frame &f) { f.flags = kFirst | kLast; }), 4, 10);
}

TEST_F(ScmTest, ContinuationCountMismatchIsEbadmsg)
{
    expectBrokenContinuation(kGoodSecond, 4, 9);
    expectBrokenContinuation(kGoodSecond, 4, 11);
    expectBrokenContinuation(kGoodSecond, 3, 10);
}

// Each datagram's count must match its own header, not just the sum: an fd
// that slipped into the wrong datagram means the frames cannot be trusted.
TEST_F(ScmTest, FdsShiftedBetweenDatagramsAreEbadmsg)
{
    auto [sender, receiver] = makePair();
    {
        const std::vector<UniqueFd> files = makeFiles(20);
        const std::vector<int> raw = rawFds(files);
        ASSERT_EQ(rawSend(sender, datagram(Frame{.flags = kFirst, .totalFds = 20, .fdsHere = 10}, 0),
                          std::span(raw).first(11)),
                  0);
        // Consistent on its own; only the first datagram's count is off.
        ASSERT_EQ(rawSend(sender, datagram(Frame{.flags = kLast, .totalFds = 20, .fdsHere = 9}, 0),
                          std::span(raw).subspan(11)),
                  0);
    }
    Message got;
    EXPECT_EQ(recvFds(receiver.borrow(), got), -EBADMSG);
}

TEST_F(ScmTest, ContinuationWithoutProgressIsEbadmsg)
{
    expectBrokenContinuation(with(kGoodSecond,
                                  [](Frame &f) {
                                      f.flags = 0;
                                      f.payloadHere = 0;
                                      f.fdsHere = 0;
                                  }),
                             0, 0);
}

TEST_F(ScmTest, ContinuationOverTheTotalIsEbadmsg)
{
    expectBrokenContinuation(with(kGoodSecond, [](Frame &f) { f.fdsHere = 11; }), 4, 11);
}

TEST_F(ScmTest, UnexpectedCmsgIsEbadmsgAndClosesTheFds)
{
    auto [sender, receiver] = makePair();
    setIntOption(receiver, SO_TIMESTAMP, 1); // AF_UNIX delivers SCM_TIMESTAMP with every datagram
    const std::vector<UniqueFd> files = makeFiles(5);
    ASSERT_EQ(sendFds(sender.borrow(), pattern(3), borrowAll(files)), 0);
    Message got;
    EXPECT_EQ(recvFds(receiver.borrow(), got), -EBADMSG);
}

TEST_F(ScmTest, PidfdCmsgIsEbadmsgAndThePidfdIsClosed)
{
    auto [sender, receiver] = makePair();
    const int on = 1;
    if (setsockopt(receiver.get(), SOL_SOCKET, kSoPassPidfd, &on, sizeof(on)) != 0) {
        GTEST_SKIP() << "SO_PASSPIDFD not supported: " << errnoText(errno);
    }
    const std::vector<UniqueFd> files = makeFiles(2);
    ASSERT_EQ(sendFds(sender.borrow(), {}, borrowAll(files)), 0);
    Message got;
    EXPECT_EQ(recvFds(receiver.borrow(), got), -EBADMSG);
}

TEST_F(ScmTest, StalledContinuationTimesOutAndClosesEveryFd)
{
    auto [sender, receiver] = makePair();
    {
        const std::vector<UniqueFd> files = makeFiles(4);
        const std::array<int, 4> raw{files[0].get(), files[1].get(), files[2].get(), files[3].get()};
        ASSERT_EQ(rawSend(sender,
                          datagram(Frame{.flags = kFirst, .totalFds = 8, .payloadHere = 0, .fdsHere = 4}, 0),
                          raw),
                  0);
    }
    // The sender stays connected but never sends the rest: the receiver
    // gives up after kContinuationTimeout.
    const auto start = std::chrono::steady_clock::now();
    Message got;
    EXPECT_EQ(recvFds(receiver.borrow(), got), -ETIMEDOUT);
    EXPECT_GE(std::chrono::steady_clock::now() - start, kContinuationTimeout);
}

// ---------------------------------------------------------------------------
// Credentials

TEST_F(ScmTest, PasscredDoesNotBreakReceiving)
{
    auto [sender, receiver] = makePair();
    setIntOption(receiver, SO_PASSCRED, 1);
    for (const std::size_t n : {std::size_t{0}, std::size_t{1}, kMaxFdsPerDatagram, kMaxFdsPerDatagram + 1}) {
        const std::vector<UniqueFd> files = makeFiles(n);
        const auto payload = pattern(n + 1, 4);
        ASSERT_EQ(sendFds(sender.borrow(), payload, borrowAll(files)), 0) << n;
        Message got;
        ASSERT_EQ(recvFds(receiver.borrow(), got), 0) << n;
        expectSame(got, payload, files);
    }
}

TEST_F(ScmTest, ExplicitCredentialsWithFullBatchDoNotTruncate)
{
    auto [sender, receiver] = makePair();
    setIntOption(receiver, SO_PASSCRED, 1);
    const std::vector<UniqueFd> files = makeFiles(kMaxFdsPerDatagram);
    {
        // What a peer that sends its credentials explicitly produces: both
        // cmsgs in one datagram.
        const std::vector<std::byte> bytes = datagram(
            Frame{.totalFds = kMaxFdsPerDatagram, .payloadHere = 0, .fdsHere = kMaxFdsPerDatagram}, 0);
        iovec iov{const_cast<std::byte *>(bytes.data()), bytes.size()};
        alignas(cmsghdr)
            std::array<std::byte, CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(kMaxFdsPerDatagram * sizeof(int))>
                control{};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr *cred = CMSG_FIRSTHDR(&msg);
        ASSERT_NE(cred, nullptr);
        cred->cmsg_level = SOL_SOCKET;
        cred->cmsg_type = SCM_CREDENTIALS;
        cred->cmsg_len = CMSG_LEN(sizeof(ucred));
        const ucred me{getpid(), getuid(), getgid()};
        std::memcpy(CMSG_DATA(cred), &me, sizeof(me));
        cmsghdr *rights = CMSG_NXTHDR(&msg, cred);
        ASSERT_NE(rights, nullptr);
        rights->cmsg_level = SOL_SOCKET;
        rights->cmsg_type = SCM_RIGHTS;
        rights->cmsg_len = CMSG_LEN(kMaxFdsPerDatagram * sizeof(int));
        for (std::size_t i = 0; i < files.size(); ++i) {
            const int fd = files[i].get();
            std::memcpy(CMSG_DATA(rights) + i * sizeof(int), &fd, sizeof(int));
        }
        ASSERT_GE(sendmsg(sender.get(), &msg, MSG_NOSIGNAL), 0) << errnoText(errno);
    }
    Message got;
    ASSERT_EQ(recvFds(receiver.borrow(), got), 0);
    expectSame(got, {}, files);
}

// ---------------------------------------------------------------------------
// recvWithFds: the primitive under recvDatagram() and the sd_notify server.
// It judges nothing; every test checks what it reports and that the fds it
// took are the caller's to close (the fixture counts /proc/self/fd).

struct Received {
    ssize_t size = 0;
    std::vector<UniqueFd> fds;
    DatagramInfo info;
};

Received receiveWithFds(const UniqueFd &sock, std::size_t bufferSize, std::size_t maxFds, int flags = 0)
{
    Received got;
    std::vector<std::byte> buffer(bufferSize);
    got.size = recvWithFds(sock.borrow(), flags, buffer, maxFds, got.fds, got.info);
    return got;
}

TEST_F(ScmTest, RecvWithFdsReportsCredentialsAndTheFdsInOrder)
{
    auto [sender, receiver] = makePair();
    setIntOption(receiver, SO_PASSCRED, 1);
    const std::vector<UniqueFd> files = makeFiles(3);
    ASSERT_EQ(sendDatagram(sender.borrow(), pattern(7), borrowAll(files), 0), 0);

    const Received got = receiveWithFds(receiver, 64, kMaxFdsPerDatagram);
    ASSERT_EQ(got.size, 7);
    ASSERT_TRUE(got.info.credentials.has_value());
    EXPECT_EQ(got.info.credentials->pid, getpid());
    EXPECT_EQ(got.info.credentials->uid, getuid());
    EXPECT_EQ(got.info.credentials->gid, getgid());
    EXPECT_EQ(got.info.fds, 3U);
    EXPECT_FALSE(got.info.truncated || got.info.controlTruncated || got.info.unexpectedControl);
    ASSERT_EQ(got.fds.size(), 3U);
    EXPECT_EQ(idsOf(got.fds), idsOf(files));
    for (const UniqueFd &fd : got.fds) {
        EXPECT_TRUE(isCloexec(fd));
    }
}

TEST_F(ScmTest, RecvWithFdsWithoutPasscredReportsNoCredentials)
{
    auto [sender, receiver] = makePair();
    ASSERT_EQ(sendDatagram(sender.borrow(), pattern(1), {}, 0), 0);
    const Received got = receiveWithFds(receiver, 64, kMaxFdsPerDatagram);
    ASSERT_EQ(got.size, 1);
    EXPECT_FALSE(got.info.credentials.has_value());
}

TEST_F(ScmTest, RecvWithFdsAppendsToTheCallersFds)
{
    auto [sender, receiver] = makePair();
    const std::vector<UniqueFd> files = makeFiles(2);
    ASSERT_EQ(sendDatagram(sender.borrow(), pattern(1), borrowAll(files), 0), 0);
    std::vector<UniqueFd> fds = makeFiles(1);
    const FileId earlier = fileId(fds[0].borrow());
    std::vector<std::byte> buffer(16);
    DatagramInfo info;
    ASSERT_EQ(recvWithFds(receiver.borrow(), 0, buffer, kMaxFdsPerDatagram, fds, info), 1);
    EXPECT_EQ(info.fds, 2U);
    ASSERT_EQ(fds.size(), 3U);
    EXPECT_EQ(fileId(fds[0].borrow()), earlier);
    EXPECT_EQ(fileId(fds[1].borrow()), fileId(files[0].borrow()));
    EXPECT_EQ(fileId(fds[2].borrow()), fileId(files[1].borrow()));
}

TEST_F(ScmTest, RecvWithFdsOnATruncatedPayloadStillHandsOverEveryFd)
{
    auto [sender, receiver] = makePair();
    const int before = countOpenFds();
    {
        const std::vector<UniqueFd> files = makeFiles(3);
        ASSERT_EQ(sendDatagram(sender.borrow(), pattern(100), borrowAll(files), 0), 0);
    }
    {
        // MSG_TRUNC in flags: the size is the datagram's, not the buffer's.
        const Received got = receiveWithFds(receiver, 10, kMaxFdsPerDatagram, MSG_TRUNC);
        EXPECT_EQ(got.size, 100);
        EXPECT_TRUE(got.info.truncated);
        EXPECT_FALSE(got.info.controlTruncated || got.info.unexpectedControl);
        EXPECT_EQ(got.info.fds, 3U);
        EXPECT_EQ(got.fds.size(), 3U);
    }
    EXPECT_EQ(countOpenFds(), before) << "the fds of a truncated datagram were not all the caller's";
    {
        const std::vector<UniqueFd> files = makeFiles(2);
        ASSERT_EQ(sendDatagram(sender.borrow(), pattern(100), borrowAll(files), 0), 0);
    }
    {
        const Received got = receiveWithFds(receiver, 10, kMaxFdsPerDatagram);
        EXPECT_EQ(got.size, 10); // without MSG_TRUNC: what fit
        EXPECT_TRUE(got.info.truncated);
    }
    EXPECT_EQ(countOpenFds(), before);
}

TEST_F(ScmTest, RecvWithFdsBeyondTheCallersMaximumIsControlTruncationAndClosesEveryFd)
{
    auto [sender, receiver] = makePair();
    const int before = countOpenFds();
    {
        const std::vector<UniqueFd> files = makeFiles(kMaxFdsPerDatagram);
        ASSERT_EQ(sendDatagram(sender.borrow(), pattern(1), borrowAll(files), 0), 0);
    }
    {
        // Room for 2 fds (plus the credentials and pidfd slack, which the
        // kernel fills with fds too): far fewer than were sent.
        const Received got = receiveWithFds(receiver, 16, 2);
        EXPECT_EQ(got.size, 1);
        EXPECT_TRUE(got.info.controlTruncated);
        EXPECT_LT(got.fds.size(), kMaxFdsPerDatagram);
    }
    EXPECT_EQ(countOpenFds(), before);
}

TEST_F(ScmTest, RecvWithFdsReportsAnUnexpectedCmsgAndKeepsTheFds)
{
    auto [sender, receiver] = makePair();
    setIntOption(receiver, SO_TIMESTAMP, 1);
    const std::vector<UniqueFd> files = makeFiles(2);
    ASSERT_EQ(sendDatagram(sender.borrow(), pattern(1), borrowAll(files), 0), 0);
    const Received got = receiveWithFds(receiver, 16, kMaxFdsPerDatagram);
    EXPECT_TRUE(got.info.unexpectedControl);
    EXPECT_EQ(got.fds.size(), 2U);
}

TEST_F(ScmTest, RecvWithFdsRoomForMaxFdsCredentialsAndAPidfd)
{
    requireFds(2 * kMaxFdsPerDatagram);
    if (IsSkipped()) {
        return;
    }
    auto [sender, receiver] = makePair();
    setIntOption(receiver, SO_PASSCRED, 1);
    const int on = 1;
    const bool pidfd = setsockopt(receiver.get(), SOL_SOCKET, kSoPassPidfd, &on, sizeof(on)) == 0;
    const int before = countOpenFds();
    {
        const std::vector<UniqueFd> files = makeFiles(kMaxFdsPerDatagram);
        ASSERT_EQ(sendDatagram(sender.borrow(), pattern(1), borrowAll(files), 0), 0);
    }
    {
        const Received got = receiveWithFds(receiver, 16, kMaxFdsPerDatagram);
        EXPECT_FALSE(got.info.controlTruncated);
        EXPECT_TRUE(got.info.credentials.has_value());
        EXPECT_EQ(got.fds.size(), kMaxFdsPerDatagram);
        // The pidfd is closed at once, and reported: no caller expects one.
        EXPECT_EQ(got.info.unexpectedControl, pidfd);
    }
    EXPECT_EQ(countOpenFds(), before);
}

TEST_F(ScmTest, RecvWithFdsOnAnEmptySocketIsEagainAndTouchesNothing)
{
    auto [sender, receiver] = makePair(true);
    std::vector<UniqueFd> fds = makeFiles(1);
    std::vector<std::byte> buffer(16);
    DatagramInfo info;
    info.fds = 42;
    EXPECT_EQ(recvWithFds(receiver.borrow(), 0, buffer, kMaxFdsPerDatagram, fds, info), -EAGAIN);
    EXPECT_EQ(fds.size(), 1U);
    EXPECT_EQ(info.fds, 42U);
}

TEST_F(ScmTest, RecvWithFdsReportsAClosedPeerAsZeroBytes)
{
    auto [sender, receiver] = makePair();
    sender.reset();
    const Received got = receiveWithFds(receiver, 16, kMaxFdsPerDatagram);
    EXPECT_EQ(got.size, 0);
    EXPECT_TRUE(got.fds.empty());
}

TEST_F(ScmTest, RecvWithFdsOnADatagramSocketReportsTheSender)
{
    // What the sd_notify server reads: SOCK_DGRAM, credentials, MSG_TRUNC.
    int sv[2] = {-1, -1};
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0) << errnoText(errno);
    const UniqueFd sender(sv[0]);
    const UniqueFd receiver(sv[1]);
    setIntOption(receiver, SO_PASSCRED, 1);
    const std::vector<UniqueFd> files = makeFiles(1);
    ASSERT_EQ(sendDatagram(sender.borrow(), {}, borrowAll(files), 0), 0);
    const Received got = receiveWithFds(receiver, 16, 768, MSG_DONTWAIT | MSG_TRUNC);
    EXPECT_EQ(got.size, 0); // an empty datagram, not a hang-up
    ASSERT_TRUE(got.info.credentials.has_value());
    EXPECT_EQ(got.info.credentials->pid, getpid());
    EXPECT_EQ(got.fds.size(), 1U);
}

} // namespace
} // namespace fdsup
