// handoff-bench's denominator: the kernel's own rate of passing connected
// TCP sockets from one process to another (SCM_RIGHTS over one AF_UNIX
// socketpair, 253 per message), with no supervisor in between.
#pragma once

#include <sys/types.h>

#include "core/fd.hpp"

namespace fdsup::bench {

// A helper process forked before the benchmark opens anything (so that it
// inherits none of the client connections and has the whole RLIMIT_NOFILE
// for its own), measuring on request. Each measure(n):
//   - a listener on 127.0.0.1:0; a child (the clients) connects n times and
//     the helper accepts n connections: the helper holds n connected sockets;
//   - a second child (the receiver) on one SOCK_SEQPACKET socketpair says it
//     is ready and blocks in recvmsg();
//   - the clock starts, the helper sends the n sockets 253 per message
//     (1 byte each) and the receiver takes the clock when it has received
//     all n (it keeps them open, as an adopter would); CLOCK_MONOTONIC on
//     both sides of the same machine;
//   - everything is closed and both children reaped; not timed.
// Throws std::runtime_error when the helper cannot measure.
class RawHandoff {
public:
    RawHandoff();
    ~RawHandoff();
    RawHandoff(const RawHandoff &) = delete;
    RawHandoff &operator=(const RawHandoff &) = delete;

    // Connections per second for n sockets.
    double measure(int n);

private:
    pid_t pid_ = -1;
    UniqueFd control_;
};

} // namespace fdsup::bench
