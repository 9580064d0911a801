// SCM_RIGHTS transport: framing, batching and leak-free reassembly of fd messages.
//
// Wire format. A logical message is one or more SOCK_SEQPACKET datagrams.
// Each datagram is a 20-byte frame header, then payloadHere payload bytes,
// with fdsHere descriptors attached as one SCM_RIGHTS cmsg (none if 0).
// Integers are big-endian (network order), written byte by byte so that no
// alignment or host layout leaks into the format.
//
//   offset size field
//        0    1 magic         0xFD
//        1    1 version       1
//        2    1 flags         bit 0 FIRST: first datagram of a message
//                             bit 1 LAST: last datagram of a message
//                             other bits must be 0
//        3    1 reserved      must be 0
//        4    4 totalFds      fds in the whole message (<= kMaxMessageFds)
//        8    4 totalPayload  payload bytes in the whole message
//                             (<= kMaxMessagePayload)
//       12    4 payloadHere   payload bytes in this datagram
//                             (<= kMaxDatagramPayload, == datagram size - 20)
//       16    2 fdsHere       fds attached to this datagram (<= 253)
//       18    2 reserved      must be 0
//
// totalFds and totalPayload repeat in every datagram and must not change
// within a message. Payload and fds are cut independently and in order: each
// datagram takes the next min(remaining, limit) of each, so the sums of
// payloadHere and fdsHere reach the totals in the datagram flagged LAST, and
// every continuation datagram carries at least a byte or an fd. A message
// with neither is a single FIRST|LAST header.
//
// Why this shape: the kernel caps SCM_RIGHTS at 253 fds per sendmsg()
// (SCM_MAX_FD) and a datagram must fit in the sender's SO_SNDBUF, so large
// messages need several datagrams. Repeating the totals lets the receiver
// check each datagram on its own and size its buffers once; the FIRST/LAST
// flags catch a receiver that lost sync with the datagram stream.
#include "core/scm.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

