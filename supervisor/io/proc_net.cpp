// What the kernel says about sockets: /proc/net listeners by address, and the processes holding one.
#include "io/proc_net.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include "io/proc.hpp"

namespace fdsup {
namespace {

constexpr unsigned kTcpListen = 0x0A;
constexpr unsigned kUdpUnconnected = 0x07; // TCP_CLOSE: bound, not connected
constexpr unsigned long kUnixAcceptCon = 0x10000;
constexpr std::size_t kCommandMax = 200;

// The first `count` space-separated fields (a busy host's /proc/net/tcp has
// tens of thousands of lines: no stream per line).
std::vector<std::string_view> splitFields(std::string_view line, std::size_t count)
{
    std::vector<std::string_view> fields;
    std::size_t at = 0;
    while (fields.size() < count) {
        const auto start = line.find_first_not_of(' ', at);
        if (start == std::string_view::npos) {
            break;
        }
        const auto end = std::min(line.find(' ', start), line.size());
        fields.push_back(line.substr(start, end - start));
        at = end;
    }
    return fields;
}

std::optional<unsigned long long> number(std::string_view text, int base)
{
    unsigned long long value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, base);
    if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
        return std::nullopt;
    }
    return value;
}

std::optional<unsigned long long> hexNumber(std::string_view text)
{
    return number(text, 16);
}

std::optional<unsigned long long> decimalNumber(std::string_view text)
{
    return number(text, 10);
}

// The numeric entries of /proc, in no particular order.
template <typename Fn>
void forEachProcess(Fn &&fn)
{
    const std::unique_ptr<DIR, int (*)(DIR *)> proc(opendir("/proc"), closedir);
    if (!proc) {
        return;
    }
    while (const dirent *entry = readdir(proc.get())) {
        char *end = nullptr;
        const long pid = std::strtol(entry->d_name, &end, 10);
        if (pid > 0 && end != nullptr && *end == '\0') {
            fn(static_cast<pid_t>(pid));
        }
    }
}

std::string readWhole(const std::string &path, int &error)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error = errno != 0 ? errno : ENOENT;
        return {};
    }
    std::ostringstream all;
    all << in.rdbuf();
    error = 0;
    return all.str();
}

} // namespace

std::optional<ProcNetSocket> parseInetLine(std::string_view line)
{
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    const auto fields = splitFields(line, 10);
    if (fields.size() < 10 || !fields[0].ends_with(':') || fields[1].find(':') == std::string_view::npos) {
        return std::nullopt;
    }
    const auto st = hexNumber(fields[3]);
    const auto ino = decimalNumber(fields[9]);
    if (!st || !ino) {
        return std::nullopt;
    }
    return ProcNetSocket{std::string(fields[1]), static_cast<unsigned>(*st), 0, false,
                         static_cast<ino_t>(*ino)};
}

std::optional<ProcNetSocket> parseUnixLine(std::string_view line)
{
    // Num RefCount Protocol Flags Type St Inode [Path]; the path may hold spaces.
    const auto fields = splitFields(line, 7);
    if (fields.size() < 7 || !fields[0].ends_with(':')) {
        return std::nullopt;
    }
    const auto f = hexNumber(fields[3]);
    const auto t = hexNumber(fields[4]);
    const auto st = hexNumber(fields[5]);
    const auto ino = decimalNumber(fields[6]);
    if (!f || !t || !st || !ino) {
        return std::nullopt;
    }
    std::string_view path = line.substr(static_cast<std::size_t>(fields[6].end() - line.begin()));
    const auto start = path.find_first_not_of(' ');
    path = start == std::string_view::npos ? std::string_view() : path.substr(start);
    return ProcNetSocket{std::string(path), static_cast<unsigned>(*st), static_cast<unsigned>(*t),
                         (*f & kUnixAcceptCon) != 0, static_cast<ino_t>(*ino)};
}

std::string procNetLocal(const SocketAddress &address)
{
    const auto *sa = reinterpret_cast<const sockaddr *>(&address.storage);
    if (sa->sa_family == AF_INET) {
        const auto *in = reinterpret_cast<const sockaddr_in *>(sa);
        // The kernel prints the 32-bit words as they lie in memory, so the
        // same formatting of the same bytes matches on any byte order.
        return fmt::format("{:08X}:{:04X}", in->sin_addr.s_addr, ntohs(in->sin_port));
    }
    if (sa->sa_family == AF_INET6) {
        const auto *in6 = reinterpret_cast<const sockaddr_in6 *>(sa);
        std::uint32_t words[4];
        std::memcpy(words, &in6->sin6_addr, sizeof words);
        return fmt::format("{:08X}{:08X}{:08X}{:08X}:{:04X}", words[0], words[1], words[2], words[3],
                           ntohs(in6->sin6_port));
    }
    const auto *un = reinterpret_cast<const sockaddr_un *>(sa);
    const std::size_t max = address.length > offsetof(sockaddr_un, sun_path)
                                ? address.length - offsetof(sockaddr_un, sun_path)
                                : 0;
    if (max > 0 && un->sun_path[0] == '\0') {
        return "@" + std::string(un->sun_path + 1, max - 1);
    }
    return {un->sun_path, strnlen(un->sun_path, max)};
}

