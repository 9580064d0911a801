// One control client's connection: its calls read and served in order, introspection, replies written.
#include "api/control_connection.hpp"

#include <array>
#include <cerrno>
#include <exception>
#include <utility>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <spdlog/spdlog.h>

#include "common/units.hpp"
#include "core/scm.hpp"

namespace fdsup {

using Json = nlohmann::json;

namespace {

// Bytes read from one client per wake-up: enough for any ordinary request,
// small enough that one busy client cannot starve the others. Read into the
// stack, not a fresh heap block: a 64 KiB block per read, freed while the log
// lines and records allocated meanwhile stay, left holes that kept fdsupd's
// heap growing (docs/benchmark.md, the soak); untouched stack pages stay clean.
constexpr std::size_t kReadChunk = std::size_t{64} * 1024;

// The one call that takes descriptors (docs/transfer.md).
constexpr std::string_view kImportMethod = "io.fdsup.Manager.Import";

} // namespace

PendingCall::PendingCall(std::weak_ptr<ControlConnection> connection, varlink::Call call, Peer peer)
    : connection_(std::move(connection)), call_(std::move(call)), peer_(std::move(peer))
{}

PendingCall::~PendingCall()
{
    if (!finished_ && audit_) {
        try {
            logAudit(*audit_, "abandoned: no answer was given");
        } catch (...) { // NOLINT(bugprone-empty-catch): a destructor must not throw
        }
    }
    if (finished_ || call_.oneway) {
        return;
    }
    try {
        if (const auto c = connection_.lock(); c && !c->closed()) {
            c->abandoned(call_);
        }
    } catch (...) { // NOLINT(bugprone-empty-catch): a destructor must not throw
    }
}

void PendingCall::reply(nlohmann::json parameters, bool continues)
{
    // continues is only allowed when the client asked for more.
    deliver(varlink::Reply{std::move(parameters), continues && call_.more, {}});
}

void PendingCall::fail(std::string_view error, nlohmann::json parameters)
{
    deliver(varlink::Reply{std::move(parameters), false, std::string(error)});
}

void PendingCall::replyWithFds(nlohmann::json parameters, std::vector<UniqueFd> fds)
{
    deliver(varlink::Reply{std::move(parameters), false, {}}, std::move(fds));
}

void PendingCall::deliver(const varlink::Reply &reply, std::vector<UniqueFd> fds)
{
    if (finished_) {
        return;
    }
    // A oneway call is finished by its first answer, which nobody reads.
    finished_ = !reply.continues || call_.oneway;
    // Logged whether or not the client is still there to read the answer.
    if (audit_ && finished_) {
        logAudit(*audit_, auditResult(reply));
        audit_.reset();
    }
    if (call_.oneway) {
        return;
    }
    const auto c = connection_.lock();
    if (!c || c->closed()) {
        return;
    }
    c->send(reply, std::move(fds));
    if (finished_ && !c->closed()) {
        c->finished();
    }
}

int PendingCall::connectionFd() const
{
    const auto c = connection_.lock();
    return c && !c->closed() ? c->fd().get() : -1;
}

int PendingCall::carriableFd() const
{
    const auto c = connection_.lock();
    return c && c->carriable() ? c->fd().get() : -1;
}

std::size_t PendingCall::unsent() const
{
    const auto c = connection_.lock();
    return c && !c->closed() ? c->unsent() : 0;
}

bool PendingCall::done() const
{
    if (finished_) {
        return true;
    }
    const auto c = connection_.lock();
    return !c || c->closed();
}

std::shared_ptr<PendingCall> ControlConnection::resume(varlink::Call call)
{
    busy_ = true;
    idle_.reset();
    updateEvents();
    return std::make_shared<PendingCall>(weak_from_this(), std::move(call), peer_);
}

int ControlConnection::start()
{
    // Capturing a raw this is safe: io_ is owned by this object, and its
    // destructor disables the source before the object is gone.
    auto io = core_->loop_.addIo(fd_.borrow(), EPOLLIN, [this](std::uint32_t revents) { onIo(revents); });
    if (!io) {
        return -io.error().code;
    }
    io_ = std::move(*io);
    armIdle();
    return 0;
}

void ControlConnection::armIdle()
{
    idle_.reset();
    if (closed_ || core_ == nullptr || core_->options_.idleTimeout == Duration::max()) {
        return;
    }
    auto timer = core_->loop_.addTimer(core_->options_.idleTimeout, [this] { onIdle(); });
    if (!timer) {
        // Served without the deadline rather than refused.
        spdlog::error("Failed to set the idle deadline of control client {}: {}", describePeer(peer_),
                      timer.error().message);
        return;
    }
    idle_ = std::move(*timer);
}

void ControlConnection::onIdle()
{
    const auto self = shared_from_this();
    EventSource fired = std::move(idle_);
    if (busy_ || closed_) {
        return;
    }
    if (std::string note; core_->clientLog_.allow(note)) {
        spdlog::warn("Control client {} sent no request in {} ([supervisor.limits] control_idle_timeout), "
                     "closing the connection{}",
                     describePeer(peer_), formatDuration(core_->options_.idleTimeout), note);
    }
    close();
}

void ControlConnection::onIo(std::uint32_t revents)
{
    // close() drops the server's reference; this one keeps the object alive
    // until the callback returns.
    const auto self = shared_from_this();
    try {
        if ((revents & EPOLLOUT) != 0) {
            flush();
        }
        if (closed_) {
            return;
        }
        // Input first even on a hang-up: what the client sent before it went
        // away is served like any other request (a oneway call must not be
        // lost to the race between its data and the hang-up).
        if ((revents & EPOLLIN) != 0 && !busy_ && !closing_ && !readClosed_) {
            readSome();
        } else if ((revents & (EPOLLHUP | EPOLLERR)) != 0) {
            spdlog::debug("Control client {} hung up", describePeer(peer_));
            close();
        }
    } catch (const std::exception &e) {
        spdlog::error("Control connection of {} failed: {}, closing it", describePeer(peer_), e.what());
        close();
    }
}

void ControlConnection::readSome()
{
    std::array<std::byte, kReadChunk> buffer; // not zeroed: recv fills what it reports
    DatagramInfo info;
    const ssize_t n = recvWithFds(fd_.borrow(), MSG_DONTWAIT, buffer, varlink::kMaxCallFds, inFds_, info);
    if (n < 0) {
        if (n == -EAGAIN || n == -EINTR) {
            return;
        }
        spdlog::debug("Failed to read from control client {}: {}", describePeer(peer_), errnoText(-n));
        close();
        return;
    }
    // Descriptors are for Import only, and bounded: more, or cut control
    // data, and the stream cannot be trusted.
    if (!authorised_) {
        inFds_.clear(); // its call is refused with PermissionDenied, and what came with it closed
    }
    if (info.controlTruncated || info.unexpectedControl || inFds_.size() > varlink::kMaxCallFds) {
        if (std::string note; core_->clientLog_.allow(note)) {
            spdlog::warn("Control client {} sent {} descriptors (at most {}, with Import only), closing the "
                         "connection{}",
                         describePeer(peer_), inFds_.size(), varlink::kMaxCallFds, note);
        }
        close();
        return;
    }
    if (n == 0) {
        readClosed_ = true;
    } else {
        reader_.append(
            std::string_view(reinterpret_cast<const char *>(buffer.data()), static_cast<std::size_t>(n)));
    }
    process();
}

void ControlConnection::process()
{
    if (processing_ || closed_) {
        return;
    }
    processing_ = true;
    std::string message;
    while (!closed_ && !busy_ && !closing_) {
        const int r = reader_.next(message);
        if (r == -EMSGSIZE) {
            if (std::string note; core_->clientLog_.allow(note)) {
                spdlog::warn("Control request from {} exceeds {} bytes, closing the connection{}",
                             describePeer(peer_), core_->options_.maxRequest, note);
            }
            sendError(varlink::kErrorRequestTooLarge, {{"limit", core_->options_.maxRequest}});
            closeWhenFlushed();
            break;
        }
        if (r == 0) {
            if (readClosed_) {
                // A shut-down stream that ends inside a message: the rest of
                // that request will never come.
                if (reader_.pending() > 0) {
                    sendError(varlink::kErrorInvalidRequest,
                              {{"reason", "connection shut down in the middle of a message"}});
                }
                closeWhenFlushed();
            }
            break;
        }
        dispatch(message);
    }
    processing_ = false;
    if (!closed_) {
        updateEvents();
    }
}

void ControlConnection::dispatch(const std::string &message)
{
    // Any complete message is activity; a call in progress stops the deadline below.
    armIdle();
    auto decoded = varlink::decodeCall(message);
    if (!decoded) {
        // Debug only, and a few a time: the client gets the reason, and a
        // client that sends garbage in a loop must not flood the journal.
        if (std::string note; core_->invalidLog_.allow(note)) {
            spdlog::debug("Invalid control request from {}: {}{}", describePeer(peer_),
                          decoded.error().message, note);
        }
        sendError(varlink::kErrorInvalidRequest, {{"reason", decoded.error().message}});
        return;
    }
    varlink::Call call = std::move(*decoded);
    const std::string_view interface = varlink::interfaceOf(call.method);
    // Introspection is public: it tells no more than the documentation, and
    // lets a generic varlink client see what it is talking to.
    if (interface == varlink::kServiceInterface) {
        serveService(call);
        return;
    }
    if (!authorised_) {
        if (std::string note; core_->clientLog_.allow(note)) {
            logAudit(auditRecord(peer_.uid, peer_.pid, call.method, call.parameters),
                     "denied: uid " + std::to_string(peer_.uid) +
                         " is not in allow_users, allow_groups or any [[supervisor.access]] entry" + note);
        }
        if (!call.oneway) {
            sendError(varlink::kErrorPermissionDenied);
        }
        closeWhenFlushed();
        return;
    }
    if (interface != varlink::kInterface) {
        if (!call.oneway) {
            sendError(varlink::kErrorInterfaceNotFound, {{"interface", std::string(interface)}});
        }
        return;
    }
    const bool oneway = call.oneway;
    auto pending = std::make_shared<PendingCall>(weak_from_this(), std::move(call), peer_);
    // Import takes what arrived with its call; for any other method it is
    // closed here, not kept for as long as the call lasts.
    std::vector<UniqueFd> fds = std::exchange(inFds_, {});
    if (pending->call().method == kImportMethod) {
        pending->setFds(std::move(fds));
    }
    // Set before the handler runs: a synchronous reply clears it again.
    busy_ = !oneway;
    if (busy_) {
        idle_
            .reset(); // a call in progress is not idle, however long it takes (restart --wait, logs --follow)
    }
    try {
        core_->handler_(pending);
    } catch (const std::exception &e) {
        spdlog::error("Control call {} from {} failed: {}", pending->call().method, describePeer(peer_),
                      e.what());
        if (!pending->done()) {
            close();
        }
    }
}

void ControlConnection::serveService(const varlink::Call &call)
{
    if (call.oneway) {
        return;
    }
    const std::string_view method =
        std::string_view(call.method).substr(varlink::kServiceInterface.size() + 1);
    if (method == "GetInfo") {
        send(varlink::Reply{{{"vendor", "fdsup"},
                             {"product", "fdsupd"},
                             {"version", core_->options_.version},
                             {"url", core_->options_.url},
                             {"interfaces", {varlink::kServiceInterface, varlink::kInterface}}},
                            false,
                            {}});
        return;
    }
    if (method == "GetInterfaceDescription") {
        const auto it = call.parameters.find("interface");
        if (it == call.parameters.end() || !it->is_string()) {
            sendError(varlink::kErrorInvalidParameter, {{"parameter", "interface"}});
            return;
        }
        const auto &name = it->get_ref<const std::string &>();
        std::string_view description;
        if (name == varlink::kInterface) {
            description = varlink::managerInterfaceDescription();
        } else if (name == varlink::kServiceInterface) {
            description = varlink::serviceInterfaceDescription();
        } else {
            sendError(varlink::kErrorInterfaceNotFound, {{"interface", name}});
            return;
        }
        send(varlink::Reply{{{"description", description}}, false, {}});
        return;
    }
    sendError(varlink::kErrorMethodNotFound, {{"method", call.method}});
}

void ControlConnection::sendError(std::string_view error, Json parameters)
{
    send(varlink::Reply{std::move(parameters), false, std::string(error)});
}

void ControlConnection::send(const varlink::Reply &reply, std::vector<UniqueFd> fds)
{
    if (closed_) {
        return;
    }
    Outgoing outgoing{varlink::encodeReply(reply), std::move(fds)};
    unsent_ += outgoing.bytes.size();
    out_.push_back(std::move(outgoing));
    flush();
    if (!out_.empty()) {
        // Queued: without the slack of the string it was encoded into
        // (grown by doubling), which would take the queue half as much
        // again past the limit.
        out_.back().bytes.shrink_to_fit();
    }
    // Checked after writing what the socket takes: the limit is on what a
    // client leaves unread, not on the size of one reply. What is held is
    // at most the limit and the reply that passed it.
    if (!closed_ && unsent_ > core_->options_.maxOutput) {
        if (std::string note; core_->clientLog_.allow(note)) {
            spdlog::warn("Control client {} does not read its replies ({} bytes queued), dropping it{}",
                         describePeer(peer_), unsent_, note);
        }
        close();
    }
}

ssize_t ControlConnection::writeSome()
{
    Outgoing &front = out_.front();
    if (outStart_ == 0 && !front.fds.empty()) {
        // A reply that carries fds: its first byte goes with them, alone in its call.
        std::vector<BorrowedFd> fds;
        for (const auto &fd : front.fds) {
            fds.push_back(fd.borrow());
        }
        const ssize_t n =
            sendStreamWithFds(fd_.borrow(), std::as_bytes(std::span(front.bytes)), fds, MSG_DONTWAIT);
        if (n > 0) {
            front.fds.clear(); // in the peer's queue now
        }
        return n;
    }
    // Up to the next reply that carries fds, a few replies a call.
    constexpr std::size_t kMaxIov = 64;
    std::array<iovec, kMaxIov> iov{};
    std::size_t count = 0;
    for (auto it = out_.begin(); it != out_.end() && count < kMaxIov; ++it) {
        if (it != out_.begin() && !it->fds.empty()) {
            break;
        }
        const std::size_t skip = it == out_.begin() ? outStart_ : 0;
        iov.at(count++) = iovec{it->bytes.data() + skip, it->bytes.size() - skip};
    }
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = count;
    const ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    return n < 0 ? -errno : n;
}

void ControlConnection::consume(std::size_t n)
{
    unsent_ -= n;
    while (n > 0) {
        const std::size_t left = out_.front().bytes.size() - outStart_;
        if (n < left) {
            outStart_ += n;
            return;
        }
        n -= left;
        out_.pop_front();
        outStart_ = 0;
    }
}

void ControlConnection::flush()
{
    while (!out_.empty()) {
        const ssize_t n = writeSome();
        if (n >= 0) {
            consume(static_cast<std::size_t>(n));
            continue;
        }
        if (n == -EINTR) {
            continue;
        }
        if (n == -EAGAIN) {
            break;
        }
        spdlog::debug("Failed to write to control client {}: {}", describePeer(peer_),
                      errnoText(static_cast<int>(-n)));
        close();
        return;
    }
    if (out_.empty() && closing_) {
        close();
        return;
    }
    updateEvents();
}

void ControlConnection::closeWhenFlushed()
{
    closing_ = true;
    if (out_.empty()) {
        close();
    }
}

void ControlConnection::updateEvents()
{
    if (closed_ || !io_) {
        return;
    }
    std::uint32_t events = 0;
    // While a call is in progress later requests stay in the socket buffer
    // (Varlink serves a connection's calls in order), which also bounds what
    // a pipelining client can make fdsupd hold. A hang-up is still reported.
    if (!busy_ && !closing_ && !readClosed_) {
        events |= EPOLLIN;
    }
    if (!out_.empty()) {
        events |= EPOLLOUT;
    }
    io_.setIoEvents(events);
}

void ControlConnection::finished()
{
    busy_ = false;
    armIdle();
    if (processing_) {
        return; // the loop in process() goes on by itself
    }
    auto resume = core_->loop_.addDefer([this] {
        // Released first: process() may queue a new resume.
        const auto self = shared_from_this();
        EventSource done = std::move(resume_);
        try {
            process();
        } catch (const std::exception &e) {
            spdlog::error("Control connection of {} failed: {}, closing it", describePeer(peer_), e.what());
            close();
        }
    });
    if (!resume) {
        spdlog::error("Failed to resume control connection of {}: {}", describePeer(peer_),
                      resume.error().message);
        close();
        return;
    }
    resume_ = std::move(*resume);
}

void ControlConnection::abandoned(const varlink::Call &call)
{
    spdlog::error("Control call {} from {} was dropped without a reply, closing the connection", call.method,
                  describePeer(peer_));
    close();
}

void ControlConnection::close()
{
    if (closed_) {
        return;
    }
    closed_ = true;
    io_.reset();
    resume_.reset();
    idle_.reset();
    fd_.reset();
    if (core_ != nullptr) {
        // Last: this may drop the last owner of *this (callers hold their own).
        std::exchange(core_, nullptr)->remove(this);
    }
}

void ControlConnection::detach()
{
    core_ = nullptr;
    close();
}

} // namespace fdsup
