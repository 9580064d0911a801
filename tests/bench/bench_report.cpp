// The benchmark programs' command line and their fdsup-bench/1 report.
#include "bench_report.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string_view>

#include <unistd.h>

namespace fdsup::bench {

std::optional<BenchArgs> parseBenchArgs(int argc, char **argv, std::string &why)
{
    BenchArgs args;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if ((a == "--tier" || a == "--json") && i + 1 >= argc) {
            why = a + " needs a value";
            return std::nullopt;
        }
        if (a == "--tier") {
            const std::string t = argv[++i];
            const auto tier = tierFromName(t);
            if (!tier) {
                why = "--tier " + t + ": expected smoke, quick or full";
                return std::nullopt;
            }
            args.tier = *tier;
        } else if (a == "--json") {
            args.json = argv[++i];
        } else {
            why = "unknown argument '" + a + "' (usage: [--tier smoke|quick|full] [--json FILE])";
            return std::nullopt;
        }
    }
    return args;
}

const char *tierName(Tier tier)
{
    switch (tier) {
    case Tier::Smoke:
        return "smoke";
    case Tier::Quick:
        return "quick";
    case Tier::Full:
        return "full";
    }
    return "quick";
}

std::optional<Tier> tierFromName(const std::string &name)
{
    for (const Tier tier : {Tier::Smoke, Tier::Quick, Tier::Full}) {
        if (name == tierName(tier)) {
            return tier;
        }
    }
    return std::nullopt;
}

double median(std::vector<double> samples)
{
    if (samples.empty()) {
        return 0;
    }
    std::sort(samples.begin(), samples.end());
    const std::size_t n = samples.size();
    return n % 2 == 1 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
}

std::string programPath(const std::string &name)
{
    const char *path = std::getenv("PATH");
    std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
    std::size_t start = 0;
    while (start <= dirs.size()) {
        const std::size_t end = std::min(dirs.find(':', start), dirs.size());
        std::string candidate = dirs.substr(start, end - start) + "/" + name;
        if (end > start && access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
        start = end + 1;
    }
    throw std::runtime_error(name + " is not installed (not found in PATH)");
}

namespace {
// The sum of the given fields of /proc/PID/smaps_rollup, KiB.
double smapsKibOf(pid_t pid, std::initializer_list<std::string_view> fields)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
    std::string key;
    long total = 0;
    while (in >> key) {
        if (std::find(fields.begin(), fields.end(), key) != fields.end()) {
            long kib = 0;
            in >> kib;
            total += kib;
        }
        in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    }
    return static_cast<double>(total);
}
} // namespace

double privateKibOf(pid_t pid)
{
    return smapsKibOf(pid, {"Private_Clean:", "Private_Dirty:"});
}

double privateDirtyKibOf(pid_t pid)
{
    return smapsKibOf(pid, {"Private_Dirty:"});
}

BenchReport::BenchReport(std::string program, std::string section, Tier tier)
    : program_(std::move(program)), section_(std::move(section)), tier_(tier)
{}

std::vector<double> &BenchReport::figure(const std::string &id, const std::string &label,
                                         const std::string &unit, bool higherIsBetter,
                                         std::optional<Target> target)
{
    if (lookup(id) == nullptr) {
        figures_.push_back(Figure{id, label, unit, higherIsBetter, std::move(target), {}});
    }
    return find(id).samples;
}

const std::vector<double> *BenchReport::samples(const std::string &id) const
{
    const Figure *f = lookup(id);
    return f != nullptr ? &f->samples : nullptr;
}

BenchReport::Figure &BenchReport::find(const std::string &id)
{
    const auto it =
        std::find_if(figures_.begin(), figures_.end(), [&](const Figure &f) { return f.id == id; });
    if (it == figures_.end()) {
        throw std::logic_error("figure " + id + " was not declared");
    }
    return *it;
}

const BenchReport::Figure *BenchReport::lookup(const std::string &id) const
{
    const auto it =
        std::find_if(figures_.begin(), figures_.end(), [&](const Figure &f) { return f.id == id; });
    return it == figures_.end() ? nullptr : &*it;
}