namespace fdsup {
namespace {

// Linux >= 6.5 attaches a pidfd with SO_PASSPIDFD; older libc headers lack
// the name, and the fd must still be closed if one shows up.
#ifndef SCM_PIDFD
constexpr int kScmPidfd = 0x04;
#else
constexpr int kScmPidfd = SCM_PIDFD;
#endif

constexpr std::size_t kHeaderSize = 20;
constexpr std::uint8_t kMagic = 0xFD;
constexpr std::uint8_t kVersion = 1;
constexpr std::uint8_t kFlagFirst = 0x01;
constexpr std::uint8_t kFlagLast = 0x02;
constexpr std::uint8_t kKnownFlags = kFlagFirst | kFlagLast;

// Below this SO_SNDBUF-derived chunk size something is badly misconfigured;
// the kernel's own minimum SO_SNDBUF (about 4.5 KiB) stays well above it.
constexpr std::size_t kMinDatagramPayload = 512;

static_assert(kMaxMessagePayload <= UINT32_MAX && kMaxMessageFds <= UINT32_MAX);
static_assert(kMaxDatagramPayload <= UINT32_MAX && kMaxFdsPerDatagram <= UINT16_MAX);

struct FrameHeader {
    std::uint8_t flags = 0;
    std::uint32_t totalFds = 0;
    std::uint32_t totalPayload = 0;
    std::uint32_t payloadHere = 0;
    std::uint16_t fdsHere = 0;
};

using HeaderBytes = std::array<std::byte, kHeaderSize>;

void putBe16(std::byte *out, std::uint16_t value)
{
    out[0] = std::byte(value >> 8);
    out[1] = std::byte(value & 0xFF);
}

void putBe32(std::byte *out, std::uint32_t value)
{
    putBe16(out, static_cast<std::uint16_t>(value >> 16));
    putBe16(out + 2, static_cast<std::uint16_t>(value & 0xFFFF));
}

std::uint16_t getBe16(const std::byte *in)
{
    return static_cast<std::uint16_t>((std::to_integer<unsigned>(in[0]) << 8) |
                                      std::to_integer<unsigned>(in[1]));
}

std::uint32_t getBe32(const std::byte *in)
{
    return (std::uint32_t{getBe16(in)} << 16) | getBe16(in + 2);
}

HeaderBytes encodeHeader(const FrameHeader &header)
{
    HeaderBytes out{};
    out[0] = std::byte{kMagic};
    out[1] = std::byte{kVersion};
    out[2] = std::byte{header.flags};
    putBe32(&out[4], header.totalFds);
    putBe32(&out[8], header.totalPayload);
    putBe32(&out[12], header.payloadHere);
    putBe16(&out[16], header.fdsHere);
    return out;
}

// Checks only what one datagram can tell on its own; the message-level rules
// (totals, FIRST/LAST placement) are checked by the caller.
bool decodeHeader(std::span<const std::byte> datagram, FrameHeader &header)
{
    if (datagram.size() < kHeaderSize) {
        return false;
    }
    const std::byte *in = datagram.data();
    if (in[0] != std::byte{kMagic} || in[1] != std::byte{kVersion} || in[3] != std::byte{0} ||
        getBe16(&in[18]) != 0) {
        return false;
    }
    header.flags = std::to_integer<std::uint8_t>(in[2]);
    header.totalFds = getBe32(&in[4]);
    header.totalPayload = getBe32(&in[8]);
    header.payloadHere = getBe32(&in[12]);
    header.fdsHere = getBe16(&in[16]);
    return (header.flags & ~kKnownFlags) == 0 && header.totalFds <= kMaxMessageFds &&
           header.totalPayload <= kMaxMessagePayload && header.payloadHere <= kMaxDatagramPayload &&
           header.fdsHere <= kMaxFdsPerDatagram && header.payloadHere == datagram.size() - kHeaderSize;
}

using Clock = std::chrono::steady_clock;

// Waits until sock reports events, retrying EINTR against the same deadline.
// POLLERR/POLLHUP count as ready: the next sendmsg()/recvmsg() reports the
// precise error, which is better than guessing it here.
int waitFor(BorrowedFd sock, short events, Clock::time_point deadline)
{
    for (;;) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            return -ETIMEDOUT;
        }
        pollfd pfd{sock.get(), events, 0};
        const int r = ::poll(&pfd, 1, static_cast<int>(std::min<std::int64_t>(left.count(), INT32_MAX)));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (r == 0) {
            continue;
        }
        if ((pfd.revents & POLLNVAL) != 0) {
            return -EBADF;
        }
        return 0;
    }
}

// The payload bytes one datagram may carry on this socket. unix_dgram_sendmsg
// refuses (EMSGSIZE) any datagram larger than SO_SNDBUF - 32, and a datagram
// close to that size would only go out once the buffer is completely empty,
// so half the buffer keeps large messages streaming.
int datagramPayloadLimit(BorrowedFd sock, std::size_t &limit)
{
    int sndbuf = 0;
    socklen_t len = sizeof(sndbuf);
    if (::getsockopt(sock.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) < 0) {
        return -errno;
    }
    const std::size_t half = static_cast<std::size_t>(std::max(sndbuf, 0)) / 2;
    limit = std::clamp(half > kHeaderSize ? half - kHeaderSize : 0, kMinDatagramPayload, kMaxDatagramPayload);
    return 0;
}

// One sendmsg() of iov with fds attached: the bytes sent, or -errno.
ssize_t sendmsgIov(BorrowedFd sock, std::span<iovec> iov, std::span<const BorrowedFd> fds, int extraFlags)
{
    if (fds.size() > kMaxFdsPerDatagram) {
        return -EMSGSIZE;
    }
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = iov.size();

    alignas(cmsghdr) std::array<std::byte, CMSG_SPACE(kMaxFdsPerDatagram * sizeof(int))> control{};
    if (!fds.empty()) {
        msg.msg_control = control.data();
        msg.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
        cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        if (cmsg == nullptr) {
            return -ENOBUFS; // cannot happen: control always holds one cmsghdr
        }
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
        unsigned char *data = CMSG_DATA(cmsg);
        for (std::size_t i = 0; i < fds.size(); ++i) {
            const int fd = fds[i].get();
            std::memcpy(data + i * sizeof(int), &fd, sizeof(int));
        }
    }

    const ssize_t n = ::sendmsg(sock.get(), &msg, MSG_NOSIGNAL | extraFlags);
    return n < 0 ? -errno : n;
}

