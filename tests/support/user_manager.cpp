// UserManager: a real systemd user manager (and journald) in a private mount namespace, for the systemd
// suite.
#include "user_manager.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
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

// Where this process is in each cgroup hierarchy systemd tracks processes
// in (/proc/self/cgroup): the unified one (/sys/fs/cgroup/unified beside
// v1's, else /sys/fs/cgroup) and v1's name=systemd.
std::vector<std::filesystem::path> currentCgroups()
{
    std::vector<std::filesystem::path> dirs;
    std::ifstream self("/proc/self/cgroup");
    for (std::string line; std::getline(self, line);) {
        const auto first = line.find(':');
        const auto second = line.find(':', first + 1);
        if (first == std::string::npos || second == std::string::npos || line.size() <= second + 1) {
            continue;
        }
        const std::string controllers = line.substr(first + 1, second - first - 1);
        const std::filesystem::path path = line.substr(second + 2); // after ":/"
        if (controllers.empty()) {
            const bool hybrid = access("/sys/fs/cgroup/unified/cgroup.procs", F_OK) == 0;
            dirs.push_back(std::filesystem::path(hybrid ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup") /
                           path);
        } else if (controllers == "name=systemd") {
            dirs.push_back("/sys/fs/cgroup/systemd" / path);
        }
    }
    return dirs;
}

bool moveInto(const std::filesystem::path &cgroup)
{
    std::ofstream procs(cgroup / "cgroup.procs");
    procs << getpid() << '\n';
    procs.flush();
    return procs.good();
}

// cgroupfs removes a cgroup with rmdir only, once it has no process and no
// child: the deepest first.
void removeCgroup(const std::filesystem::path &cgroup)
{
    std::error_code ec;
    for (const auto &entry : std::filesystem::directory_iterator(cgroup, ec)) {
        if (entry.is_directory(ec)) {
            removeCgroup(entry.path());
        }
    }
    (void)rmdir(cgroup.c_str());
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

std::string UserManager::isolateOnce()
{
    static const std::string why = isolate();
    return why;
}

std::optional<SystemdBinaries> UserManager::backportsSystemd(std::string &where)
{
    std::filesystem::path dir;
    if (const char *set = std::getenv("FDSUP_BACKPORTS_SYSTEMD"); set != nullptr && *set != '\0') {
        dir = set;
    } else if (const char *cache = std::getenv("FDSUP_CI_CACHE"); cache != nullptr && *cache != '\0') {
        dir = std::filesystem::path(cache) / "backports-systemd";
    } else if (const char *xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
        dir = std::filesystem::path(xdg) / "fdsup-ci" / "backports-systemd";
    } else if (const char *home = std::getenv("HOME"); home != nullptr && *home != '\0') {
        dir = std::filesystem::path(home) / ".cache" / "fdsup-ci" / "backports-systemd";
    }
    where = dir.string();
    if (dir.empty() || access((dir / "systemd").c_str(), X_OK) < 0 ||
        access((dir / "systemctl").c_str(), X_OK) < 0) {
        return std::nullopt;
    }
    return SystemdBinaries{(dir / "systemd").string(), (dir / "systemctl").string()};
}

UserManager::UserManager(SystemdBinaries binaries) : binaries_(std::move(binaries))
{
    enterOwnCgroup();
    const auto runtime = dir_ / "runtime";
    const auto config = dir_ / "config";
    std::filesystem::create_directories(runtime);
    std::filesystem::permissions(runtime, std::filesystem::perms::owner_all);
    std::filesystem::create_directories(config / "systemd" / "user");
    // The packaged unit has PrivateTmp=yes (and ProtectHome=read-only): a
    // build tree under /tmp (CI clones there) or a home directory would be
    // invisible or read-only to fdsupd, with the binaries and the suite's
    // temporary directories (TMPDIR, beside the test binary). A drop-in
    // binds the tree into the unit's view, as it is; everything else of the
    // packaged file applies as shipped.
    if (const char *root = std::getenv("FDSUP_SOURCE_ROOT"); root != nullptr && *root != '\0') {
        std::string paths = "[Service]\nBindPaths=" + std::filesystem::canonical(root).string() + "\n";
        if (const char *build = std::getenv("FDSUP_BUILD_ROOT"); build != nullptr && *build != '\0') {
            paths += "BindPaths=" + std::filesystem::canonical(build).string() + "\n";
        }
        std::filesystem::create_directories(config / "systemd" / "user" / "fdsupd.service.d");
        writeFile(config / "systemd" / "user" / "fdsupd.service.d" / "build-tree.conf", paths);
    }
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
    manager_ = std::make_unique<BackgroundProcess>(std::vector<std::string>{binaries_.manager, "--user"},
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
    for (const auto &[was, own] : cgroups_) {
        (void)moveInto(was);
        removeCgroup(own);
    }
}

void UserManager::enterOwnCgroup()
{
    for (const auto &was : currentCgroups()) {
        const auto own = was / ("fdsup-test-" + std::to_string(getpid()));
        if (mkdir(own.c_str(), 0755) < 0 && errno != EEXIST) {
            if (errno == EROFS || errno == EACCES || errno == EPERM) {
                continue; // the manager cannot make cgroups here either
            }
            throw std::runtime_error(failed("mkdir " + own.string()));
        }
        if (!moveInto(own)) {
            throw std::runtime_error("cannot move into the cgroup " + own.string());
        }
        cgroups_.emplace_back(was, own);
    }
}

ProcessResult UserManager::systemctl(const std::vector<std::string> &args,
                                     std::chrono::milliseconds deadline) const
{
    std::vector<std::string> argv{binaries_.systemctl, "--user", "--no-pager"};
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

std::string replaced(std::string text, const std::string &from, const std::string &to)
{
    for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
        text.replace(at, from.size(), to);
    }
    return text;
}

std::string packagedUnit(const std::string &config, const std::string &control)
{
    std::string unit = readFile(requireEnv("FDSUP_SERVICE_UNIT"));
    unit = replaced(unit, "@sbindir@/fdsupd", requireEnv("FDSUPD"));
    unit = replaced(unit, "@bindir@/fdsupctl reload", requireEnv("FDSUPCTL") + " -s " + control + " reload");
    return replaced(unit, "/etc/fdsupd/fdsupd.toml", config);
}

} // namespace fdsup::test
