// UserManager: a real systemd user manager (and journald) in a private mount namespace, for the systemd
// suite.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace fdsup::test {

// Which systemd: the manager and the systemctl that talks to it. By default
// the host's (252 on Debian 12).
struct SystemdBinaries {
    std::string manager = "/lib/systemd/systemd";
    std::string systemctl = "/usr/bin/systemctl";
};

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
    // isolate() once per process, its answer remembered: every suite of a
    // test binary shares the namespace, and runs its managers one after
    // the other (two at once would share this process's cgroup, and a
    // unit's name in both).
    static std::string isolateOnce();

    // systemd 254 from bookworm-backports (Type=notify-reload needs 253),
    // as .ci/backports-systemd unpacks it: DIR/systemd and DIR/systemctl,
    // DIR being $FDSUP_BACKPORTS_SYSTEMD, or backports-systemd in the CI
    // cache ($FDSUP_CI_CACHE, else $XDG_CACHE_HOME/fdsup-ci, else
    // $HOME/.cache/fdsup-ci). nullopt, with `where` set to DIR, when it is
    // not there.
    static std::optional<SystemdBinaries> backportsSystemd(std::string &where);

    // Starts journald (always the host's) and `MANAGER --user` and waits
    // (kEventDeadline) until `systemctl --user is-system-running` says
    // running or degraded. Throws when they do not start. Sets
    // XDG_RUNTIME_DIR and XDG_CONFIG_HOME in this process's environment
    // (systemctl needs them).
    explicit UserManager(SystemdBinaries binaries = {});
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
    // A user manager takes the cgroup it starts in, less a final
    // /init.scope, as its root, and puts its units below it
    // (app.slice/fdsupd.service). Started in the container's init.scope,
    // every test process's manager (and every other engineer's) would share
    // the cgroup root, and stopping one's fdsupd.service would kill
    // another's. So this process moves into a cgroup of its own,
    // fdsup-test-PID, in each hierarchy systemd uses, before starting the
    // manager; the destructor moves it back and removes it.
    void enterOwnCgroup();

    std::vector<std::pair<std::filesystem::path, std::filesystem::path>> cgroups_; // where it was, its own
    SystemdBinaries binaries_;
    TempDir dir_;
    std::unique_ptr<BackgroundProcess> journald_;
    std::unique_ptr<BackgroundProcess> manager_;
};

// text with every `from` replaced by `to`.
std::string replaced(std::string text, const std::string &from, const std::string &to);

// The packaged unit (packaging/systemd/fdsupd.service.in, $FDSUP_SERVICE_UNIT)
// with the paths of this build and test: the unit under test is the one we
// ship.
std::string packagedUnit(const std::string &config, const std::string &control);

// The fixture the systemd suites share (CRTP: each suite its own statics).
// Once per suite: the process isolated, then Derived::startManager() (by
// default the host's manager; it may set skip_, or fail_ to fail each test
// instead). Each test: skipped with the reason, or failed, when there is no
// manager; its own temporary directory; afterwards Derived::units() stopped
// and reset.
template <class Derived>
class ManagedUnitTest : public ::testing::Test {
protected:
    static void SetUpTestSuite()
    {
        skip_ = UserManager::isolateOnce();
        if (skip_.empty()) {
            Derived::startManager();
        }
    }
    static void TearDownTestSuite() { manager_.reset(); }
    static void startManager() { manager_ = std::make_unique<UserManager>(); }
    static std::vector<std::string> units() { return {"fdsupd.service"}; }
    void SetUp() override
    {
        if (!fail_.empty()) {
            FAIL() << fail_;
        }
        if (!skip_.empty()) {
            GTEST_SKIP() << "no systemd user manager: " << skip_;
        }
    }
    void TearDown() override
    {
        if (manager_ != nullptr) {
            for (const auto &unit : Derived::units()) {
                (void)manager_->systemctl({"stop", unit});
                (void)manager_->systemctl({"reset-failed", unit});
            }
        }
    }
    [[nodiscard]] std::string control() const { return (dir_ / "control.sock").string(); }

    static inline std::string skip_;
    static inline std::string fail_;
    static inline std::unique_ptr<UserManager> manager_;
    TempDir dir_;
};

} // namespace fdsup::test
