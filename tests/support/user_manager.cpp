// UserManager: a real systemd user manager (and journald) in a private mount namespace, for the systemd
// suite.
#include "user_manager.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
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

// What PID 1 makes at boot and the tmpfs on /run/systemd hides: the
// inaccessible nodes (one of each file type, mode 0000) that the manager
// mounts over what ProtectKernelTunables=, ProtectKernelLogs= and
// InaccessiblePaths= hide. Without them those settings fail with
// 226/NAMESPACE.
std::string makeInaccessibleNodes()
{
    const std::string dir = "/run/systemd/inaccessible";
    if (mkdir(dir.c_str(), 0755) < 0 || mkdir((dir + "/dir").c_str(), 0) < 0) {
        return failed("mkdir " + dir);
    }
    for (const auto &[name, mode] : {std::pair{"/reg", S_IFREG}, std::pair{"/fifo", S_IFIFO},
                                     std::pair{"/chr", S_IFCHR}, std::pair{"/blk", S_IFBLK}}) {
        if (mknod((dir + name).c_str(), mode, makedev(0, 0)) < 0) {
            return failed("mknod " + dir + name);
        }
    }
    const UniqueFd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const std::string path = dir + "/sock";
    path.copy(address.sun_path, sizeof(address.sun_path) - 1);
    if (!sock || bind(sock.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)) < 0 ||
        chmod(path.c_str(), 0) < 0) {
        return failed("bind " + path);
    }
    return "";
}

// The packaged unit has PrivateTmp=yes: fdsupd and its workers see a /tmp
// of their own, not the test's. So the suite's temporary directories
// (configurations, control sockets, ready files) go to a tmpfs beside the
// test binary, which the unit sees as it is (TMPDIR, read by TempDir).
std::string privateTmpdir()
{
    std::error_code ec;
    const auto dir = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path() / "systemd-tmp";
    if (ec) {
        return "readlink /proc/self/exe: " + ec.message();
    }
    if (auto why = mountTmpfs(dir.c_str()); !why.empty()) {
        return why;
    }
    setenv("TMPDIR", dir.c_str(), 1);
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
    // On a booted system /run is a tmpfs of its own. Where it is a plain
    // directory (containers, this CI's VM), the settings that imply
    // MountAPIVFS= (ProtectKernelTunables=, ProtectControlGroups=, ...)
    // mount an empty tmpfs over it in the unit, hiding journald's socket.
    if (mount("/run", "/run", nullptr, MS_BIND | MS_REC, nullptr) < 0) {
        return failed("mount --rbind /run /run");
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
    if (auto why = makeInaccessibleNodes(); !why.empty()) {
        return why;
    }
    return privateTmpdir();
}

UserManager::UserManager()
{
    const auto runtime = dir_ / "runtime";
    const auto config = dir_ / "config";
    std::filesystem::create_directories(runtime);
    std::filesystem::permissions(runtime, std::filesystem::perms::owner_all);
    std::filesystem::create_directories(config / "systemd" / "user");
#ifdef __SANITIZE_ADDRESS__
    // LeakSanitizer stops the world with ptrace(), which the packaged unit's
    // SystemCallFilter=@system-service refuses: every sanitized fdsupd and
    // worker in it would die at exit. Allowed by a drop-in, as an operator
    // would, leaving the packaged file as it is.
    std::filesystem::create_directories(config / "systemd" / "user" / "fdsupd.service.d");
    writeFile(config / "systemd" / "user" / "fdsupd.service.d" / "sanitizers.conf",
              "[Service]\nSystemCallFilter=ptrace\n");
#endif
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
