// SoakLoad: fdsup-load as a background process of the soak.
#include "soak_load.hpp"

#include <csignal>
#include <stdexcept>

namespace fdsup::bench {

SoakLoad::SoakLoad(const std::string &mode, int port, int connections, const std::filesystem::path &dir)
    : mode_(mode), connections_(connections), json_(dir / ("load-" + mode + ".json"))
{
    // A day: longer than any soak, which stops it (SIGTERM) when its restarts are over.
    process_ = std::make_unique<test::BackgroundProcess>(
        std::vector<std::string>{test::requireEnv("FDSUP_LOAD"), "--target",
                                 "127.0.0.1:" + std::to_string(port), "--mode", mode, "--connections",
                                 std::to_string(connections), "--duration", "1440m", "--json", json_.string(),
                                 "--quiet"},
        dir / ("load-" + mode + ".log"));
}

bool SoakLoad::waitRunning()
{
    return test::waitUntil([&] {
        int sockets = 0;
        for (const auto &[fd, what] : test::openFds(process_->pid())) {
            sockets += what.starts_with("socket:") ? 1 : 0;
        }
        return sockets >= connections_;
    });
}

nlohmann::json SoakLoad::stop()
{
    process_->signal(SIGTERM);
    const auto status = process_->wait(test::kEventDeadline);
    if (status != 0) {
        throw std::runtime_error("fdsup-load --mode " + mode_ + " did not end well (status " +
                                 (status ? std::to_string(*status) : "none: still running") +
                                 "): " + process_->log());
    }
    return nlohmann::json::parse(test::readFile(json_));
}

} // namespace fdsup::bench
