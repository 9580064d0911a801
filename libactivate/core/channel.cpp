// The worker channel codec: header and body layouts, validation, sealed state memfds.
//
// Why one datagram per message: a receiver on an event loop must be able to
// read whatever is pending and return. recvFds() reassembles multi-datagram
// messages and may wait for a continuation; here every message is complete in
// itself, so recvChannelMessage() never waits. The limits keep every message
// well below the smallest SO_SNDBUF a datagram must fit in.
#include "core/channel.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/scm.hpp"
#include "core/utf8.hpp"

namespace fdsup {
namespace {

static_assert(kChannelMaxFds <= kMaxFdsPerDatagram);
static_assert(kChannelMaxInlineState + 64 <= kChannelMaxBody);
static_assert(kChannelMaxListeners * (2 + kChannelMaxName) + 2 <= kChannelMaxBody);

class Writer {
public:
    explicit Writer(std::vector<std::byte> &out) : out_(out) {}

    void u8(std::uint8_t v) { out_.push_back(std::byte{v}); }
    void u16(std::uint16_t v)
    {
        u8(static_cast<std::uint8_t>(v >> 8));
        u8(static_cast<std::uint8_t>(v & 0xFF));
    }
    void u32(std::uint32_t v)
    {
        u16(static_cast<std::uint16_t>(v >> 16));
        u16(static_cast<std::uint16_t>(v & 0xFFFF));
    }
    void u64(std::uint64_t v)
    {
        u32(static_cast<std::uint32_t>(v >> 32));
        u32(static_cast<std::uint32_t>(v & 0xFFFFFFFF));
    }
    void bytes(std::span<const std::byte> v) { out_.insert(out_.end(), v.begin(), v.end()); }
    void str(const std::string &v)
    {
        u16(static_cast<std::uint16_t>(v.size()));
        bytes(std::as_bytes(std::span(v)));
    }

private:
    std::vector<std::byte> &out_;
};

// Reads big-endian fields; any read past the end sets failed() and yields 0.
class Reader {
public:
    explicit Reader(std::span<const std::byte> in) : in_(in) {}

    [[nodiscard]] bool failed() const { return failed_; }
    [[nodiscard]] bool atEnd() const { return pos_ == in_.size(); }

