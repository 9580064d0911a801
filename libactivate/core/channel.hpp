// The worker channel codec: one typed, versioned message per SEQPACKET datagram (docs/worker-channel.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <fcntl.h>

#include "core/fd.hpp"

namespace fdsup {

// Wire format constants; docs/worker-channel.md is the reference.
inline constexpr std::uint8_t kChannelMagic0 = 0xFD;
inline constexpr std::uint8_t kChannelMagic1 = 0xC1;
inline constexpr std::uint8_t kChannelVersion = 1; // the only version this codec speaks
inline constexpr std::size_t kChannelHeaderSize = 16;

// Limits. A receiver refuses anything beyond them; a sender refuses to encode it.
inline constexpr std::size_t kChannelMaxBody = 32U << 10;           // bytes after the header
inline constexpr std::size_t kChannelMaxText = 1024;                // reason and status strings
inline constexpr std::size_t kChannelMaxName = 255;                 // service and listener names
inline constexpr std::size_t kChannelMaxListeners = 64;             // names (and fds) in LISTENERS
inline constexpr std::size_t kChannelMaxFds = kChannelMaxListeners; // fds in one message
inline constexpr std::size_t kChannelMaxInlineState = 16U << 10;    // state carried in the body
inline constexpr std::uint64_t kChannelMaxMemfdState = 64U << 20;   // state carried in a sealed memfd

// Capability bits of HELLO (and the subset WELCOME grants).
inline constexpr std::uint32_t kChannelCapHandoff = 1U << 0;
inline constexpr std::uint32_t kChannelCapAdopt = 1U << 1;
inline constexpr std::uint32_t kChannelCapListeners = 1U << 2;
// The preload shim (libactivate-preload.so) speaking for an unmodified
// server: it may send CLAIMED. Granted only to a service with wrap = "preload".
inline constexpr std::uint32_t kChannelCapPreload = 1U << 3;
// WELCOME's instance for a worker fdsupd did not spawn (an external worker).
inline constexpr std::uint32_t kChannelExternalInstance = 0xFFFFFFFF;

// HANDOFF/ADOPT state flags.
inline constexpr std::uint32_t kChannelStateMemfd = 1U << 0;

// The seals a state memfd must carry: nothing can change its contents or size.
inline constexpr int kChannelStateSeals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;

enum class ChannelType : std::uint8_t {
    Hello = 1,            // worker -> fdsupd
    Welcome = 2,          // fdsupd -> worker
    Reject = 3,           // fdsupd -> worker, then the channel is closed
    ListenersRequest = 4, // worker -> fdsupd
    Listeners = 5,        // fdsupd -> worker
    Ready = 6,            // worker -> fdsupd
    Drain = 7,            // fdsupd -> worker
    Handoff = 8,          // worker -> fdsupd
    HandoffResult = 9,    // fdsupd -> worker
    Done = 10,            // worker -> fdsupd
    Adopt = 11,           // fdsupd -> worker
    Error = 12,           // either way, then the channel is closed
    Claimed = 13,         // worker (preload shim) -> fdsupd
};

// "HELLO", "HANDOFF_RESULT"...; "UNKNOWN" for values outside the enum.
[[nodiscard]] const char *channelTypeName(ChannelType type) noexcept;

// One message. Only the fields of its type are encoded; the others are
// ignored by encode and left at their defaults by decode.
struct ChannelMessage {
    ChannelType type = ChannelType::Hello;
    std::uint32_t seq = 0; // the sender's counter; the codec does not interpret it

    // HELLO
    std::uint8_t minVersion = kChannelVersion;
    std::uint8_t maxVersion = kChannelVersion;
    // HELLO (offered), WELCOME (granted)
    std::uint32_t capabilities = 0;

    // WELCOME
    std::uint8_t version = kChannelVersion;
    std::uint32_t instance = 0;
    std::uint64_t generation = 0;
    std::uint32_t maxInlineState = kChannelMaxInlineState;
    std::uint64_t maxMemfdState = kChannelMaxMemfdState;
    std::string service;

    // REJECT, ERROR, HANDOFF_RESULT: a positive errno (0 = accepted, only in
    // HANDOFF_RESULT); text is the reason, or READY's status.
    std::uint32_t code = 0;
    std::string text;

    // LISTENERS: one name per fd, in order. CLAIMED: the listeners the
    // process has bound so far (cumulative, no fds).
    std::vector<std::string> names;

