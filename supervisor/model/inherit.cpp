// Announcing a worker's listeners in the conventions its server already knows.
#include "model/inherit.hpp"

#include <cerrno>

#include <fcntl.h>
#include <sys/socket.h>

#include "common/address.hpp"
#include "common/argv_template.hpp"

namespace fdsup {
namespace {

constexpr int kFirstListenFd = 3;

// The index in request.fds of the first listener named socket, or an error.
Result<std::size_t> firstListener(const SpawnRequest &request, std::size_t count, const std::string &socket)
{
    for (std::size_t i = 0; i < count && i < request.fdNames.size(); ++i) {
        if (request.fdNames[i] == socket) {
            return i;
        }
    }
    return Error{ENOENT, "no listener of socket '" + socket + "' is passed to the worker"};
}

// nginx's workers all wait on an inherited listener and accept when it is
// readable; one that loses the race to another worker must get EAGAIN, not
// block in accept() (found by the servers suite: a worker stuck in accept4()
// held its keep-alive connections for seconds). nginx makes the listeners
// it binds non-blocking, and a listener an old nginx passes is; one fdsupd
// passes must be too. O_NONBLOCK belongs to the shared open file
// description: fdsupd never accepts on a listener, and the other servers
// here (gunicorn, uvicorn, lighttpd, haproxy) set it themselves anyway.
Result<void> makeNonBlocking(const SpawnRequest &request, std::size_t count)
{
    for (std::size_t i = 0; i < count; ++i) {
        const int fd = request.fds[i].get();
        const int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || ((flags & O_NONBLOCK) == 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)) {
            return errnoError(errno, "Failed to make listener '" + request.fdNames[i] +
                                         "' non-blocking, as nginx expects it");
        }
    }
    return {};
}

Result<void> expandArgv(std::size_t count, SpawnRequest &request)
{
    // argv[0] is the program as written, never a template.
    for (std::size_t a = 1; a < request.argv.size(); ++a) {
        auto pieces = parseArgTemplate(request.argv[a]);
        if (!pieces) {
            return Error{pieces.error().code,
                         "argument " + std::to_string(a) + ": " + pieces.error().message};
        }
        auto expanded = expandArgTemplate(
            *pieces, [&](ArgPiece::Kind kind, const std::string &socket) -> Result<std::string> {
                auto index = firstListener(request, count, socket);
                if (!index) {
                    return index.error();
                }
                if (kind == ArgPiece::Kind::Fd) {
                    return std::to_string(kFirstListenFd + static_cast<int>(*index));
                }
                return boundAddress(request.fds[*index]);
            });
        if (!expanded) {
            return Error{expanded.error().code, "argument " + std::to_string(a) + " (" + request.argv[a] +
                                                    "): " + expanded.error().message};
        }
        request.argv[a] = std::move(*expanded);
    }
    return {};
}

} // namespace

Result<std::string> boundAddress(BorrowedFd fd)
{
    sockaddr_storage storage{};
    socklen_t length = sizeof storage;
    if (getsockname(fd.get(), reinterpret_cast<sockaddr *>(&storage), &length) != 0) {
        return errnoError(errno, "getsockname on fd " + std::to_string(fd.get()));
    }
    return formatSocketAddress(reinterpret_cast<const sockaddr *>(&storage), length);
}

Result<void> announceListeners(const config::ServiceConfig &config, std::size_t count, SpawnRequest &request)
{
    for (const auto convention : config.inherit) {
        std::string value;
        for (std::size_t i = 0; i < count; ++i) {
            const std::string fd = std::to_string(kFirstListenFd + static_cast<int>(i));
            if (convention == config::InheritConvention::Nginx) {
                // nginx reads numbers each ended by ';' (or ':'): "3;4;".
                value += fd + ";";
                continue;
            }
            auto address = boundAddress(request.fds[i]);
            if (!address) {
                return address.error();
            }
            value += (value.empty() ? "" : ";") + *address + "=" + fd;
        }
        if (convention == config::InheritConvention::Nginx) {
            if (auto done = makeNonBlocking(request, count); !done) {
                return done.error();
            }
        }
        const char *name = convention == config::InheritConvention::Nginx ? "NGINX=" : "SERVER_STARTER_PORT=";
        request.environment.push_back(name + value);
    }
    return expandArgv(count, request);
}

} // namespace fdsup
