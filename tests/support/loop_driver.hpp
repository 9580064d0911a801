// Driving fdsupd's EventLoop from a test: iterate until a condition holds, within a deadline.
#pragma once

#include <chrono>
#include <cstring>
#include <functional>

#include <gtest/gtest.h>

#include "io/event_loop.hpp"
#include "test_support.hpp"

namespace fdsup::test {

// Runs loop iterations, each waiting for an event at most `slice`, until
// done() or the deadline; no sleeps. A condition that only another thread
// changes (not a loop event) is seen within a slice, so such tests pass a
// short one. A failing iteration is a test failure.
inline bool runLoopUntil(EventLoop &loop, const std::function<bool()> &done,
                         std::chrono::milliseconds deadline = kEventDeadline,
                         std::chrono::milliseconds slice = std::chrono::milliseconds(100))
{
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= end) {
            return false;
        }
        const int r = loop.runOnce(slice);
        if (r < 0) {
            ADD_FAILURE() << "runOnce: " << strerrordesc_np(-r);
            return false;
        }
    }
    return true;
}

} // namespace fdsup::test
