// The results of a run for people (the summary) and for programs (JSON, schema fdsup-load/1).
#pragma once

#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "options.hpp"
#include "results.hpp"

namespace fdsup::load {

nlohmann::json reportJson(const Options &options, const Report &report);
void printSummary(std::ostream &out, const Options &options, const Report &report);

} // namespace fdsup::load
