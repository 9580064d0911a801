// SCM_RIGHTS transport: one logical message of bytes plus any number of fds.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include <sys/socket.h>
#include <sys/types.h>

#include "core/fd.hpp"

namespace fdsup {

// The kernel refuses more than SCM_MAX_FD (253) descriptors in one sendmsg().
inline constexpr std::size_t kMaxFdsPerDatagram = 253;
// Upper bound on the payload of one logical message (all its datagrams).
inline constexpr std::size_t kMaxMessagePayload = 1U << 20;
// Upper bound on the descriptors of one logical message (all its datagrams).
inline constexpr std::size_t kMaxMessageFds = 1U << 16;
// Upper bound on the payload bytes one datagram carries after its frame
// header. Part of the wire format: a receiver refuses larger datagrams.
inline constexpr std::size_t kMaxDatagramPayload = 64U << 10;
// How long either side waits for the socket to accept or deliver the next
// datagram of a message that has started.
inline constexpr std::chrono::milliseconds kContinuationTimeout{5000};

struct Message {
    std::vector<std::byte> payload;
    std::vector<UniqueFd> fds;
};

// Sends payload and fds over a connected AF_UNIX SOCK_SEQPACKET socket as one
// logical message. The message is cut into datagrams that each carry up to
// 253 fds and up to kMaxDatagramPayload payload bytes (less when SO_SNDBUF is
// small); the first datagram carries the first of both. Every datagram starts
// with a frame header (format in scm.cpp) so the receiver can reassemble the
// message and check the counts.
//
// Returns 0 or -errno. MSG_NOSIGNAL always.
//   -EMSGSIZE  payload > kMaxMessagePayload or fds > kMaxMessageFds
//   -EBADF     an fd is invalid (checked before anything is sent)
//   -EAGAIN    non-blocking socket and nothing of the message was sent
//   -EINTR     blocking socket, a signal arrived before anything was sent
//   -ETIMEDOUT the message had started but the socket accepted no further
//              datagram for kContinuationTimeout
//   other      as sendmsg() reports them (-EPIPE, -ECONNRESET, -ENOTSOCK...)
// Once the first datagram is out, the rest is sent with a bounded wait (poll)
// whatever the socket's O_NONBLOCK, so a message is never half-sent while the
// peer is alive and reading; only -ETIMEDOUT or a dead peer can cut one. The
// fds stay owned by the caller.
int sendFds(BorrowedFd sock, std::span<const std::byte> payload, std::span<const BorrowedFd> fds);

// Receives one logical message. MSG_CMSG_CLOEXEC always: every fd received
// has FD_CLOEXEC set. Returns 0 and replaces out's contents only on success;
// out is untouched on error.
//   -EAGAIN      non-blocking socket and nothing is pending
//   -EINTR       blocking socket, a signal arrived before anything was read
//   -ECONNRESET  the peer closed (a zero-length read), also mid-message
//   -ENOMSG      an empty datagram (the peer had not closed)
//   -EBADMSG     MSG_CTRUNC (e.g. RLIMIT_NOFILE reached), MSG_TRUNC, a cmsg
//                other than SCM_RIGHTS (credentials are accepted and ignored:
//                the kernel only delivers them if the caller enabled
//                SO_PASSCRED), a frame header that does not parse, a
//                continuation where a first datagram belongs or the reverse,
//                or fd/payload counts that do not match the header
//   -ETIMEDOUT   a message had started but its next datagram did not arrive
//                within kContinuationTimeout
//   other        as recvmsg()/poll() report them
// On every error each fd that did arrive, in this datagram or in earlier ones
// of the same message, is closed before returning. After -EBADMSG or
// -ETIMEDOUT the datagram boundaries of the stream can no longer be trusted:
// close the connection.
int recvFds(BorrowedFd sock, Message &out);

// The single-datagram primitives under sendFds()/recvFds(), for protocols
// that frame their own datagrams and never span several (the worker channel,
// channel.hpp). Neither waits for anything beyond what the socket's blocking
// mode and flags say.

// Sends bytes as one datagram with fds attached (at most kMaxFdsPerDatagram,
// else -EMSGSIZE), MSG_NOSIGNAL | flags. Returns 0 or -errno; the fds stay
// owned by the caller.
int sendDatagram(BorrowedFd sock, std::span<const std::byte> bytes, std::span<const BorrowedFd> fds,
                 int flags);

// The first piece of a message on a stream socket (the control socket's
// Varlink), with fds attached to its first byte: one sendmsg() with
// MSG_NOSIGNAL | flags (at most kMaxFdsPerDatagram fds, else -EMSGSIZE).
// Returns the bytes sent (fewer than bytes.size() on a stream: the rest goes
// without fds; the fds went with the first byte), or -errno with nothing
// sent. The fds stay owned by the caller.
ssize_t sendStreamWithFds(BorrowedFd sock, std::span<const std::byte> bytes, std::span<const BorrowedFd> fds,
                          int flags);

// Receives one datagram into buffer with MSG_CMSG_CLOEXEC | flags, appending
// every fd it carried to fds whatever the outcome (so that the caller's
// vector closes them on error). Returns the datagram's size, and the number of
// SCM_RIGHTS fds it carried in fdsHere, or -errno: -EBADMSG for MSG_TRUNC
// (larger than buffer), MSG_CTRUNC or a cmsg other than SCM_RIGHTS and
// credentials, -ECONNRESET for a zero-length read once the peer shut down
// (it closed), -ENOMSG for a zero-length read before (an empty datagram,
// consumed), else as recvmsg() reports it. recvWithFds() with kMaxFdsPerDatagram, refusing
// whatever it reports as amiss. With descriptorsLost, MSG_CTRUNC alone (the
// kernel could not install the fds: the receiver's RLIMIT_NOFILE) sets it and
// returns the datagram's size: its bytes are whole, some or all fds are not.
ssize_t recvDatagram(BorrowedFd sock, int flags, std::span<std::byte> buffer, std::vector<UniqueFd> &fds,
                     std::size_t &fdsHere, bool *descriptorsLost = nullptr);

// What recvWithFds() found besides the bytes, for a caller that tells the
// reasons apart (the sd_notify server logs each one).
struct DatagramInfo {
    // SCM_RIGHTS fds this datagram carried, all appended to the caller's
    // vector but any beyond maxFds (closed, and unexpectedControl set).
    std::size_t fds = 0;
    // SCM_CREDENTIALS, present once SO_PASSCRED is on at either end.
    std::optional<ucred> credentials;
    // MSG_TRUNC: the datagram was larger than the buffer.
    bool truncated = false;
    // MSG_CTRUNC: more fds than fit (maxFds always do), or RLIMIT_NOFILE reached.
    bool controlTruncated = false;
    // A cmsg other than SCM_RIGHTS and well-formed SCM_CREDENTIALS.
    bool unexpectedControl = false;
};

// The one recvmsg() of every datagram reader that takes descriptors: the
// frame transport and the worker channel (through recvDatagram()) and
// fdsupd's sd_notify server. One recvmsg() with MSG_CMSG_CLOEXEC | flags
// (every fd arrives with FD_CLOEXEC), with room for maxFds fds, credentials
// and a pidfd (SO_PASSPIDFD), so those alone never cause MSG_CTRUNC.
//
// Returns the number of bytes received (with MSG_TRUNC in flags: the
// datagram's full size, which may exceed buffer.size()), 0 for an empty
// datagram or, on a connected socket, a closed peer; or -errno as recvmsg()
// reports it, with fds and info untouched.
//
// On success, every SCM_RIGHTS fd is appended to fds before anything else is
// looked at, so that fds owns (and, when the caller refuses the datagram,
// closes) all of them whatever info says; info is replaced. A pidfd
// (SCM_PIDFD) or any fd beyond maxFds is closed at once and reported as
// unexpectedControl. Nothing is judged here: the caller decides what
// truncation, unexpected control data or missing credentials mean.
ssize_t recvWithFds(BorrowedFd sock, int flags, std::span<std::byte> buffer, std::size_t maxFds,
                    std::vector<UniqueFd> &fds, DatagramInfo &info);

} // namespace fdsup
