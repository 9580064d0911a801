// UserManager: a real systemd user manager (and journald) in a private mount namespace, for the systemd
// suite.
#include "user_manager.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fdsup::test {
namespace {

std::string failed(const std::string &what)
{
    return what + ": " + std::strerror(errno);
}

std::string mountTmpfs(const char *path)
{
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        return failed(std::string("mkdir ") + path);
    }
    if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0) {
        return failed(std::string("mount tmpfs on ") + path);
    }
    return "";
}

} // namespace

std::string UserManager::isolate()
{
    if (geteuid() != 0) {
        return "a private mount namespace needs root (unshare(CLONE_NEWNS) and mounts)";
    }
    if (access("/lib/systemd/systemd", X_OK) < 0 || access("/lib/systemd/systemd-journald", X_OK) < 0) {
        return "systemd is not installed (/lib/systemd/systemd, /lib/systemd/systemd-journald)";
    }
    if (unshare(CLONE_NEWNS) < 0) {
        return failed("unshare(CLONE_NEWNS)");
    }
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) {
        return failed("mount --make-rprivate /");
    }
    for (const char *path : {"/run/systemd", "/run/log"}) {
        if (auto why = mountTmpfs(path); !why.empty()) {
            return why;
        }
    }
    struct stat st {};
    if (stat("/var/log/journal", &st) == 0) {
        if (auto why = mountTmpfs("/var/log/journal"); !why.empty()) {
            return why;
        }
    }
    if (mkdir("/run/systemd/system", 0755) < 0) {
        return failed("mkdir /run/systemd/system");
    }
    return "";
}

UserManager::UserManager()
{
    const auto runtime = dir_ / "runtime";
    const auto config = dir_ / "config";
    std::filesystem::create_directories(runtime);
    std::filesystem::permissions(runtime, std::filesystem::perms::owner_all);
    std::filesystem::create_directories(config / "systemd" / "user");
    setenv("XDG_RUNTIME_DIR", runtime.c_str(), 1);
    setenv("XDG_CONFIG_HOME", config.c_str(), 1);
    unsetenv("DBUS_SESSION_BUS_ADDRESS");
    unsetenv("NOTIFY_SOCKET");
    journald_ = std::make_unique<BackgroundProcess>(std::vector<std::string>{"/lib/systemd/systemd-journald"},
                                                    dir_ / "journald.log");
    manager_ = std::make_unique<BackgroundProcess>(std::vector<std::string>{"/lib/systemd/systemd", "--user"},
                                                   dir_ / "manager.log");
    std::string state;
    const bool up = waitUntil([&] {
        state = systemctl({"is-system-running"}).out;
        return state.starts_with("running") || state.starts_with("degraded");
    });
    if (!up) {
        throw std::runtime_error("the user manager did not start (is-system-running: " + state +
                                 "): " + log());
    }
}

UserManager::~UserManager()
{
    for (auto *process : {manager_.get(), journald_.get()}) {
        if (process != nullptr) {
            process->signal(SIGTERM);
            (void)process->wait(kEventDeadline);
        }
    }
}

ProcessResult UserManager::systemctl(const std::vector<std::string> &args,
                                     std::chrono::milliseconds deadline) const
{
    std::vector<std::string> argv{"/usr/bin/systemctl", "--user", "--no-pager"};
    argv.insert(argv.end(), args.begin(), args.end());
    return runProcess(argv, {}, deadline);
}

void UserManager::installUnit(const std::string &name, const std::string &text) const
{
    writeFile(dir_ / "config" / "systemd" / "user" / name, text);
    const auto reloaded = systemctl({"daemon-reload"});
    if (reloaded.exitCode != 0) {
        throw std::runtime_error("systemctl --user daemon-reload: " + reloaded.err);
    }
}

std::string UserManager::property(const std::string &unit, const std::string &name) const
{
    std::string value = systemctl({"show", "-p", name, "--value", unit}).out;
    while (!value.empty() && value.back() == '\n') {
        value.pop_back();
    }
    return value;
}

bool UserManager::waitProperty(const std::string &unit, const std::string &name, const std::string &value,
                               std::chrono::milliseconds deadline) const
{
    return waitUntil([&] { return property(unit, name) == value; }, deadline);
}

std::string UserManager::log() const
{
    return "\n--- manager:\n" + (manager_ ? manager_->log() : "") + "\n--- journald:\n" +
           (journald_ ? journald_->log() : "");
}

} // namespace fdsup::test