// Sends one datagram made of iov; returns 0 or -errno. SOCK_SEQPACKET sends
// are atomic: the whole datagram is queued or nothing is.
int sendIov(BorrowedFd sock, std::span<iovec> iov, std::span<const BorrowedFd> fds, int extraFlags)
{
    const ssize_t n = sendmsgIov(sock, iov, fds, extraFlags);
    if (n < 0) {
        return static_cast<int>(n);
    }
    std::size_t total = 0;
    for (const iovec &part : iov) {
        total += part.iov_len;
    }
    if (static_cast<std::size_t>(n) != total) {
        return -EIO; // not SOCK_SEQPACKET after all: a stream split the datagram
    }
    return 0;
}

// Sends one frame header plus payload as one datagram.
int sendDatagram(BorrowedFd sock, const FrameHeader &header, std::span<const std::byte> payload,
                 std::span<const BorrowedFd> fds, int extraFlags)
{
    HeaderBytes headerBytes = encodeHeader(header);
    std::array<iovec, 2> iov{{
        {headerBytes.data(), headerBytes.size()},
        // sendmsg() does not write through iov_base; the cast only satisfies its type.
        {const_cast<std::byte *>(payload.data()), payload.size()},
    }};
    return sendIov(sock, std::span(iov).first(payload.empty() ? 1 : 2), fds, extraFlags);
}

// Sends a continuation datagram whatever the socket's O_NONBLOCK: the message
// has started, and stopping now would leave the peer with half of it.
int sendContinuation(BorrowedFd sock, const FrameHeader &header, std::span<const std::byte> payload,
                     std::span<const BorrowedFd> fds)
{
    const auto deadline = Clock::now() + kContinuationTimeout;
    for (;;) {
        const int r = sendDatagram(sock, header, payload, fds, MSG_DONTWAIT);
        if (r == -EAGAIN) {
            if (const int w = waitFor(sock, POLLOUT, deadline); w < 0) {
                return w;
            }
        } else if (r == -ETOOMANYREFS) {
            // The sender's fds in flight exceed its RLIMIT_NOFILE until the
            // peer receives some. Nothing can be polled for that; back off
            // briefly, still bounded by the deadline.
            if (Clock::now() >= deadline) {
                return -ETIMEDOUT;
            }
            ::poll(nullptr, 0, 1);
        } else if (r != -EINTR) {
            return r;
        }
    }
}

} // namespace

// Takes every fd before looking at anything else, so that whatever the
// outcome the caller's vector owns (and on error closes) them.
ssize_t recvWithFds(BorrowedFd sock, int flags, std::span<std::byte> buffer, std::size_t maxFds,
                    std::vector<UniqueFd> &fds, DatagramInfo &info)
{
    // Room for maxFds fds plus credentials (SO_PASSCRED) and a pidfd
    // (SO_PASSPIDFD), so that those options alone never cause MSG_CTRUNC.
    // cmsghdr elements keep the buffer aligned as the CMSG_* macros need.
    const std::size_t controlSize =
        CMSG_SPACE(maxFds * sizeof(int)) + CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int));
    std::vector<cmsghdr> control((controlSize + sizeof(cmsghdr) - 1) / sizeof(cmsghdr));
    iovec iov{buffer.data(), buffer.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size() * sizeof(cmsghdr);

    // Allocate first: once recvmsg() returns, taking ownership of the fds
    // must not be able to throw.
    fds.reserve(fds.size() + maxFds);

    const ssize_t n = ::recvmsg(sock.get(), &msg, MSG_CMSG_CLOEXEC | flags);
    if (n < 0) {
        return -errno;
    }

    DatagramInfo found;
    for (cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
        const std::size_t dataLen = cmsg->cmsg_len >= CMSG_LEN(0) ? cmsg->cmsg_len - CMSG_LEN(0) : 0;
        const unsigned char *data = CMSG_DATA(cmsg);
        if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
            const std::size_t count = dataLen / sizeof(int);
            for (std::size_t i = 0; i < count; ++i) {
                int fd = -1;
                std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
                if (fds.size() == fds.capacity()) {
                    // The control buffer holds maxFds, so the kernel cannot
                    // deliver more; should it, refuse the excess rather than
                    // allocate while holding raw fds.
                    UniqueFd discard(fd);
                    found.unexpectedControl = true;
                    continue;
                }
                fds.emplace_back(fd);
            }
            found.fds += count;
        } else if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_CREDENTIALS &&
                   dataLen == sizeof(ucred)) {
            ucred credentials{};
            std::memcpy(&credentials, data, sizeof(credentials));
            found.credentials = credentials;
        } else {
            if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == kScmPidfd && dataLen >= sizeof(int)) {
                int fd = -1;
                std::memcpy(&fd, data, sizeof(int));
                UniqueFd discard(fd);
            }
            found.unexpectedControl = true;
        }
    }
    found.truncated = (msg.msg_flags & MSG_TRUNC) != 0 || static_cast<std::size_t>(n) > buffer.size();
    found.controlTruncated = (msg.msg_flags & MSG_CTRUNC) != 0;
    info = found;
    return n;
}

