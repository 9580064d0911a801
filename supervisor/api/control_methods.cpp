// The io.fdsup.Manager method table and the decoding of a call's parameters by it (pure).
#include <algorithm>
#include <type_traits>

#include "api/control_api.hpp"

namespace fdsup {
namespace {

using Json = nlohmann::json;

template <class>
[[maybe_unused]] inline constexpr bool kAlwaysFalse = false; // clang: used only in a discarded branch

// Reads one parameter into its field; false (the call failed with
// InvalidParameter) when it is missing but required, of the wrong type, or
// out of range.
bool decodeParam(const ParamSpec &spec, const Json &params, CallParams &out)
{
    const auto it = params.find(std::string(spec.name));
    if (it == params.end() || it->is_null()) {
        return !spec.required;
    }
    return std::visit(
        [&](auto field) {
            using Field = std::remove_reference_t<decltype(out.*field)>;
            if constexpr (std::is_same_v<Field, std::optional<std::string>>) {
                if (!it->is_string()) {
                    return false;
                }
                out.*field = it->template get<std::string>();
            } else if constexpr (std::is_same_v<Field, std::optional<std::int64_t>>) {
                if (!it->is_number_integer() || it->template get<std::int64_t>() < spec.min ||
                    it->template get<std::int64_t>() > spec.max) {
                    return false;
                }
                out.*field = it->template get<std::int64_t>();
            } else if constexpr (std::is_same_v<Field, std::optional<bool>>) {
                if (!it->is_boolean()) {
                    return false;
                }
                out.*field = it->template get<bool>();
            } else if constexpr (std::is_same_v<Field, std::optional<config::RolloutOrder>>) {
                if (!it->is_string() || (*it != "start-first" && *it != "stop-first")) {
                    return false;
                }
                out.*field =
                    *it == "start-first" ? config::RolloutOrder::StartFirst : config::RolloutOrder::StopFirst;
            } else {
                static_assert(kAlwaysFalse<Field>, "a parameter type without a decoder");
            }
            return true;
        },
        spec.field);
}

} // namespace

std::string_view paramTypeName(const ParamSpec &spec)
{
    switch (spec.field.index()) {
    case 0:
        return "string";
    case 1:
        return "int";
    case 2:
        return "bool";
    default:
        return "RolloutOrder";
    }
}

const std::vector<MethodSpec> &ControlApi::methods()
{
    const ParamSpec service{"service", &CallParams::service, true};
    const ParamSpec anyService{"service", &CallParams::service, false};
    static const std::vector<MethodSpec> table{
        {"Status", {anyService}, Access::Read, false, &ControlApi::callStatus},
        {"Sockets", {}, Access::Read, false, &ControlApi::callSockets},
        {"Connections", {anyService}, Access::Read, false, &ControlApi::callConnections},
        {"Start", {service}, Access::Operate, true, &ControlApi::callStart},
        {"Stop", {service}, Access::Operate, true, &ControlApi::callStop},
        {"Restart",
         {service,
          {"batch", &CallParams::batch, false, 1, kMaxInstances},
          {"order", &CallParams::order},
          {"queue", &CallParams::queue},
          {"wait", &CallParams::wait},
          {"timeout_usec", &CallParams::timeoutUsec, false, 1}},
         Access::Operate,
         true,
         &ControlApi::callRestart},
        {"RolloutStatus", {service}, Access::Read, false, &ControlApi::callRolloutStatus},
        {"RolloutCancel", {service}, Access::Operate, true, &ControlApi::callRolloutCancel},
        {"Scale",
         {service, {"instances", &CallParams::instances, true, 0, kMaxInstances}},
         Access::Operate,
         true,
         &ControlApi::callScale},
        {"Reload", {}, Access::Admin, false, &ControlApi::callReload},
        {"Events", {anyService}, Access::Read, false, &ControlApi::callEvents},
        {"Export", {}, Access::Admin, true, &ControlApi::callExport},
        {"Import", {}, Access::Admin, true, &ControlApi::callImport},
        {"Release", {}, Access::Admin, true, &ControlApi::callRelease},
        {"Logs",
         {service, {"lines", &CallParams::lines, false, 0}, {"follow", &CallParams::follow}},
         Access::Read,
         false,
         &ControlApi::callLogs},
        {"Reexec",
         {{"binary", &CallParams::binary}, {"timeout_usec", &CallParams::timeoutUsec, false, 1}},
         Access::Admin,
         true,
         &ControlApi::callReexec},
    };
    return table;
}

const MethodSpec *findMethod(std::string_view name)
{
    const auto &table = ControlApi::methods();
    const auto spec =
        std::find_if(table.begin(), table.end(), [&](const MethodSpec &m) { return m.name == name; });
    return spec == table.end() ? nullptr : &*spec;
}

const ParamSpec *decodeCallParams(const MethodSpec &method, const Json &parameters, CallParams &out)
{
    CallParams decoded;
    for (const auto &param : method.params) {
        if (!decodeParam(param, parameters, decoded)) {
            return &param;
        }
    }
    out = std::move(decoded);
    return nullptr;
}

} // namespace fdsup
