// Fuzz target: recvFds framing, fed arbitrary datagrams (and a few real fds) by a hostile peer.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <sys/socket.h>
#include <unistd.h>

#include "core/fd.hpp"
#include "core/scm.hpp"
#include "fuzz.hpp"

namespace {

// Sends one datagram of data with nfds duplicates of stdin-like fds attached.
void sendRaw(int sock, const std::uint8_t *data, std::size_t size, int nfds, int fd)
{
    iovec iov{const_cast<std::uint8_t *>(data), size};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    if (nfds > 0) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * static_cast<std::size_t>(nfds));
        cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<std::size_t>(nfds));
        int fds[4] = {fd, fd, fd, fd};
        std::memcpy(CMSG_DATA(c), fds, sizeof(int) * static_cast<std::size_t>(nfds));
    }
    (void)sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

} // namespace

// Input: a sequence of datagrams, each as [u16 length][u8 nfds][bytes].
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) != 0) {
        return 0;
    }
    fdsup::UniqueFd rx(pair[0]);
    fdsup::UniqueFd tx(pair[1]);
    fdsup::UniqueFd payloadFd(dup(pair[1]));
    while (size >= 3) {
        const std::size_t len = std::min<std::size_t>(size - 3, (data[0] << 8U) | data[1]);
        const int nfds = data[2] % 5;
        sendRaw(tx.get(), data + 3, len, nfds, payloadFd.get());
        data += 3 + len;
        size -= 3 + len;
    }
    tx.reset(); // the peer hangs up: no continuation wait may block forever
    for (int i = 0; i < 64; ++i) {
        fdsup::Message m;
        const int r = fdsup::recvFds(rx.borrow(), m);
        if (r < 0 && r != -EBADMSG && r != -EAGAIN) {
            break;
        }
        if (r == -EAGAIN) {
            break;
        }
    }
    return 0;
}
