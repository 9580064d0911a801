// fd-report: prints what a spawned process inherited, as key=value lines, for the spawn tests.
#include <algorithm>
#include <array>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

namespace {

std::string limitText(rlim_t value)
{
    return value == RLIM_INFINITY ? "infinity" : std::to_string(value);
}

std::string rlimitLine(const char *name, int resource)
{
    rlimit limit{};
    if (getrlimit(resource, &limit) != 0) {
        return std::string("rlimit.") + name + "=error\n";
    }
    return std::string("rlimit.") + name + "=" + limitText(limit.rlim_cur) + ":" + limitText(limit.rlim_max) +
           "\n";
}

// Comma-separated numbers, "none" for an empty list.
std::string listText(const std::vector<int> &values)
{
    std::string text;
    for (const int v : values) {
        text += (text.empty() ? "" : ",") + std::to_string(v);
    }
    return text.empty() ? "none" : text;
}

std::vector<int> openFds()
{
    std::vector<int> fds;
    DIR *dir = opendir("/proc/self/fd");
    if (dir == nullptr) {
        return fds;
    }
    while (const dirent *entry = readdir(dir)) {
        if (entry->d_name[0] == '.') {
            continue;
        }
        const int fd = std::atoi(entry->d_name);
        if (fd != dirfd(dir)) {
            fds.push_back(fd);
        }
    }
    closedir(dir);
    std::sort(fds.begin(), fds.end());
    return fds;
}

} // namespace

int main(int argc, char **argv)
{
    std::string out;
    // Descriptors first, before anything here opens or flags one
    // (sd_listen_fds() sets FD_CLOEXEC on the listeners).
    const std::vector<int> fds = openFds();
    out += "fds=" + listText(fds) + "\n";
    for (const int fd : fds) {
        std::array<char, 4096> target{};
        const std::string link = "/proc/self/fd/" + std::to_string(fd);
        const ssize_t n = readlink(link.c_str(), target.data(), target.size() - 1);
        out += "fd." + std::to_string(fd) + "=" + (n > 0 ? std::string(target.data(), n) : "?") + "\n";
        const int flags = fcntl(fd, F_GETFD);
        out += "fdcloexec." + std::to_string(fd) + "=" + ((flags & FD_CLOEXEC) != 0 ? "1" : "0") + "\n";
    }
    struct stat st {};
    if (fstat(STDIN_FILENO, &st) == 0) {
        out += "stdin.chr=" + std::string(S_ISCHR(st.st_mode) ? "1" : "0") + "\n";
        out += "stdin.rdev=" + std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev)) +
               "\n";
    }

    for (int i = 0; i < argc; ++i) {
        out += "argv." + std::to_string(i) + "=" + argv[i] + "\n";
    }
    for (char **e = environ; *e != nullptr; ++e) {
        out += std::string("env=") + *e + "\n";
    }

    out += "pid=" + std::to_string(getpid()) + "\n";
    // The inode number of a pidfd of its own, to compare with LISTEN_PIDFDID
    // (opened after the fds were listed, and closed).
    const long pidfd = syscall(SYS_pidfd_open, getpid(), 0U);
    if (pidfd >= 0) {
        struct stat pst {};
        if (fstat(static_cast<int>(pidfd), &pst) == 0) {
            out += "pidfd.ino=" + std::to_string(pst.st_ino) + "\n";
        }
        close(static_cast<int>(pidfd));
    }
    out += "pgid=" + std::to_string(getpgid(0)) + "\n";
    out += "uid=" + std::to_string(getuid()) + "\neuid=" + std::to_string(geteuid()) + "\n";
    out += "gid=" + std::to_string(getgid()) + "\negid=" + std::to_string(getegid()) + "\n";
    std::vector<gid_t> groups(static_cast<std::size_t>(std::max(getgroups(0, nullptr), 0)));
    const int ngroups = getgroups(static_cast<int>(groups.size()), groups.data());
    std::vector<int> groupList(groups.begin(), groups.begin() + std::max(ngroups, 0));
    std::sort(groupList.begin(), groupList.end());
    out += "groups=" + listText(groupList) + "\n";

    const mode_t mask = umask(0);
    umask(mask);
    std::array<char, 8> maskText{};
    (void)std::snprintf(maskText.data(), maskText.size(), "%04o", static_cast<unsigned>(mask));
    out += std::string("umask=") + maskText.data() + "\n";
    std::array<char, 4096> cwd{};
    out += std::string("cwd=") + (getcwd(cwd.data(), cwd.size()) != nullptr ? cwd.data() : "?") + "\n";
    out += "no_new_privs=" + std::to_string(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)) + "\n";
    out += rlimitLine("nofile", RLIMIT_NOFILE);
    out += rlimitLine("core", RLIMIT_CORE);

    sigset_t blocked;
    sigprocmask(SIG_BLOCK, nullptr, &blocked);
    std::vector<int> blockedList;
    std::vector<int> ignoredList;
    std::vector<int> handledList;
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sigismember(&blocked, sig) == 1) {
            blockedList.push_back(sig);
        }
        struct sigaction action {};
        if (sigaction(sig, nullptr, &action) != 0) {
            continue; // glibc's own signals (32, 33) cannot be queried
        }
        if (action.sa_handler == SIG_IGN) {
            ignoredList.push_back(sig);
        } else if (action.sa_handler != SIG_DFL) {
            handledList.push_back(sig);
        }
    }
    out += "sig.blocked=" + listText(blockedList) + "\n";
    out += "sig.ignored=" + listText(ignoredList) + "\n";
    out += "sig.handled=" + listText(handledList) + "\n";

    // The real libsystemd, as a worker would call it.
    char **names = nullptr;
    const int n = sd_listen_fds_with_names(0, &names);
    out += "sd.n=" + std::to_string(n) + "\n";
    std::string joined;
    for (char **name = names; name != nullptr && *name != nullptr; ++name) {
        joined += (joined.empty() ? "" : ":") + std::string(*name);
        std::free(*name);
    }
    std::free(static_cast<void *>(names));
    out += "sd.names=" + joined + "\n";

    for (std::size_t done = 0; done < out.size();) {
        const ssize_t w = write(STDOUT_FILENO, out.data() + done, out.size() - done);
        if (w <= 0) {
            return 1;
        }
        done += static_cast<std::size_t>(w);
    }
    const char err[] = "fd-report: done\n";
    return write(STDERR_FILENO, err, sizeof err - 1) == static_cast<ssize_t>(sizeof err - 1) ? 0 : 1;
}
