// The control API's wire format: Varlink (NUL-terminated JSON) messages and a blocking client.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.hpp"
#include "core/fd.hpp"

namespace fdsup::varlink {

inline constexpr std::string_view kInterface = "io.fdsup.Manager";

// Error names, as in docs/control-api.md.
inline constexpr std::string_view kErrorNoSuchService = "io.fdsup.Manager.NoSuchService";
inline constexpr std::string_view kErrorServiceFailed = "io.fdsup.Manager.ServiceFailed";
inline constexpr std::string_view kErrorShuttingDown = "io.fdsup.Manager.ShuttingDown";
inline constexpr std::string_view kErrorRolloutInProgress = "io.fdsup.Manager.RolloutInProgress";
inline constexpr std::string_view kErrorRolloutFailed = "io.fdsup.Manager.RolloutFailed";
inline constexpr std::string_view kErrorNoRollout = "io.fdsup.Manager.NoRollout";
inline constexpr std::string_view kErrorConfigInvalid = "io.fdsup.Manager.ConfigInvalid";
inline constexpr std::string_view kErrorReloadRefused = "io.fdsup.Manager.ReloadRefused";
inline constexpr std::string_view kErrorReloadFailed = "io.fdsup.Manager.ReloadFailed";
inline constexpr std::string_view kErrorReexecuting = "io.fdsup.Manager.Reexecuting";
inline constexpr std::string_view kErrorReexecFailed = "io.fdsup.Manager.ReexecFailed";
inline constexpr std::string_view kErrorPermissionDenied = "org.varlink.service.PermissionDenied";
// A connected caller without the right a method needs (docs/access.md); the
// connection stays open.
inline constexpr std::string_view kErrorManagerPermissionDenied = "io.fdsup.Manager.PermissionDenied";
inline constexpr std::string_view kErrorInvalidParameter = "org.varlink.service.InvalidParameter";
inline constexpr std::string_view kErrorMethodNotFound = "org.varlink.service.MethodNotFound";
inline constexpr std::string_view kErrorInterfaceNotFound = "org.varlink.service.InterfaceNotFound";
inline constexpr std::string_view kErrorExpectedMore = "org.varlink.service.ExpectedMore";
// Not in the varlink standard: the request itself could not be read.
inline constexpr std::string_view kErrorInvalidRequest = "io.fdsup.Manager.InvalidRequest";
inline constexpr std::string_view kErrorRequestTooLarge = "io.fdsup.Manager.RequestTooLarge";
// Transfer (docs/transfer.md).
inline constexpr std::string_view kErrorTransferRefused = "io.fdsup.Manager.TransferRefused";

// Descriptors ride on the control socket only with Export's reply and
// Import's call (SCM_RIGHTS on the message's first byte): at most this many
// per message, and per call (the kernel's SCM_MAX_FD).
inline constexpr std::size_t kMaxCallFds = 253;

struct Call {
    std::string method; // "io.fdsup.Manager.Status"
    nlohmann::json parameters = nlohmann::json::object();
    bool more = false;
    bool oneway = false;
};

struct Reply {
    nlohmann::json parameters = nlohmann::json::object();
    bool continues = false;
    std::string error; // empty: success
};

inline constexpr std::string_view kServiceInterface = "org.varlink.service";

// One message, including its terminating NUL. Strings that are not valid
// UTF-8 are sent with U+FFFD in place of the bad bytes: encoding never throws.
std::string encodeCall(const Call &call);
std::string encodeReply(const Reply &reply);
// Parses one message (without its NUL). Errors (EINVAL) say what is wrong:
// not JSON, not an object, a member of the wrong type, a NUL byte.
Result<Call> decodeCall(std::string_view message);
Result<Reply> decodeReply(std::string_view message);

// The interface descriptions (Varlink IDL) org.varlink.service.
// GetInterfaceDescription returns; docs/control-api.md quotes them verbatim.
std::string_view managerInterfaceDescription();
std::string_view serviceInterfaceDescription();

// "io.fdsup.Manager" of "io.fdsup.Manager.Status"; empty when method is not
// a qualified name (decodeCall() refuses those).
std::string_view interfaceOf(std::string_view method);

// Reassembles NUL-terminated messages from a byte stream, with a size limit.
class FrameReader {
public:
    // maxMessage counts the bytes before the NUL.
    explicit FrameReader(std::size_t maxMessage) : maxMessage_(maxMessage) {}
    void append(std::string_view data);
    // 1: a message was moved to out; 0: need more data; -EMSGSIZE: the
    // pending message is larger than maxMessage (the stream is unusable, and
    // every later call says so again).
    int next(std::string &out);
    // Bytes received and not yet returned by next().
    [[nodiscard]] std::size_t pending() const { return buffer_.size() - start_; }

private:
    std::size_t maxMessage_;
    std::string buffer_;
    std::size_t start_ = 0;   // where the next message begins in buffer_
    std::size_t scanned_ = 0; // bytes after start_ known to hold no NUL
    bool failed_ = false;
};

// A blocking client for fdsupctl and tests. Every read and write has a deadline.
class Client {
public:
    // -errno style errors in Error::code: ECONNREFUSED/ENOENT (no daemon),
    // EACCES (socket permissions), ETIMEDOUT.
    static Result<Client> connect(const std::string &path, std::chrono::milliseconds timeout);
    // Sends a call and reads the first reply (for more=true, call next() until
    // !continues). A varlink error reply is a successful Result whose
    // Reply::error is set.
    Result<Reply> call(const Call &call);
    // The same with fds attached to the call's first byte (Import), at most
    // kMaxCallFds; they stay the caller's.
    Result<Reply> call(const Call &call, std::span<const BorrowedFd> fds);
    Result<Reply> next();
    // The fds that arrived with the replies read so far (Export), in order;
    // more than kMaxCallFds, or control data that was cut, fails the read
    // with EBADMSG.
    std::vector<UniqueFd> takeFds() { return std::exchange(fds_, {}); }
    void setTimeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

private:
    Client(UniqueFd fd, std::chrono::milliseconds timeout) : fd_(std::move(fd)), timeout_(timeout) {}
    UniqueFd fd_;
    std::chrono::milliseconds timeout_;
    FrameReader reader_{64U << 20};
    std::vector<UniqueFd> fds_;
};

} // namespace fdsup::varlink