Result<std::vector<ino_t>> listeningInodes(const Address &address, const SocketAddress &resolved)
{
    const std::string want = procNetLocal(resolved);
    std::string table;
    if (address.isUnix()) {
        table = "/proc/net/unix";
    } else {
        table = std::string("/proc/net/") + (address.transport == Transport::Tcp ? "tcp" : "udp") +
                (resolved.family == AF_INET6 ? "6" : "");
    }
    std::ifstream in(table);
    if (!in) {
        return errnoError(errno != 0 ? errno : ENOENT, "Failed to read " + table);
    }
    std::vector<ino_t> inodes;
    for (std::string line; std::getline(in, line);) {
        const auto socket = address.isUnix() ? parseUnixLine(line) : parseInetLine(line);
        if (!socket || socket->local != want || socket->inode == 0) {
            continue;
        }
        bool serving = false;
        if (address.isUnix()) {
            const auto type = static_cast<unsigned>(address.socketType());
            serving = socket->type == type && (type == SOCK_DGRAM || socket->listening);
        } else {
            serving = socket->state == (address.transport == Transport::Tcp ? kTcpListen : kUdpUnconnected);
        }
        if (serving) {
            inodes.push_back(socket->inode);
        }
    }
    return inodes;
}

std::vector<SocketHolder> socketHolders(ino_t inode)
{
    const std::string want = "socket:[" + std::to_string(inode) + "]";
    std::vector<SocketHolder> holders;
    const pid_t self = getpid();
    forEachProcess([&](pid_t pid) {
        if (pid == self) {
            return;
        }
        const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
        const std::unique_ptr<DIR, int (*)(DIR *)> fds(opendir(dir.c_str()), closedir);
        if (!fds) {
            return;
        }
        while (const dirent *entry = readdir(fds.get())) {
            char target[64];
            const ssize_t n = readlinkat(dirfd(fds.get()), entry->d_name, target, sizeof target);
            if (n > 0 && std::string_view(target, static_cast<std::size_t>(n)) == want) {
                holders.push_back(SocketHolder{pid, std::atoi(entry->d_name)});
            }
        }
    });
    return holders;
}

std::string commandOf(pid_t pid)
{
    int error = 0;
    std::string command = readWhole("/proc/" + std::to_string(pid) + "/cmdline", error);
    while (!command.empty() && command.back() == '\0') {
        command.pop_back();
    }
    if (command.empty()) {
        // A kernel thread, a zombie, or a process that is gone.
        command = readWhole("/proc/" + std::to_string(pid) + "/comm", error);
        while (!command.empty() && command.back() == '\n') {
            command.pop_back();
        }
        return command.empty() ? "?" : "[" + command + "]";
    }
    for (char &c : command) {
        c = c == '\0' ? ' ' : c;
    }
    return command.size() > kCommandMax ? command.substr(0, kCommandMax) + "..." : command;
}

std::optional<uid_t> ownerOf(pid_t pid)
{
    struct stat st {};
    if (stat(("/proc/" + std::to_string(pid)).c_str(), &st) < 0) {
        return std::nullopt;
    }
    return st.st_uid;
}

Result<std::vector<std::string>> environmentOf(pid_t pid)
{
    const std::string path = "/proc/" + std::to_string(pid) + "/environ";
    // ifstream does not say why it failed: open(2) does.
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errnoError(errno, "Failed to read " + path);
    }
    std::string all;
    char buffer[4096];
    ssize_t n = 0;
    while ((n = read(fd, buffer, sizeof buffer)) > 0) {
        all.append(buffer, static_cast<std::size_t>(n));
    }
    const int error = errno;
    close(fd);
    if (n < 0) {
        return errnoError(error, "Failed to read " + path);
    }
    std::vector<std::string> entries;
    std::istringstream in(all);
    for (std::string entry; std::getline(in, entry, '\0');) {
        entries.push_back(entry);
    }
    return entries;
}

std::vector<pid_t> processGroupMembers(pid_t pgid)
{
    std::vector<pid_t> members;
    forEachProcess([&](pid_t pid) {
        if (const auto stat = readProcStat(pid); stat && stat->pgid == pgid && stat->state != 'Z') {
            members.push_back(pid);
        }
    });
    return members;
}

} // namespace fdsup
