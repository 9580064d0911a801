// Driving fdsupd's EventLoop from a test: iterate until a condition holds, within a deadline.
#pragma once

#include <chrono>
#include <cstring>
#include <functional>

#include <gtest/gtest.h>

#include "io/event_loop.hpp"

namespace fdsup::test {

// Runs loop iterations (each waiting at most 100ms) until done() or the
// deadline; no sleeps. A failing iteration is a test failure.
inline bool runLoopUntil(EventLoop &loop, const std::function<bool()> &done,
                         std::chrono::milliseconds deadline)
{
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= end) {
            return false;
        }
        const int r = loop.runOnce(std::chrono::milliseconds(100));
        if (r < 0) {
            ADD_FAILURE() << "runOnce: " << strerrordesc_np(-r);
            return false;
        }
    }
    return true;
}

} // namespace fdsup::test
