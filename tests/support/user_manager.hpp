// UserManager: a real systemd user manager (and journald) in a private mount namespace, for the systemd
// suite.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace fdsup::test {

// The manager runs as this process's uid with XDG_RUNTIME_DIR (0700) and
// XDG_CONFIG_HOME under a temporary directory; units go to
// $XDG_CONFIG_HOME/systemd/user. journald runs beside it, writing only to
// the namespace's own /run/log/journal, so `journalctl -D journalDir()`
// reads what the units logged. Everything is gone when the test process
// exits: the mounts live in its namespace, both daemons are stopped by the
// destructor (SIGTERM, wait; SIGKILL past the deadline) and die with the
// test process otherwise (PR_SET_PDEATHSIG).
class UserManager {
public:
    // Moves this process into a private mount namespace (unshare(CLONE_NEWNS),
    // / made rprivate), makes /run a mount point (as on a booted system)
    // and mounts tmpfs on /run/systemd (with an empty
    // /run/systemd/system, which makes systemd believe it is booted by
    // systemd, and the inaccessible nodes PID 1 makes), /run/log and /var/log/journal, so nothing of the
    // host's is seen or touched, and a tmpfs beside the test binary as TMPDIR (the packaged unit's
    // PrivateTmp= hides the test's /tmp from fdsupd). Call once, before any thread starts. Returns an empty
    // string, or why it is impossible (not root, no namespaces): the caller skips.
    static std::string isolate();

    // Starts journald and `systemd --user` and waits (kEventDeadline) until
    // `systemctl --user is-system-running` says running or degraded. Throws
    // when they do not start. Sets XDG_RUNTIME_DIR and XDG_CONFIG_HOME in
    // this process's environment (systemctl needs them).
    UserManager();
    ~UserManager();
    UserManager(const UserManager &) = delete;
    UserManager &operator=(const UserManager &) = delete;

    [[nodiscard]] const std::filesystem::path &dir() const { return dir_.path(); }
    [[nodiscard]] std::filesystem::path journalDir() const { return "/run/log/journal"; }

    // `systemctl --user ARGS...`.
    ProcessResult systemctl(const std::vector<std::string> &args,
                            std::chrono::milliseconds deadline = std::chrono::seconds(60)) const;
    // Writes $XDG_CONFIG_HOME/systemd/user/NAME and runs daemon-reload.
    void installUnit(const std::string &name, const std::string &text) const;
    // `systemctl --user show -p PROPERTY --value UNIT`, without the newline.
    [[nodiscard]] std::string property(const std::string &unit, const std::string &name) const;
    // Waits until the property has the value; false at the deadline.
    bool waitProperty(const std::string &unit, const std::string &name, const std::string &value,
                      std::chrono::milliseconds deadline = kEventDeadline) const;
    // What the manager and journald printed (for failure messages).
    [[nodiscard]] std::string log() const;

private:
    TempDir dir_;
    std::unique_ptr<BackgroundProcess> journald_;
    std::unique_ptr<BackgroundProcess> manager_;
};

} // namespace fdsup::test
