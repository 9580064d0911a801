// What fdsupd's log lines are about (a service, an instance), for the journal's structured fields.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace fdsup {

// The subject of a log line: the journal gets it as fields (docs/systemd.md).
struct LogSubject {
    std::string service;
    std::optional<unsigned> instance;  // the slot: web[0] is 0
    pid_t pid = 0;                     // 0: none (yet)
    std::uint64_t generation = 0;      // 0: unknown
    std::vector<std::string> fields{}; // more journal fields, "NAME=value" (the audit line's)
};

// Makes `subject` what every log line is about while it lives. Scopes nest:
// the innermost wins and the previous one is restored when it ends. fdsupd
// logs from one thread; each thread has its own.
class LogScope {
public:
    explicit LogScope(LogSubject subject);
    ~LogScope();
    LogScope(const LogScope &) = delete;
    LogScope &operator=(const LogScope &) = delete;

private:
    LogSubject subject_;
    const LogSubject *previous_;
};

// The current scope's subject, or null.
[[nodiscard]] const LogSubject *currentLogSubject();

// The journal fields of a subject, those it knows: FDSUP_SERVICE=,
// FDSUP_INSTANCE=, FDSUP_PID= (not _PID=, which the journal sets to
// fdsupd's own and trusts), FDSUP_GENERATION=. The names are the ones
// workers get in their environment.
[[nodiscard]] std::vector<std::string> journalFields(const LogSubject &subject);

} // namespace fdsup