void BenchReport::add(const std::string &id, double sample)
{
    find(id).samples.push_back(sample);
}

void BenchReport::ratio(const std::string &id, const std::string &label, const std::string &numerator,
                        const std::string &denominator, std::optional<Target> target)
{
    ratios_.push_back(Ratio{id, label, numerator, denominator, std::move(target)});
}

namespace {

nlohmann::json targetJson(const std::optional<Target> &target)
{
    if (!target) {
        return nullptr;
    }
    return {{"op", target->op}, {"value", target->value}, {"text", target->text}};
}

} // namespace

nlohmann::json BenchReport::json() const
{
    nlohmann::json figures = nlohmann::json::array();
    for (const auto &f : figures_) {
        figures.push_back({{"id", f.id},
                           {"label", f.label},
                           {"unit", f.unit},
                           {"better", f.higher ? "higher" : "lower"},
                           {"samples", f.samples},
                           {"target", targetJson(f.target)}});
    }
    nlohmann::json ratios = nlohmann::json::array();
    for (const auto &r : ratios_) {
        ratios.push_back({{"id", r.id},
                          {"label", r.label},
                          {"numerator", r.numerator},
                          {"denominator", r.denominator},
                          {"target", targetJson(r.target)}});
    }
    return {{"schema", "fdsup-bench/1"}, {"program", program_}, {"section", section_},
            {"tier", tierName(tier_)},   {"figures", figures},  {"ratios", ratios},
            {"notes", notes_},           {"facts", facts_}};
}

void BenchReport::print() const
{
    (void)std::printf("%-44s %12s %12s %12s  %-10s %s\n", "figure", "median", "min", "max", "unit", "target");
    for (const auto &f : figures_) {
        if (f.samples.empty()) {
            continue;
        }
        const auto [lo, hi] = std::minmax_element(f.samples.begin(), f.samples.end());
        (void)std::printf("%-44s %12.3f %12.3f %12.3f  %-10s %s\n", f.id.c_str(), median(f.samples), *lo, *hi,
                          f.unit.c_str(), f.target ? f.target->text.c_str() : "");
    }
    for (const auto &r : ratios_) {
        const Figure *num = lookup(r.numerator);
        const Figure *den = lookup(r.denominator);
        if (num == nullptr || den == nullptr || num->samples.size() != den->samples.size() ||
            num->samples.empty()) {
            continue;
        }
        std::vector<double> each;
        for (std::size_t i = 0; i < num->samples.size(); ++i) {
            each.push_back(den->samples[i] != 0 ? num->samples[i] / den->samples[i] : 0);
        }
        const auto [lo, hi] = std::minmax_element(each.begin(), each.end());
        (void)std::printf("%-44s %12.4f %12.4f %12.4f  %-10s %s\n", r.id.c_str(), median(each), *lo, *hi,
                          "ratio", r.target ? r.target->text.c_str() : "");
    }
    for (const auto &[key, value] : facts_.items()) {
        (void)std::printf("%s: %s\n", key.c_str(), value.get<std::string>().c_str());
    }
    (void)std::fflush(stdout);
}

bool BenchReport::write(const std::string &path, std::string &why) const
{
    std::ofstream out(path);
    out << json().dump(2) << '\n';
    out.close();
    if (!out) {
        why = "cannot write " + path;
        return false;
    }
    return true;
}

int benchMain(int argc, char **argv, const char *program, const char *section,
              const std::function<int(const BenchArgs &, BenchReport &)> &body)
{
    std::string why;
    const auto args = parseBenchArgs(argc, argv, why);
    if (!args) {
        (void)std::fprintf(stderr, "%s: %s\n", program, why.c_str());
        return 2;
    }
    try {
        BenchReport report(program, section, args->tier);
        const int status = body(*args, report);
        report.print();
        if (!args->json.empty() && !report.write(args->json, why)) {
            (void)std::fprintf(stderr, "%s: %s\n", program, why.c_str());
            return 1;
        }
        return status;
    } catch (const std::exception &e) {
        (void)std::fprintf(stderr, "%s: %s\n", program, e.what());
        return 1;
    }
}

} // namespace fdsup::bench