ssize_t recvDatagram(BorrowedFd sock, int extraFlags, std::span<std::byte> buffer, std::vector<UniqueFd> &fds,
                     std::size_t &fdsHere, bool *descriptorsLost)
{
    DatagramInfo info;
    const ssize_t n = recvWithFds(sock, extraFlags, buffer, kMaxFdsPerDatagram, fds, info);
    if (n < 0) {
        return n;
    }
    fdsHere = info.fds;
    // Room for kMaxFdsPerDatagram (the kernel's SCM_MAX_FD): MSG_CTRUNC alone
    // means the kernel could not install them (RLIMIT_NOFILE), not a framing error.
    if (descriptorsLost != nullptr && info.controlTruncated && !info.truncated && !info.unexpectedControl) {
        *descriptorsLost = true;
        return n;
    }
    // Credentials are fine (a peer may send its own, and SO_PASSCRED at
    // either end attaches them); anything else amiss breaks the framing.
    if (info.truncated || info.controlTruncated || info.unexpectedControl) {
        return -EBADMSG;
    }
    if (n == 0) {
        // recvmsg() returns 0 both at the end of a connection and for an
        // empty datagram. The end only comes once the peer shut down its
        // sending side, which the kernel never undoes: a 0 on a socket
        // without RDHUP was a datagram (a connected SEQPACKET socket's,
        // or a DGRAM socket's, which has no end).
        pollfd p{sock.get(), POLLRDHUP, 0};
        const int r = ::poll(&p, 1, 0);
        const bool ended = r < 0 || (r > 0 && (p.revents & (POLLRDHUP | POLLHUP)) != 0);
        return ended ? -ECONNRESET : -ENOMSG;
    }
    return n;
}

int sendDatagram(BorrowedFd sock, std::span<const std::byte> bytes, std::span<const BorrowedFd> fds,
                 int flags)
{
    // sendmsg() does not write through iov_base; the cast only satisfies its type.
    std::array<iovec, 1> iov{{{const_cast<std::byte *>(bytes.data()), bytes.size()}}};
    return sendIov(sock, iov, fds, flags);
}

ssize_t sendStreamWithFds(BorrowedFd sock, std::span<const std::byte> bytes, std::span<const BorrowedFd> fds,
                          int flags)
{
    std::array<iovec, 1> iov{{{const_cast<std::byte *>(bytes.data()), bytes.size()}}};
    return sendmsgIov(sock, iov, fds, flags);
}

