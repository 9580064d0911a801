// LogLimit: at most a burst of log lines per interval from one source, so that a flood does not flood the
// log.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace fdsup {

// One per source of lines that an outsider can trigger at will (a worker's
// notify datagrams, control clients): the first `burst` lines of each
// `interval` are logged, the rest counted, and the next line logged says how
// many were held back. Lines held back at the end of a flood are only
// reported with the next line that gets through (there is no timer).
class LogLimit {
public:
    using Clock = std::chrono::steady_clock;

    static constexpr Clock::duration kInterval = std::chrono::seconds(10);
    static constexpr unsigned kBurst = 5;

    explicit LogLimit(Clock::duration interval = kInterval, unsigned burst = kBurst)
        : interval_(interval), burst_(burst)
    {}

    // Whether to log a line now. When it returns true, `suppressed` is the
    // number of lines held back since the last one logged (0 otherwise).
    bool allow(std::uint64_t &suppressed, Clock::time_point now = Clock::now());
    // The same, as the text to append to the line: "" or
    // " (N similar messages suppressed)"; left empty when it returns false.
    bool allow(std::string &note, Clock::time_point now = Clock::now());

    // Lines held back and not yet reported.
    [[nodiscard]] std::uint64_t held() const { return suppressed_; }

private:
    Clock::duration interval_;
    unsigned burst_;
    Clock::time_point windowStart_{};
    unsigned inWindow_ = 0;
    std::uint64_t suppressed_ = 0;
    bool started_ = false;
};

} // namespace fdsup
