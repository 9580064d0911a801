// Fuzz target: a control call's parameters, decoded by the method table (after the Varlink framing).
// The input is one message, as the framing hands it over; a call of io.fdsup.Manager goes through
// findMethod() and decodeCallParams(), the daemon's own decoding, with nothing dispatched.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "api/control_api.hpp"
#include "control/varlink.hpp"
#include "fuzz.hpp"

namespace {

using Json = nlohmann::json;

// Whether the field a specification names was set.
bool isSet(const fdsup::CallParams &params, const fdsup::ParamSpec &spec)
{
    return std::visit([&](auto field) { return (params.*field).has_value(); }, spec.field);
}

// A decoded call holds exactly its parameters that were present and not
// null, integers within the specification's range; the required ones are there.
void checkDecoded(const fdsup::MethodSpec &method, const Json &parameters, const fdsup::CallParams &params)
{
    for (const auto &spec : method.params) {
        const auto it = parameters.find(std::string(spec.name));
        const bool present = it != parameters.end() && !it->is_null();
        if (isSet(params, spec) != present || (spec.required && !present)) {
            std::abort();
        }
        if (const auto *field = std::get_if<std::optional<std::int64_t> fdsup::CallParams::*>(&spec.field);
            field != nullptr && present && ((params.**field) < spec.min || (params.**field) > spec.max)) {
            std::abort();
        }
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    const std::string_view message(reinterpret_cast<const char *>(data), size);
    const auto call = fdsup::varlink::decodeCall(message);
    if (!call || fdsup::varlink::interfaceOf(call->method) != fdsup::varlink::kInterface) {
        return 0;
    }
    const std::string_view name =
        std::string_view(call->method).substr(fdsup::varlink::kInterface.size() + 1);
    const fdsup::MethodSpec *method = fdsup::findMethod(name);
    if (method == nullptr) {
        return 0;
    }
    fdsup::CallParams params;
    params.lines = -1; // a sentinel: a refused call leaves the output as it was
    if (const fdsup::ParamSpec *refused = fdsup::decodeCallParams(*method, call->parameters, params)) {
        if (params.lines != -1 || refused->name.empty()) {
            std::abort();
        }
        return 0;
    }
    checkDecoded(*method, call->parameters, params);
    return 0;
}