    // DRAIN: CLOCK_MONOTONIC deadline in µs; 0 = none.
    std::uint64_t deadlineUsec = 0;

    // HANDOFF, HANDOFF_RESULT, ADOPT: the connection's id, chosen by the worker
    // that handed it over.
    std::uint64_t id = 0;
    // HANDOFF, ADOPT: kChannelStateMemfd or 0; stateSize is the state's length
    // (== state.size() when inline, the memfd's size otherwise).
    std::uint32_t stateFlags = 0;
    std::uint64_t stateSize = 0;
    std::vector<std::byte> state; // inline state only

    // HANDOFF, ADOPT: fds[0] the connection, fds[1] the state memfd (when
    // kChannelStateMemfd). LISTENERS: the listeners.
    std::vector<UniqueFd> fds;
};

// The number of fds a message of this content must carry.
[[nodiscard]] std::size_t channelFdCount(const ChannelMessage &msg) noexcept;

// Serialises header + body into out. Returns 0, or -EINVAL (a string with a
// NUL or invalid UTF-8, the wrong number of fds for the type, a state flag
// other than kChannelStateMemfd, an inline stateSize != state.size(), an
// unknown type) or -EMSGSIZE (a limit exceeded). fds are only counted.
int encodeChannelMessage(const ChannelMessage &msg, std::vector<std::byte> &out);

// Parses one datagram that carried fdCount fds; fills everything of out but
// its fds (left empty). Returns 0 or -errno, out only written on success:
//   -EBADMSG          header or body malformed: short, bad magic, flags or
//                     reserved not 0, body length != datagram - header, an
//                     unknown type, a body too short or too long for its type,
//                     bad strings, fdCount wrong for the type
//   -EPROTONOSUPPORT  a header version other than kChannelVersion
//   -EMSGSIZE         a limit exceeded (state, names, text)
// Pure: no system calls, so it can be fuzzed.
int decodeChannelMessage(std::span<const std::byte> datagram, std::size_t fdCount, ChannelMessage &out);

// Encodes msg and sends it as one datagram with its fds, never blocking
// (MSG_DONTWAIT | MSG_NOSIGNAL). Returns 0 or -errno: encode's errors, -EBADF
// for an invalid fd, -EAGAIN when the socket is full (nothing was sent), else
// as sendmsg() reports them (-EPIPE...). The fds stay owned by msg.
int sendChannelMessage(BorrowedFd sock, const ChannelMessage &msg);

// Receives and checks one datagram, never blocking (MSG_DONTWAIT), with
// MSG_CMSG_CLOEXEC. A state memfd is checked (checkStateMemfd) but not read.
// Returns 0 and replaces out on success, or -errno with out untouched and
// every received fd closed:
//   -EAGAIN      nothing pending
//   -ECONNRESET  the peer closed
//   -ENOMSG      an empty datagram (read and dropped; the channel is fine)
//   -EBADMSG     MSG_TRUNC, a foreign cmsg, or anything
//                decodeChannelMessage refuses
//   -EMFILE      the message arrived whole but the kernel could not give
//                its descriptors (MSG_CTRUNC: this process's RLIMIT_NOFILE
//                reached): the one exception to "out untouched": out holds
//                the message without any fd (fds empty; those that came are
//                closed), so that the receiver can answer it (a HANDOFF is
//                refused, and the sender keeps its connection)
//   -EPROTONOSUPPORT, -EMSGSIZE  as decodeChannelMessage
//   -EBADFD      the state fd is not a sealed memfd of stateSize bytes
//   other        as recvmsg() reports them
int recvChannelMessage(BorrowedFd sock, ChannelMessage &out);

// Creates a memfd (MFD_CLOEXEC | MFD_ALLOW_SEALING) holding bytes, sealed
// with kChannelStateSeals. Returns 0 and sets out, or -errno (-EMSGSIZE
// beyond kChannelMaxMemfdState).
int createStateMemfd(std::span<const std::byte> bytes, UniqueFd &out);

// Checks that fd is a regular file carrying at least kChannelStateSeals (only
// memfds can be sealed) whose size is exactly size. Returns 0, -EBADFD or
// -errno from fstat().
int checkStateMemfd(BorrowedFd fd, std::uint64_t size);

// checkStateMemfd, then reads all size bytes into out (pread: the fd's
// offset is not used). Returns 0 or -errno; out only written on success.
int readStateMemfd(BorrowedFd fd, std::uint64_t size, std::vector<std::byte> &out);

} // namespace fdsup
