// The benchmark programs' command line and their fdsup-bench/1 JSON, shared by every program in
// tests/bench (docs/benchmark.md): each reports every sample, the driver computes medians and ratios.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include <nlohmann/json.hpp>

namespace fdsup::bench {

// smoke: proves the machinery works (CI, <= 10 s); quick: <= 60 s; full: <= 8 min.
enum class Tier { Smoke, Quick, Full };

struct BenchArgs {
    Tier tier = Tier::Quick;
    std::string json; // empty: no JSON file
};

// `PROGRAM [--tier smoke|quick|full] [--json FILE]`; nullopt (with why) on a bad command line.
std::optional<BenchArgs> parseBenchArgs(int argc, char **argv, std::string &why);
const char *tierName(Tier tier);
std::optional<Tier> tierFromName(const std::string &name);

struct Target {
    std::string op; // ">=", "<=", "=="
    double value = 0;
    std::string text;
};

// One program's figures, each with every sample (the driver computes median, min and max).
class BenchReport {
public:
    BenchReport(std::string program, std::string section, Tier tier);

    // Declares a figure (the first call; later ones find it) and returns its samples, to which add() appends;
    // the reference is good until the next figure is declared.
    std::vector<double> &figure(const std::string &id, const std::string &label, const std::string &unit,
                                bool higherIsBetter, std::optional<Target> target = std::nullopt);
    void add(const std::string &id, double sample);
    // The samples of a figure so far, or nullptr when it was never declared.
    [[nodiscard]] const std::vector<double> *samples(const std::string &id) const;
    void ratio(const std::string &id, const std::string &label, const std::string &numerator,
               const std::string &denominator, std::optional<Target> target = std::nullopt);
    void note(std::string markdown) { notes_.push_back(std::move(markdown)); }
    void fact(const std::string &key, const std::string &value) { facts_[key] = value; }

    [[nodiscard]] nlohmann::json json() const;
    // The readable table on stdout: each figure's median, min, max and samples, each ratio's median.
    void print() const;
    // Writes json() to path; false (with why) when it cannot.
    bool write(const std::string &path, std::string &why) const;

private:
    struct Figure {
        std::string id, label, unit;
        bool higher = true;
        std::optional<Target> target;
        std::vector<double> samples;
    };
    struct Ratio {
        std::string id, label, numerator, denominator;
        std::optional<Target> target;
    };
    Figure &find(const std::string &id);
    [[nodiscard]] const Figure *lookup(const std::string &id) const;

    std::string program_, section_;
    Tier tier_;
    std::vector<Figure> figures_;
    std::vector<Ratio> ratios_;
    std::vector<std::string> notes_;
    nlohmann::json facts_ = nlohmann::json::object();
};

// The median of samples (0 when empty).
double median(std::vector<double> samples);

// Private_Clean + Private_Dirty of /proc/PID/smaps_rollup, KiB: a process's memory beyond what it shares.
double privateKibOf(pid_t pid);
// Private_Dirty alone, KiB: what the process wrote (heap, stacks, data). Its
// clean private pages are mostly its binary's text, private only while no
// other process maps the same binary, so a second copy running moves them.
double privateDirtyKibOf(pid_t pid);

// The path of a program found in $PATH (runProcess() does not search it); throws when there is none.
std::string programPath(const std::string &name);

// Runs a benchmark's body with the parsed arguments and writes the report: the main() of each program.
int benchMain(int argc, char **argv, const char *program, const char *section,
              const std::function<int(const BenchArgs &, BenchReport &)> &body);

} // namespace fdsup::bench
