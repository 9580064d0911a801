// A daemonising server's pid file: waiting for it, and checking the pid it names is the instance's daemon.
#include "io/pid_file.hpp"

#include <cerrno>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <limits>

#include <sys/epoll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "io/proc.hpp"

namespace fdsup {

Result<pid_t> parsePidFile(std::string_view text, const std::string &path)
{
    text = text.substr(0, text.find('\n'));
    while (!text.empty() && (text.back() == ' ' || text.back() == '\r')) {
        text.remove_suffix(1);
    }
    if (text.empty()) {
        return Error{ENOENT, "pid_file " + path + " is empty"}; // created, not written yet
    }
    long pid = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), pid);
    if (ec != std::errc() || end != text.data() + text.size() || pid <= 1 ||
        pid > std::numeric_limits<pid_t>::max()) {
        return Error{EINVAL, "pid_file " + path + " does not hold a pid: '" + std::string(text) + "'"};
    }
    return static_cast<pid_t>(pid);
}

Result<pid_t> readDaemonPid(const std::string &path, const std::string &service, unsigned slot,
                            unsigned generation)
{
    std::ifstream in(path);
    if (!in) {
        return errnoError(errno == 0 ? ENOENT : errno, "pid_file " + path + " cannot be read");
    }
    std::string text;
    std::getline(in, text);
    const auto parsed = parsePidFile(text, path);
    if (!parsed) {
        return parsed.error();
    }
    const pid_t pid = *parsed;
    const std::string who = "pid " + std::to_string(pid) + " from pid_file " + path;
    const auto stat = readProcStat(pid);
    if (!stat || stat->state == 'Z') {
        return Error{ESRCH, who + " is not running"};
    }
    if (stat->ppid != getpid()) {
        return Error{EPERM, who + " is not fdsupd's child (its parent is pid " + std::to_string(stat->ppid) +
                                "): not a process this instance left behind"};
    }
    if (auto named = startEnvironment(static_cast<pid_t>(pid), "FDSUP_SERVICE");
        named && (*named != service ||
                  startEnvironment(static_cast<pid_t>(pid), "FDSUP_INSTANCE") != std::to_string(slot))) {
        return Error{EPERM, who + " belongs to another service or instance"};
    }
    if (auto named = startEnvironment(static_cast<pid_t>(pid), "FDSUP_GENERATION");
        named && *named != std::to_string(generation)) {
        return Error{EAGAIN, who + " is the daemon of generation " + *named};
    }
    return static_cast<pid_t>(pid);
}

std::unique_ptr<PidFileWatch> PidFileWatch::start(EventLoop &loop, Clock &clock, std::string path,
                                                  std::string service, unsigned slot, unsigned generation,
                                                  Duration deadline, Done done)
{
    std::unique_ptr<PidFileWatch> watch(
        new PidFileWatch(std::move(path), std::move(service), slot, generation, std::move(done)));
    PidFileWatch *self = watch.get();
    watch->inotify_ = UniqueFd(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    const std::string dir = std::filesystem::path(watch->path_).parent_path().string();
    if (watch->inotify_ && inotify_add_watch(watch->inotify_.get(), dir.c_str(),
                                             IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) >= 0) {
        if (auto io = loop.addIo(watch->inotify_.borrow(), EPOLLIN, [self](std::uint32_t) {
                char buffer[4096];
                while (read(self->inotify_.get(), buffer, sizeof buffer) > 0) {
                }
                (void)self->attempt();
            })) {
            watch->io_ = std::move(*io);
        }
    }
    if (auto timer = clock.startTimer(deadline, [self, deadline] {
            self->finish(Error{ETIMEDOUT, "pid_file " + self->path_ + " did not name the daemon within " +
                                              formatDuration(deadline)});
        })) {
        watch->deadline_ = std::move(*timer);
    }
    // The first attempt runs from the loop, not inside the caller's callback.
    if (auto defer = loop.addDefer([self] { (void)self->attempt(); })) {
        watch->first_ = std::move(*defer);
    }
    return watch;
}

bool PidFileWatch::attempt()
{
    auto pid = readDaemonPid(path_, service_, slot_, generation_);
    if (!pid && (pid.error().code == ENOENT || pid.error().code == EAGAIN)) {
        return false;
    }
    finish(std::move(pid));
    return true;
}

void PidFileWatch::finish(Result<pid_t> result)
{
    if (!done_) {
        return;
    }
    io_.reset();
    deadline_.reset();
    Done done = std::move(done_);
    done_ = nullptr;
    done(std::move(result)); // may destroy this
}

} // namespace fdsup
