// The control API's wire format: Varlink message codec and stream framing.
#include "control/varlink.hpp"

#include <algorithm>
#include <cerrno>

namespace fdsup::varlink {
namespace {

using Json = nlohmann::json;

// Replacing invalid UTF-8 instead of throwing: a worker's STATUS= text or a
// file name can hold any bytes, and encoding runs inside event callbacks.
std::string dump(const Json &j)
{
    std::string out = j.dump(-1, ' ', false, Json::error_handler_t::replace);
    out.push_back('\0');
    return out;
}

Error invalid(std::string message)
{
    return Error{EINVAL, std::move(message)};
}

// Parses one message into an object, or says why it is not one.
Result<Json> parseObject(std::string_view message)
{
    // nlohmann would stop at a NUL as if the text ended there; a NUL inside a
    // message means the sender's framing is broken, so it is refused.
    if (message.find('\0') != std::string_view::npos) {
        return invalid("message contains a NUL byte");
    }
    // No exceptions: parse() with allow_exceptions=false returns a discarded
    // value on any syntax error, including trailing garbage.
    Json j = Json::parse(message, nullptr, false);
    if (j.is_discarded()) {
        return invalid("message is not valid JSON");
    }
    if (!j.is_object()) {
        return invalid("message is not a JSON object");
    }
    return j;
}

// Reads an optional boolean member; false when absent.
bool optionalBool(const Json &j, const char *key, bool &out, std::string &why)
{
    const auto it = j.find(key);
    if (it == j.end()) {
        out = false;
        return true;
    }
    if (!it->is_boolean()) {
        why = std::string("'") + key + "' is not a boolean";
        return false;
    }
    out = it->get<bool>();
    return true;
}

bool optionalParameters(const Json &j, Json &out, std::string &why)
{
    const auto it = j.find("parameters");
    if (it == j.end() || it->is_null()) {
        out = Json::object();
        return true;
    }
    if (!it->is_object()) {
        why = "'parameters' is not an object";
        return false;
    }
    out = *it;
    return true;
}

// Varlink names: interface "a.b.c" (lower case, digits, '-', dots between
// parts) and method "CamelCase" after the last dot.
bool isValidMethod(std::string_view method)
{
    const std::string_view interface = interfaceOf(method);
    if (interface.empty()) {
        return false;
    }
    const std::string_view name = method.substr(interface.size() + 1);
    if (name.empty() || name.front() < 'A' || name.front() > 'Z') {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    });
}

} // namespace

std::string_view interfaceOf(std::string_view method)
{
    const std::size_t dot = method.rfind('.');
    if (dot == std::string_view::npos || dot == 0 || dot + 1 == method.size()) {
        return {};
    }
    return method.substr(0, dot);
}

std::string encodeCall(const Call &call)
{
    Json j = {{"method", call.method}, {"parameters", call.parameters}};
    // Absent rather than false: what varlink clients send, and shorter.
    if (call.more) {
        j["more"] = true;
    }
    if (call.oneway) {
        j["oneway"] = true;
    }
    return dump(j);
}

std::string encodeReply(const Reply &reply)
{
    Json j = {{"parameters", reply.parameters}};
    if (!reply.error.empty()) {
        j["error"] = reply.error;
    } else if (reply.continues) {
        j["continues"] = true;
    }
    return dump(j);
}

Result<Call> decodeCall(std::string_view message)
{
    auto parsed = parseObject(message);
    if (!parsed) {
        return parsed.error();
    }
    const Json &j = *parsed;
    Call call;
    const auto method = j.find("method");
    if (method == j.end()) {
        return invalid("'method' is missing");
    }
    if (!method->is_string()) {
        return invalid("'method' is not a string");
    }
    call.method = method->get<std::string>();
    if (!isValidMethod(call.method)) {
        return invalid("'method' is not a qualified method name (interface.Method): '" + call.method + "'");
    }
    std::string why;
    if (!optionalParameters(j, call.parameters, why) || !optionalBool(j, "more", call.more, why) ||
        !optionalBool(j, "oneway", call.oneway, why)) {
        return invalid(why);
    }
    if (call.more && call.oneway) {
        return invalid("'more' and 'oneway' exclude each other");
    }
    // "upgrade" (switching to another protocol) is not offered.
    if (const auto upgrade = j.find("upgrade"); upgrade != j.end() && *upgrade == true) {
        return invalid("'upgrade' is not supported");
    }
    return call;
}

Result<Reply> decodeReply(std::string_view message)
{
    auto parsed = parseObject(message);
    if (!parsed) {
        return parsed.error();
    }
    const Json &j = *parsed;
    Reply reply;
    std::string why;
    if (!optionalParameters(j, reply.parameters, why) ||
        !optionalBool(j, "continues", reply.continues, why)) {
        return invalid(why);
    }
    if (const auto error = j.find("error"); error != j.end()) {
        if (!error->is_string() || error->get_ref<const std::string &>().empty()) {
            return invalid("'error' is not a non-empty string");
        }
        reply.error = error->get<std::string>();
    }
    return reply;
}

void FrameReader::append(std::string_view data)
{
    // Compact lazily: moving the unread tail only once the consumed head is
    // the larger part keeps many small pipelined messages linear.
    if (start_ > 0 && start_ >= buffer_.size() - start_) {
        buffer_.erase(0, start_);
        start_ = 0;
    }
    buffer_.append(data);
}

int FrameReader::next(std::string &out)
{
    if (failed_) {
        return -EMSGSIZE;
    }
    const std::size_t nul = buffer_.find('\0', start_ + scanned_);
    if (nul == std::string::npos) {
        scanned_ = buffer_.size() - start_;
        if (scanned_ > maxMessage_) {
            failed_ = true;
            return -EMSGSIZE;
        }
        return 0;
    }
    if (nul - start_ > maxMessage_) {
        failed_ = true;
        return -EMSGSIZE;
    }
    out.assign(buffer_, start_, nul - start_);
    start_ = nul + 1;
    scanned_ = 0;
    if (start_ == buffer_.size()) {
        buffer_.clear();
        start_ = 0;
    }
    return 1;
}

} // namespace fdsup::varlink
