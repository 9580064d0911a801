// The io.fdsup.Manager method table's types and the decoding of a call's parameters by it (pure).
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/access.hpp"
#include "api/control_server.hpp"
#include "config/config.hpp"

namespace fdsup {

// A call's parameters, decoded once by its method's specification: a
// parameter the method does not take stays empty.
struct CallParams {
    std::optional<std::string> service;
    std::optional<std::int64_t> batch;
    std::optional<config::RolloutOrder> order;
    std::optional<bool> queue;
    std::optional<bool> wait;
    std::optional<std::int64_t> timeoutUsec;
    std::optional<std::int64_t> instances;
    std::optional<std::int64_t> lines;
    std::optional<bool> follow;
    std::optional<std::string> binary;
};

struct ParamSpec {
    using Field =
        std::variant<std::optional<std::string> CallParams::*, std::optional<std::int64_t> CallParams::*,
                     std::optional<bool> CallParams::*, std::optional<config::RolloutOrder> CallParams::*>;
    std::string_view name;
    Field field;
    bool required = false;
    std::int64_t min = 0; // integers
    std::int64_t max = std::numeric_limits<std::int64_t>::max();
};
// The parameter's Varlink type: "string", "int", "bool" or "RolloutOrder".
std::string_view paramTypeName(const ParamSpec &spec);

class ControlApi;
class Service;

struct MethodSpec {
    using Handler = void (ControlApi::*)(const std::shared_ptr<PendingCall> &call, const CallParams &params,
                                         Service *service);
    std::string_view name; // without the interface: "Status"
    std::vector<ParamSpec> params;
    Access access = Access::Read;
    // Refused with ShuttingDown while fdsupd stops (after the service lookup).
    bool refusedWhileStopping = false;
    Handler handler = nullptr;
};

// The method of the table that `name` ("Restart", without the interface)
// names, or null (MethodNotFound).
const MethodSpec *findMethod(std::string_view name);
// Decodes a call's parameters by its method's specification, in the table's
// order: null when all decoded (into `out`), else the first one refused
// (InvalidParameter): missing but required, of the wrong type, out of range
// (`out` untouched).
// A parameter the method does not take is ignored. Pure: the fuzz target
// `control` runs it on every request it can frame.
const ParamSpec *decodeCallParams(const MethodSpec &method, const nlohmann::json &parameters,
                                  CallParams &out);

} // namespace fdsup
