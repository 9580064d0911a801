// fdsup-load: drives load at a server while it is restarted and counts what clients saw (README.md).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string_view>
#include <vector>

#include "load_loop.hpp"
#include "options.hpp"
#include "report.hpp"

using namespace fdsup::load;

int main(int argc, char **argv)
{
    std::vector<std::string_view> args(argv + 1, argv + argc);
    ParseResult parsed = parseOptions(args);
    if (parsed.help) {
        std::cout << usage();
        return 0;
    }
    if (!parsed.options) {
        std::cerr << "fdsup-load: " << parsed.error << "\n" << usage();
        return 2;
    }
    const Options &options = *parsed.options;
    Report report;
    std::string why;
    if (!runLoad(options, report, why)) {
        std::cerr << "fdsup-load: " << why << "\n";
        return 1;
    }
    if (options.jsonFile) {
        std::ofstream out(*options.jsonFile);
        out << reportJson(options, report).dump(2) << "\n";
        out.close();
        if (!out) {
            std::cerr << "fdsup-load: cannot write " << *options.jsonFile << "\n";
            return 1;
        }
    }
    if (!options.quiet) {
        printSummary(std::cout, options, report);
    }
    return 0;
}
