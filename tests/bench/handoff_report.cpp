// handoff-bench's output: the table and the fdsup-bench/1 JSON.
#include "handoff_report.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace fdsup::bench {

double median(std::vector<double> samples)
{
    if (samples.empty()) {
        return 0;
    }
    std::sort(samples.begin(), samples.end());
    const std::size_t mid = samples.size() / 2;
    return samples.size() % 2 == 1 ? samples[mid] : (samples[mid - 1] + samples[mid]) / 2;
}

Report::Report(std::string program, std::string section, std::string tier)
    : program_(std::move(program)), section_(std::move(section)), tier_(std::move(tier))
{}

Figure &Report::figure(const std::string &id, const std::string &label, const std::string &unit,
                       const std::string &better, std::optional<Target> target)
{
    for (auto &f : figures_) {
        if (f.id == id) {
            return f;
        }
    }
    figures_.push_back(Figure{id, label, unit, better, {}, std::move(target)});
    return figures_.back();
}

const Figure *Report::find(const std::string &id) const
{
    for (const auto &f : figures_) {
        if (f.id == id) {
            return &f;
        }
    }
    return nullptr;
}

nlohmann::json Report::json() const
{
    nlohmann::json figures = nlohmann::json::array();
    for (const auto &f : figures_) {
        nlohmann::json target;
        if (f.target) {
            target = {{"op", f.target->op}, {"value", f.target->value}, {"text", f.target->text}};
        }
        figures.push_back({{"id", f.id},
                           {"label", f.label},
                           {"unit", f.unit},
                           {"better", f.better},
                           {"samples", f.samples},
                           {"target", target}});
    }
    nlohmann::json ratios = nlohmann::json::array();
    for (const auto &r : ratios_) {
        ratios.push_back({{"id", r.id},
                          {"label", r.label},
                          {"numerator", r.numerator},
                          {"denominator", r.denominator},
                          {"target", nullptr}});
    }
    return {{"schema", "fdsup-bench/1"}, {"program", program_}, {"section", section_}, {"tier", tier_},
            {"figures", figures},        {"ratios", ratios},    {"notes", notes_},     {"facts", facts_}};
}

std::string Report::table() const
{
    std::string out;
    char line[512];
    (void)std::snprintf(line, sizeof line, "%-34s %14s %14s %14s  %-9s %s\n", "figure", "median", "min",
                        "max", "unit", "target");
    out += line;
    for (const auto &f : figures_) {
        const auto [lo, hi] = std::minmax_element(f.samples.begin(), f.samples.end());
        (void)std::snprintf(line, sizeof line, "%-34s %14.1f %14.1f %14.1f  %-9s %s\n", f.id.c_str(),
                            median(f.samples), f.samples.empty() ? 0.0 : *lo, f.samples.empty() ? 0.0 : *hi,
                            f.unit.c_str(), f.target ? f.target->text.c_str() : "");
        out += line;
    }
    for (const auto &r : ratios_) {
        const Figure *num = find(r.numerator);
        const Figure *den = find(r.denominator);
        std::vector<double> each;
        for (std::size_t i = 0;
             num != nullptr && den != nullptr && i < num->samples.size() && i < den->samples.size(); ++i) {
            each.push_back(num->samples[i] / den->samples[i]);
        }
        (void)std::snprintf(line, sizeof line, "%-34s %14.4f  (ratio, median of %zu)\n", r.id.c_str(),
                            median(each), each.size());
        out += line;
    }
    return out;
}

} // namespace fdsup::bench
