// fdsupd's logging set-up: spdlog to the console or the journal.
#include "io/log.hpp"

#include <memory>
#include <string>
#include <vector>

#include <sys/uio.h>
#include <syslog.h>

#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-journal.h>

#include "io/log_context.hpp"

namespace fdsup {
namespace {

int journalPriority(spdlog::level::level_enum level)
{
    switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
        return LOG_DEBUG;
    case spdlog::level::info:
        return LOG_INFO;
    case spdlog::level::warn:
        return LOG_WARNING;
    case spdlog::level::err:
        return LOG_ERR;
    case spdlog::level::critical:
        return LOG_CRIT;
    case spdlog::level::off:
    case spdlog::level::n_levels:
        break;
    }
    return LOG_INFO;
}

// spdlog's systemd_sink with the fields of the current LogScope: a line
// about an instance carries FDSUP_SERVICE=, FDSUP_INSTANCE=, FDSUP_PID= and
// FDSUP_GENERATION=, so `journalctl FDSUP_SERVICE=web` finds it.
class JournalSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
protected:
    void sink_it_(const spdlog::details::log_msg &msg) override
    {
        std::vector<std::string> fields{
            "MESSAGE=" + std::string(msg.payload.data(), msg.payload.size()),
            "PRIORITY=" + std::to_string(journalPriority(msg.level)),
            "SYSLOG_IDENTIFIER=fdsupd",
        };
        if (const LogSubject *subject = currentLogSubject()) {
            for (auto &field : journalFields(*subject)) {
                fields.push_back(std::move(field));
            }
        }
        std::vector<iovec> iov;
        iov.reserve(fields.size());
        for (auto &field : fields) {
            iov.push_back(iovec{field.data(), field.size()});
        }
        (void)sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
    }
    void flush_() override {}
};

} // namespace

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
        logger = std::make_shared<spdlog::logger>("fdsupd", std::make_shared<JournalSink>());
        logger->set_pattern("%v");
        break;
    }
    logger->set_level(lvl);
    spdlog::set_default_logger(logger);
    return true;
}

} // namespace fdsup
