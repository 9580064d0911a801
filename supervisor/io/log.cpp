// fdsupd's logging set-up: spdlog to the console or the journal.
#include "io/log.hpp"

#include <memory>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>

namespace fdsup {

bool setupLogging(const std::string &level, config::LogTarget target)
{
    const auto lvl = spdlog::level::from_str(level);
    // from_str() maps anything unknown to "off"; only "off" itself may mean off.
    if (lvl == spdlog::level::off && level != "off") {
        return false;
    }
    std::shared_ptr<spdlog::logger> logger;
    switch (target) {
    case config::LogTarget::Console:
        // Built directly rather than through the registry helpers, which throw
        // when a logger of that name exists (the second call, after loading).
        logger = std::make_shared<spdlog::logger>("fdsupd",
                                                  std::make_shared<spdlog::sinks::stderr_color_sink_st>());
        // Under systemd the journal adds its own timestamp; keep the line short.
        logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
        break;
    case config::LogTarget::Journal:
        logger =
            std::make_shared<spdlog::logger>("fdsupd", std::make_shared<spdlog::sinks::systemd_sink_st>());
        logger->set_pattern("%v");
        break;
    }
    logger->set_level(lvl);
    spdlog::set_default_logger(logger);
    return true;
}

} // namespace fdsup
