// What fdsupd's log lines are about (a service, an instance), for the journal's structured fields.
#include "io/log_context.hpp"

namespace fdsup {
namespace {

thread_local const LogSubject *current = nullptr;

} // namespace

LogScope::LogScope(LogSubject subject) : subject_(std::move(subject)), previous_(current)
{
    current = &subject_;
}

LogScope::~LogScope()
{
    current = previous_;
}

const LogSubject *currentLogSubject()
{
    return current;
}

std::vector<std::string> journalFields(const LogSubject &subject)
{
    std::vector<std::string> fields;
    if (!subject.service.empty()) {
        fields.push_back("FDSUP_SERVICE=" + subject.service);
    }
    if (subject.instance) {
        fields.push_back("FDSUP_INSTANCE=" + std::to_string(*subject.instance));
    }
    if (subject.pid > 0) {
        fields.push_back("FDSUP_PID=" + std::to_string(subject.pid));
    }
    if (subject.generation > 0) {
        fields.push_back("FDSUP_GENERATION=" + std::to_string(subject.generation));
    }
    fields.insert(fields.end(), subject.fields.begin(), subject.fields.end());
    return fields;
}

} // namespace fdsup
