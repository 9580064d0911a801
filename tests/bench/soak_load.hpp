// One fdsup-load process of the soak: started with a duration longer than any soak, stopped with SIGTERM
// when the restarts are over (tests/bench/load/README.md), its fdsup-load/1 JSON read back.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "test_support.hpp"

namespace fdsup::bench {

class SoakLoad {
public:
    // fdsup-load ($FDSUP_LOAD) --mode mode --connections n at 127.0.0.1:port; its JSON and log in dir.
    SoakLoad(const std::string &mode, int port, int connections, const std::filesystem::path &dir);

    // Waits until it holds its connections (a socket each): the load runs. False at the deadline.
    bool waitRunning();
    // SIGTERM, waits for it to write its results and exit; throws when it does not exit 0.
    nlohmann::json stop();
    [[nodiscard]] pid_t pid() const { return process_->pid(); }
    [[nodiscard]] const std::string &mode() const { return mode_; }

private:
    std::string mode_;
    int connections_;
    std::filesystem::path json_;
    std::unique_ptr<test::BackgroundProcess> process_;
};

} // namespace fdsup::bench