int sendFds(BorrowedFd sock, std::span<const std::byte> payload, std::span<const BorrowedFd> fds)
{
    if (payload.size() > kMaxMessagePayload || fds.size() > kMaxMessageFds) {
        return -EMSGSIZE;
    }
    std::size_t chunk = 0;
    if (const int r = datagramPayloadLimit(sock, chunk); r < 0) {
        return r;
    }
    // A bad fd in a later batch would fail that sendmsg() after the first
    // datagram is out; find it while nothing has been sent.
    const bool multiDatagram = fds.size() > kMaxFdsPerDatagram || payload.size() > chunk;
    for (const BorrowedFd fd : fds) {
        if (!fd.isValid() || (multiDatagram && ::fcntl(fd.get(), F_GETFD) < 0)) {
            return -EBADF;
        }
    }

    FrameHeader header;
    header.totalFds = static_cast<std::uint32_t>(fds.size());
    header.totalPayload = static_cast<std::uint32_t>(payload.size());
    std::size_t sentFds = 0;
    std::size_t sentPayload = 0;
    bool first = true;
    do {
        const std::size_t nFds = std::min(fds.size() - sentFds, kMaxFdsPerDatagram);
        const std::size_t nPayload = std::min(payload.size() - sentPayload, chunk);
        const bool last = sentFds + nFds == fds.size() && sentPayload + nPayload == payload.size();
        header.flags = static_cast<std::uint8_t>((first ? kFlagFirst : 0) | (last ? kFlagLast : 0));
        header.fdsHere = static_cast<std::uint16_t>(nFds);
        header.payloadHere = static_cast<std::uint32_t>(nPayload);
        const auto payloadPart = payload.subspan(sentPayload, nPayload);
        const auto fdsPart = fds.subspan(sentFds, nFds);
        // The first datagram follows the socket's own blocking mode, so that
        // -EAGAIN (or -EINTR) reaches the caller while nothing is sent.
        const int r = first ? sendDatagram(sock, header, payloadPart, fdsPart, 0)
                            : sendContinuation(sock, header, payloadPart, fdsPart);
        if (r < 0) {
            return r;
        }
        first = false;
        sentFds += nFds;
        sentPayload += nPayload;
    } while (sentFds < fds.size() || sentPayload < payload.size());
    return 0;
}

int recvFds(BorrowedFd sock, Message &out)
{
    // Declared before anything is received: on every return path below the
    // destructors close whatever fds arrived.
    std::vector<UniqueFd> fds;
    std::vector<std::byte> payload;
    std::vector<std::byte> buffer(kHeaderSize + kMaxDatagramPayload);

    std::size_t fdsHere = 0;
    ssize_t n = recvDatagram(sock, 0, buffer, fds, fdsHere);
    if (n < 0) {
        return static_cast<int>(n);
    }
    FrameHeader first;
    if (!decodeHeader(std::span(buffer).first(static_cast<std::size_t>(n)), first) ||
        (first.flags & kFlagFirst) == 0 || first.fdsHere != fdsHere) {
        return -EBADMSG;
    }
    fds.reserve(first.totalFds);
    payload.reserve(first.totalPayload);

    FrameHeader header = first;
    for (;;) {
        // fds already holds this datagram's fds (recvDatagram took them).
        if (fds.size() > first.totalFds || payload.size() + header.payloadHere > first.totalPayload) {
            return -EBADMSG;
        }
        payload.insert(payload.end(), buffer.begin() + kHeaderSize,
                       buffer.begin() + static_cast<std::ptrdiff_t>(kHeaderSize + header.payloadHere));
        const bool complete = fds.size() == first.totalFds && payload.size() == first.totalPayload;
        if (complete != ((header.flags & kFlagLast) != 0)) {
            return -EBADMSG;
        }
        if (complete) {
            break;
        }

        // The sender writes continuations back to back; wait for each with a
        // deadline so a peer that stops mid-message cannot hold us forever.
        const auto deadline = Clock::now() + kContinuationTimeout;
        for (;;) {
            n = recvDatagram(sock, MSG_DONTWAIT, buffer, fds, fdsHere);
            if (n >= 0) {
                break;
            }
            if (n == -EAGAIN) {
                if (const int w = waitFor(sock, POLLIN, deadline); w < 0) {
                    return w;
                }
            } else if (n != -EINTR) {
                return static_cast<int>(n);
            }
        }
        if (!decodeHeader(std::span(buffer).first(static_cast<std::size_t>(n)), header) ||
            (header.flags & kFlagFirst) != 0 || header.fdsHere != fdsHere ||
            header.totalFds != first.totalFds || header.totalPayload != first.totalPayload ||
            header.fdsHere + header.payloadHere == 0) {
            return -EBADMSG;
        }
    }

    out.payload = std::move(payload);
    out.fds = std::move(fds);
    return 0;
}

} // namespace fdsup
