// Announcing a worker's listeners in the conventions its server already knows (NGINX=, SERVER_STARTER_PORT=,
// argv).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "config/config.hpp"
#include "io/spawn.hpp"

namespace fdsup {

// The listeners a worker gets, as laid out in SpawnRequest::fds: the first
// `count` entries of request.fds, fd 3 + i each, named by request.fdNames.
// Adds to request what config asks for:
//   inherit "nginx":          NGINX=3;4;   (every listener fd, each followed by ';'),
//                             and the listeners made O_NONBLOCK (nginx's
//                             workers expect it: see inherit.cpp)
//   inherit "server-starter": SERVER_STARTER_PORT=127.0.0.1:8080=3;/run/a.sock=4
//   {fd:NAME}, {addr:NAME} in argv[1..]: the fd number and bound address of
//                             the first listener named NAME.
// Addresses are read from the sockets themselves (getsockname), so port 0
// becomes the port the kernel chose. Errors name the placeholder or socket.
Result<void> announceListeners(const config::ServiceConfig &config, std::size_t count, SpawnRequest &request);

// "127.0.0.1:8080", "[::1]:8080", "/run/a.sock", "@name": a bound socket's own address.
Result<std::string> boundAddress(BorrowedFd fd);

} // namespace fdsup
