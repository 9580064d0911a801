// SCM_RIGHTS transport: one logical message of bytes plus any number of fds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fdsup/fd.hpp"

namespace fdsup {

// The kernel refuses more than SCM_MAX_FD (253) descriptors in one sendmsg().
inline constexpr std::size_t kMaxFdsPerDatagram = 253;
// Upper bound on the payload of one logical message (all its datagrams).
inline constexpr std::size_t kMaxMessagePayload = 1U << 20;

struct Message {
    std::vector<std::byte> payload;
    std::vector<UniqueFd> fds;
};

// Sends payload and fds over a connected AF_UNIX SOCK_SEQPACKET socket as one
// logical message. Up to 253 fds travel in the first datagram together with
// the payload; more are sent in continuation datagrams of 253 each. Every
// datagram starts with a small frame header (see scm.cpp) so the receiver can
// reassemble and check the counts.
//
// Returns 0 or -errno. MSG_NOSIGNAL always. On a non-blocking socket -EAGAIN
// is returned only when nothing of the message was sent yet; once the first
// datagram is out, the rest is sent with a blocking wait (poll) so a message
// is never half-sent. The fds stay owned by the caller.
int sendFds(BorrowedFd sock, std::span<const std::byte> payload, std::span<const BorrowedFd> fds);

// Receives one logical message. MSG_CMSG_CLOEXEC always. Returns 0 and fills
// out only on success; -EAGAIN if nothing is pending on a non-blocking socket;
// -ECONNRESET/-EPIPE style errors as the kernel reports them; 0 with an empty
// message and no fds is never returned for a datagram: a zero-length read
// (peer closed) returns -ECONNRESET.
//
// MSG_CTRUNC, MSG_TRUNC, a cmsg other than SCM_RIGHTS (credentials are
// accepted and ignored only if the caller enabled SO_PASSCRED), a frame header
// that does not parse, or fd counts that do not match the header is -EBADMSG;
// every fd that did arrive is closed before returning.
int recvFds(BorrowedFd sock, Message &out);

} // namespace fdsup