    std::span<const std::byte> bytes(std::size_t n)
    {
        if (failed_ || in_.size() - pos_ < n) {
            failed_ = true;
            return {};
        }
        const auto out = in_.subspan(pos_, n);
        pos_ += n;
        return out;
    }
    std::uint8_t u8()
    {
        const auto b = bytes(1);
        return b.empty() ? 0 : std::to_integer<std::uint8_t>(b[0]);
    }
    // Two statements each: the operands of | are unsequenced.
    std::uint16_t u16()
    {
        const unsigned high = u8();
        return static_cast<std::uint16_t>((high << 8) | u8());
    }
    std::uint32_t u32()
    {
        const std::uint32_t high = u16();
        return (high << 16) | u16();
    }
    std::uint64_t u64()
    {
        const std::uint64_t high = u32();
        return (high << 32) | u32();
    }
    std::string str()
    {
        const auto b = bytes(u16());
        return {reinterpret_cast<const char *>(b.data()), b.size()};
    }

private:
    std::span<const std::byte> in_;
    std::size_t pos_ = 0;
    bool failed_ = false;
};

// Strict UTF-8 without NUL: strings end up in C strings and in logs.
bool validText(const std::string &s)
{
    return s.find('\0') == std::string::npos && validUtf8(s);
}

// 0, -EMSGSIZE (too long) or -EINVAL (bad encoding, or empty when a name).
int checkText(const std::string &s, std::size_t max, bool name)
{
    if (s.size() > max) {
        return -EMSGSIZE;
    }
    if ((name && s.empty()) || !validText(s)) {
        return -EINVAL;
    }
    return 0;
}

bool knownType(std::uint8_t t)
{
    return t >= static_cast<std::uint8_t>(ChannelType::Hello) &&
           t <= static_cast<std::uint8_t>(ChannelType::Claimed);
}

bool carriesState(ChannelType t)
{
    return t == ChannelType::Handoff || t == ChannelType::Adopt;
}

// Everything a message's content must satisfy, for both directions. Returns
// 0, -EINVAL or -EMSGSIZE.
int checkContent(const ChannelMessage &m)
{
    int r = 0;
    switch (m.type) {
    case ChannelType::Hello:
        return m.minVersion >= 1 && m.minVersion <= m.maxVersion ? 0 : -EINVAL;
    case ChannelType::Welcome:
        if (m.version < 1) {
            return -EINVAL;
        }
        return checkText(m.service, kChannelMaxName, true);
    case ChannelType::Reject:
    case ChannelType::Error:
        if (m.code == 0) {
            return -EINVAL;
        }
        return checkText(m.text, kChannelMaxText, false);
    case ChannelType::Ready:
    case ChannelType::HandoffResult:
        return checkText(m.text, kChannelMaxText, false);
    case ChannelType::Listeners:
    case ChannelType::Claimed:
        if (m.names.size() > kChannelMaxListeners) {
            return -EMSGSIZE;
        }
        for (const std::string &name : m.names) {
            if ((r = checkText(name, kChannelMaxName, true)) < 0) {
                return r;
            }
        }
        return 0;
    case ChannelType::Handoff:
    case ChannelType::Adopt:
        if ((m.stateFlags & ~kChannelStateMemfd) != 0) {
            return -EINVAL;
        }
        if ((m.stateFlags & kChannelStateMemfd) != 0) {
            if (!m.state.empty()) {
                return -EINVAL;
            }
            return m.stateSize <= kChannelMaxMemfdState ? 0 : -EMSGSIZE;
        }
        if (m.stateSize != m.state.size()) {
            return -EINVAL;
        }
        return m.stateSize <= kChannelMaxInlineState ? 0 : -EMSGSIZE;
    case ChannelType::ListenersRequest:
    case ChannelType::Drain:
    case ChannelType::Done:
        return 0;
    }
    return -EINVAL;
}

} // namespace

const char *channelTypeName(ChannelType type) noexcept
{
    switch (type) {
    case ChannelType::Hello:
        return "HELLO";
    case ChannelType::Welcome:
        return "WELCOME";
    case ChannelType::Reject:
        return "REJECT";
    case ChannelType::ListenersRequest:
        return "LISTENERS_REQUEST";
    case ChannelType::Listeners:
        return "LISTENERS";
    case ChannelType::Ready:
        return "READY";
    case ChannelType::Drain:
        return "DRAIN";
    case ChannelType::Handoff:
        return "HANDOFF";
    case ChannelType::HandoffResult:
        return "HANDOFF_RESULT";
    case ChannelType::Done:
        return "DONE";
    case ChannelType::Adopt:
        return "ADOPT";
    case ChannelType::Error:
        return "ERROR";
    case ChannelType::Claimed:
        return "CLAIMED";
    }
    return "UNKNOWN";
}

std::size_t channelFdCount(const ChannelMessage &msg) noexcept
{
    if (msg.type == ChannelType::Listeners) {
        return msg.names.size();
    }
    if (carriesState(msg.type)) {
        return (msg.stateFlags & kChannelStateMemfd) != 0 ? 2 : 1;
    }
    return 0;
}

int encodeChannelMessage(const ChannelMessage &msg, std::vector<std::byte> &out)
{
    if (!knownType(static_cast<std::uint8_t>(msg.type))) {
        return -EINVAL;
    }
    if (const int r = checkContent(msg); r < 0) {
        return r;
    }
    if (msg.fds.size() != channelFdCount(msg)) {
        return -EINVAL;
    }

    std::vector<std::byte> buf;
    buf.reserve(kChannelHeaderSize + 64);
    Writer w(buf);
    w.u8(kChannelMagic0);
    w.u8(kChannelMagic1);
    w.u8(kChannelVersion);
    w.u8(static_cast<std::uint8_t>(msg.type));
    w.u16(0); // flags
    w.u16(0); // reserved
    w.u32(msg.seq);
    w.u32(0); // body length, patched below

    switch (msg.type) {
    case ChannelType::Hello:
        w.u8(msg.minVersion);
        w.u8(msg.maxVersion);
        w.u32(msg.capabilities);
        break;
    case ChannelType::Welcome:
        w.u8(msg.version);
        w.u32(msg.capabilities);
        w.u32(msg.instance);
        w.u64(msg.generation);
        w.u32(msg.maxInlineState);
        w.u64(msg.maxMemfdState);
        w.str(msg.service);
        break;
    case ChannelType::Reject:
    case ChannelType::Error:
        w.u32(msg.code);
        w.str(msg.text);
        break;
    case ChannelType::Listeners:
    case ChannelType::Claimed:
        w.u16(static_cast<std::uint16_t>(msg.names.size()));
        for (const std::string &name : msg.names) {
            w.str(name);
        }
        break;
    case ChannelType::Ready:
        w.str(msg.text);
        break;
    case ChannelType::Drain:
        w.u64(msg.deadlineUsec);
        break;
    case ChannelType::Handoff:
    case ChannelType::Adopt:
        w.u64(msg.id);
        w.u32(msg.stateFlags);
        w.u64(msg.stateSize);
        w.bytes(msg.state);
        break;
    case ChannelType::HandoffResult:
        w.u64(msg.id);
        w.u32(msg.code);
        w.str(msg.text);
        break;
    case ChannelType::ListenersRequest:
    case ChannelType::Done:
        break;
    }

    const std::size_t body = buf.size() - kChannelHeaderSize;
    if (body > kChannelMaxBody) {
        return -EMSGSIZE;
    }
    for (std::size_t i = 0; i < 4; ++i) {
        buf[12 + i] = std::byte{static_cast<std::uint8_t>(body >> (8 * (3 - i)))};
    }
    out = std::move(buf);
    return 0;
}

namespace {

// decodeChannelMessage() but the fd count: a header and body well formed.
int decodeContent(std::span<const std::byte> datagram, ChannelMessage &out)
{
    Reader h(datagram);
    const std::uint8_t magic0 = h.u8();
    const std::uint8_t magic1 = h.u8();
    const std::uint8_t version = h.u8();
    const std::uint8_t type = h.u8();
    const std::uint16_t flags = h.u16();
    const std::uint16_t reserved = h.u16();
    const std::uint32_t seq = h.u32();
    const std::uint32_t bodyLength = h.u32();
    if (h.failed() || magic0 != kChannelMagic0 || magic1 != kChannelMagic1) {
        return -EBADMSG;
    }
    if (version != kChannelVersion) {
        return -EPROTONOSUPPORT;
    }
    if (flags != 0 || reserved != 0 || !knownType(type) || bodyLength > kChannelMaxBody ||
        bodyLength != datagram.size() - kChannelHeaderSize) {
        return -EBADMSG;
    }

    ChannelMessage m;
    m.type = static_cast<ChannelType>(type);
    m.seq = seq;
    Reader r(datagram.subspan(kChannelHeaderSize));
    switch (m.type) {
    case ChannelType::Hello:
        m.minVersion = r.u8();
        m.maxVersion = r.u8();
        m.capabilities = r.u32();
        break;
    case ChannelType::Welcome:
        m.version = r.u8();
        m.capabilities = r.u32();
        m.instance = r.u32();
        m.generation = r.u64();
        m.maxInlineState = r.u32();
        m.maxMemfdState = r.u64();
        m.service = r.str();
        break;
    case ChannelType::Reject:
    case ChannelType::Error:
        m.code = r.u32();
        m.text = r.str();
        break;
    case ChannelType::Listeners:
    case ChannelType::Claimed: {
        const std::uint16_t count = r.u16();
        if (count > kChannelMaxListeners) {
            return -EMSGSIZE;
        }
        for (std::uint16_t i = 0; i < count && !r.failed(); ++i) {
            m.names.push_back(r.str());
        }
        break;
    }
    case ChannelType::Ready:
        m.text = r.str();
        break;
    case ChannelType::Drain:
        m.deadlineUsec = r.u64();
        break;
    case ChannelType::Handoff:
    case ChannelType::Adopt:
        m.id = r.u64();
        m.stateFlags = r.u32();
        m.stateSize = r.u64();
        if ((m.stateFlags & kChannelStateMemfd) == 0) {
            if (m.stateSize > kChannelMaxInlineState) {
                return -EMSGSIZE;
            }
            const auto bytes = r.bytes(static_cast<std::size_t>(m.stateSize));
            m.state.assign(bytes.begin(), bytes.end());
        }
        break;
    case ChannelType::HandoffResult:
        m.id = r.u64();
        m.code = r.u32();
        m.text = r.str();
        break;
    case ChannelType::ListenersRequest:
    case ChannelType::Done:
        break;
    }
    if (r.failed() || !r.atEnd()) {
        return -EBADMSG;
    }
    if (const int c = checkContent(m); c < 0) {
        // A limit is a limit in both directions; anything else the sender's
        // encoder would have refused is a malformed message here.
        return c == -EMSGSIZE ? -EMSGSIZE : -EBADMSG;
    }
    out = std::move(m);
    return 0;
}

} // namespace

int decodeChannelMessage(std::span<const std::byte> datagram, std::size_t fdCount, ChannelMessage &out)
{
    ChannelMessage m;
    if (const int r = decodeContent(datagram, m); r < 0) {
        return r;
    }
    if (fdCount != channelFdCount(m)) {
        return -EBADMSG;
    }
    out = std::move(m);
    return 0;
}

int sendChannelMessage(BorrowedFd sock, const ChannelMessage &msg)
{
    std::vector<std::byte> bytes;
    if (const int r = encodeChannelMessage(msg, bytes); r < 0) {
        return r;
    }
    std::array<BorrowedFd, kChannelMaxFds> fds{};
    for (std::size_t i = 0; i < msg.fds.size(); ++i) {
        if (!msg.fds[i].isValid()) {
            return -EBADF;
        }
        fds.at(i) = msg.fds[i].borrow();
    }
    return sendDatagram(sock, bytes, std::span(fds).first(msg.fds.size()), MSG_DONTWAIT);
}

int recvChannelMessage(BorrowedFd sock, ChannelMessage &out)
{
    // Declared first: every return below closes whatever fds arrived.
    std::vector<UniqueFd> fds;
    // One byte more than the largest valid datagram would not help: MSG_TRUNC
    // already reports anything larger.
    // Not zeroed (32 KiB per message would be): recvmsg() fills what is used.
    constexpr std::size_t kBufferSize = kChannelHeaderSize + kChannelMaxBody;
    const auto storage = std::make_unique_for_overwrite<std::byte[]>(kBufferSize);
    const std::span<std::byte> buffer(storage.get(), kBufferSize);
    std::size_t fdsHere = 0;
    bool lost = false;
    ssize_t n = recvDatagram(sock, MSG_DONTWAIT, buffer, fds, fdsHere, &lost);
    if (n == -ECONNRESET) {
        // A peer that closed with messages of ours unread leaves ECONNRESET
        // pending on this socket, and recvmsg() reports it (once) before the
        // messages the peer sent before closing. Those still count: a worker
        // that dies right after handing connections over has handed them.
        // The second read returns them, or 0 (end) once none is left.
        n = recvDatagram(sock, MSG_DONTWAIT, buffer, fds, fdsHere, &lost);
        if (n == -EAGAIN) {
            n = -ECONNRESET;
        }
    }
    if (n < 0) {
        return static_cast<int>(n);
    }
    ChannelMessage m;
    if (lost) {
        // The message is whole but its descriptors are not: what arrived is
        // closed, and the receiver gets the message to answer it.
        fds.clear();
        if (const int r = decodeContent(buffer.first(static_cast<std::size_t>(n)), m); r < 0) {
            return r;
        }
        out = std::move(m);
        return -EMFILE;
    }
    if (const int r = decodeChannelMessage(buffer.first(static_cast<std::size_t>(n)), fdsHere, m); r < 0) {
        return r;
    }
    if (carriesState(m.type) && (m.stateFlags & kChannelStateMemfd) != 0) {
        if (const int r = checkStateMemfd(fds[1].borrow(), m.stateSize); r < 0) {
            return r;
        }
    }
    m.fds = std::move(fds);
    out = std::move(m);
    return 0;
}

int createStateMemfd(std::span<const std::byte> bytes, UniqueFd &out)
{
    if (bytes.size() > kChannelMaxMemfdState) {
        return -EMSGSIZE;
    }
    UniqueFd fd(::memfd_create("fdsup-state", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd) {
        return -errno;
    }
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t w =
            ::pwrite(fd.get(), bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        done += static_cast<std::size_t>(w);
    }
    if (::fcntl(fd.get(), F_ADD_SEALS, kChannelStateSeals) < 0) {
        return -errno;
    }
    out = std::move(fd);
    return 0;
}

int checkStateMemfd(BorrowedFd fd, std::uint64_t size)
{
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0) {
        return -errno;
    }
    if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) != size) {
        return -EBADFD;
    }
    // F_GET_SEALS fails (EINVAL) on files that cannot be sealed; only a memfd
    // (or shmem file) created with sealing allowed can carry these seals.
    const int seals = ::fcntl(fd.get(), F_GET_SEALS);
    if (seals < 0 || (seals & kChannelStateSeals) != kChannelStateSeals) {
        return -EBADFD;
    }
    return 0;
}

int readStateMemfd(BorrowedFd fd, std::uint64_t size, std::vector<std::byte> &out)
{
    if (size > kChannelMaxMemfdState) {
        return -EMSGSIZE;
    }
    if (const int r = checkStateMemfd(fd, size); r < 0) {
        return r;
    }
    std::vector<std::byte> bytes(static_cast<std::size_t>(size));
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n =
            ::pread(fd.get(), bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return -EBADFD; // cannot happen once sealed against shrinking
        }
        done += static_cast<std::size_t>(n);
    }
    out = std::move(bytes);
    return 0;
}

} // namespace fdsup
