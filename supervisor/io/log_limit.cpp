// LogLimit: a fixed window of log lines per source, the rest counted and reported with the next line.
#include "io/log_limit.hpp"

#include <utility>

namespace fdsup {

bool LogLimit::allow(std::uint64_t &suppressed, Clock::time_point now)
{
    suppressed = 0;
    if (!started_ || now - windowStart_ >= interval_) {
        started_ = true;
        windowStart_ = now;
        inWindow_ = 0;
    }
    if (inWindow_ >= burst_) {
        ++suppressed_;
        return false;
    }
    ++inWindow_;
    suppressed = std::exchange(suppressed_, 0);
    return true;
}

bool LogLimit::allow(std::string &note, Clock::time_point now)
{
    note.clear();
    std::uint64_t suppressed = 0;
    if (!allow(suppressed, now)) {
        return false;
    }
    if (suppressed > 0) {
        note = " (" + std::to_string(suppressed) + " similar messages suppressed)";
    }
    return true;
}

} // namespace fdsup
