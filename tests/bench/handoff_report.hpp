// handoff-bench's output: figures, ratios, notes and facts, as a table and as fdsup-bench/1 JSON
// (/work/briefs/bench-contract.md section 1; docs/benchmark.md).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fdsup::bench {

struct Target {
    std::string op; // ">=", "<=", "=="
    double value = 0;
    std::string text;
};

struct Figure {
    std::string id;
    std::string label;
    std::string unit;
    std::string better; // "higher" or "lower"
    std::vector<double> samples;
    std::optional<Target> target;
};

struct Ratio {
    std::string id;
    std::string label;
    std::string numerator;
    std::string denominator;
};

class Report {
public:
    Report(std::string program, std::string section, std::string tier);

    // The figure with this id, created with these properties on first use.
    Figure &figure(const std::string &id, const std::string &label, const std::string &unit,
                   const std::string &better, std::optional<Target> target = std::nullopt);
    void ratio(Ratio r) { ratios_.push_back(std::move(r)); }
    void note(std::string markdown) { notes_.push_back(std::move(markdown)); }
    void fact(const std::string &name, std::string value) { facts_[name] = std::move(value); }

    [[nodiscard]] const Figure *find(const std::string &id) const;
    [[nodiscard]] nlohmann::json json() const;
    // A readable table: every figure with its median, min and max, then the ratios' medians.
    [[nodiscard]] std::string table() const;

private:
    std::string program_;
    std::string section_;
    std::string tier_;
    std::vector<Figure> figures_;
    std::vector<Ratio> ratios_;
    std::vector<std::string> notes_;
    std::map<std::string, std::string> facts_;
};

double median(std::vector<double> samples);

} // namespace fdsup::bench
