// sd-worker: a test worker written against the real libsystemd (sd_listen_fds_with_names, sd_notify).
//
//   sd-worker [--mode MODE] [--mode-file PATH] [--report PATH] [--fdstore NAME] [--exit-code N]
//             [--ready-delay MS] [--ready-file PATH]
//
// MODE (default serve):
//   serve            READY=1, then answer every HTTP request on every listener
//                    with a JSON description of itself (below); drains on SIGTERM
//   crash            exit with --exit-code at once, never ready
//   hang             never ready, wait forever
//   ignore-term      READY=1, ignore SIGTERM, wait forever
//   ready-then-exit  READY=1, then exit with --exit-code
// An unknown mode exits 2.
// --mode-file PATH: the mode is the first word of that file, read at start; it
//   overrides --mode, so a test "deploys a new build" by rewriting the file
//   before a restart. An unreadable or empty file exits 2 with a message on stderr.
// --report PATH: a unix datagram socket of the test; the worker sends
//   "start PID MONOTONIC_USEC" first and "ready PID" after READY=1, so the test
//   can wait for events instead of sleeping.
// --ready-delay MS: warm up for MS milliseconds before READY=1, as a real
//   server loading its data would; makes a rollout last long enough for the
//   load of a test to overlap every step of it.
// --ready-file PATH: READY=1 only once PATH exists (waited for with inotify on
//   its directory), so a test decides when the worker becomes ready.
// --fdstore NAME: store a memfd holding "from pid PID" with FDSTORE=1 FDNAME=NAME;
//   a worker that receives a descriptor of that name reads it and reports it.
//
// The JSON answer: pid, listen_fds, names, fds (open at start), inodes (of the
// stream listeners, to prove a listener is the same socket), stored, nofile,
// and generation, instance, service from FDSUP_GENERATION, FDSUP_INSTANCE and
// FDSUP_SERVICE (an integer when the value is one, else a string; null when unset).
//
// Draining in serve mode: SIGTERM is blocked except inside ppoll(), so it can
// only end the wait for a connection, never an accept4(), read() or send() in
// progress. A connection once accepted is read (up to the end of the request
// head, EOF or a 5 s receive timeout) and answered; then the worker sees the
// request to stop, sends STOPPING=1 and exits 0. Connections still queued on
// the shared listener are left there for the other instances or the next
// worker, never accepted and dropped. Like Go's net.FileListener, the worker
// sets O_NONBLOCK on the listeners it inherits (the file description is shared
// with fdsupd and the other instances): an instance that loses the race for a
// connection to another gets EAGAIN instead of blocking in accept4() where
// SIGTERM could not reach it.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

namespace {

std::string reportPath;

void report(const std::string &event)
{
    if (reportPath.empty()) {
        return;
    }
    const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, reportPath.c_str(), sizeof addr.sun_path - 1);
    // Never blocks: a test that does not read its reports must not stall
    // the worker (a unix datagram queue holds only max_dgram_qlen of them).
    (void)sendto(fd, event.data(), event.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr *>(&addr),
                 sizeof addr);
    (void)close(fd);
}

long long monotonicUsec()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

std::vector<int> openFds()
{
    std::vector<int> fds;
    DIR *dir = opendir("/proc/self/fd");
    const int self = dirfd(dir);
    while (const dirent *e = readdir(dir)) {
        if (e->d_name[0] != '.' && std::atoi(e->d_name) != self) {
            fds.push_back(std::atoi(e->d_name));
        }
    }
    closedir(dir);
    return fds;
}

std::string jsonString(const std::string &s)
{
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
        }
        out += c;
    }
    return out + "\"";
}

// A variable of the environment as JSON: an integer when it is one, else a string; null when unset.
std::string jsonEnv(const char *name)
{
    const char *value = std::getenv(name);
    if (value == nullptr) {
        return "null";
    }
    char *end = nullptr;
    errno = 0;
    const long long number = std::strtoll(value, &end, 10);
    if (*value != '\0' && *end == '\0' && errno == 0) {
        return std::to_string(number);
    }
    return jsonString(value);
}

// The first word of the mode file, or "" (with the reason in why) when there is none.
std::string readModeFile(const std::string &path, std::string &why)
{
    std::ifstream in(path);
    if (!in) {
        why = std::strerror(errno);
        return "";
    }
    std::string word;
    if (!(in >> word)) {
        why = "no mode in the file";
        return "";
    }
    return word;
}

bool isMode(const std::string &mode)
{
    return mode == "serve" || mode == "crash" || mode == "hang" || mode == "ignore-term" ||
           mode == "ready-then-exit";
}

volatile sig_atomic_t stopRequested = 0;

void onTerm(int)
{
    stopRequested = 1;
}

// Reads the request head (the answer does not depend on it), then sends the
// whole answer. SIGTERM is blocked here, so neither call is cut short by it.
void answer(int conn, const std::string &response)
{
    // A client that never sends its request must not keep a draining worker.
    const timeval timeout{5, 0};
    (void)setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    (void)setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    std::string request;
    char buffer[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t r = read(conn, buffer, sizeof buffer);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        request.append(buffer, static_cast<std::size_t>(r));
    }
    std::size_t sent = 0;
    while (sent < response.size()) {
        // MSG_NOSIGNAL: a client that went away must not kill the worker with SIGPIPE.
        const ssize_t w = send(conn, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            break;
        }
        sent += static_cast<std::size_t>(w);
    }
}

// Answers connections until SIGTERM, which only ppoll() lets in (see the file header).
void serve(const std::vector<int> &listeners, const std::string &body)
{
    const std::string response = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                                 std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    std::vector<pollfd> pfds;
    pfds.reserve(listeners.size());
    for (const int fd : listeners) {
        const int flags = fcntl(fd, F_GETFL);
        (void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        pfds.push_back(pollfd{fd, POLLIN, 0});
    }
    sigset_t unblocked;
    (void)sigprocmask(SIG_SETMASK, nullptr, &unblocked);
    (void)sigdelset(&unblocked, SIGTERM);
    while (stopRequested == 0) {
        if (ppoll(pfds.data(), pfds.size(), nullptr, &unblocked) < 0) {
            continue; // EINTR: SIGTERM
        }
        for (const auto &p : pfds) {
            if ((p.revents & POLLIN) == 0) {
                continue;
            }
            // EAGAIN when another instance took the connection first.
            const int conn = accept4(p.fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (conn < 0) {
                continue;
            }
            answer(conn, response);
            (void)close(conn);
        }
    }
}

// Blocks until path exists; false when it cannot watch its directory.
bool waitForFile(const std::string &path)
{
    const std::string dir = path.substr(0, path.rfind('/') + 1);
    const int watch = inotify_init1(IN_CLOEXEC);
    if (watch < 0 || inotify_add_watch(watch, dir.empty() ? "." : dir.c_str(), IN_CREATE | IN_MOVED_TO) < 0) {
        return false;
    }
    struct stat st {};
    while (stat(path.c_str(), &st) < 0) {
        char events[4096];
        if (read(watch, events, sizeof events) < 0 && errno != EINTR) {
            (void)close(watch);
            return false;
        }
    }
    (void)close(watch);
    return true;
}

} // namespace

int main(int argc, char **argv)
{
    std::string mode = "serve";
    std::string modeFile;
    std::string fdstore;
    int exitCode = 1;
    long readyDelayMs = 0;
    std::string readyFile;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string opt = argv[i];
        if (opt == "--mode") {
            mode = argv[i + 1];
        } else if (opt == "--mode-file") {
            modeFile = argv[i + 1];
        } else if (opt == "--report") {
            reportPath = argv[i + 1];
        } else if (opt == "--fdstore") {
            fdstore = argv[i + 1];
        } else if (opt == "--ready-delay") {
            readyDelayMs = std::atol(argv[i + 1]);
        } else if (opt == "--ready-file") {
            readyFile = argv[i + 1];
        } else if (opt == "--exit-code") {
            exitCode = std::atoi(argv[i + 1]);
        } else {
            (void)std::fprintf(stderr, "sd-worker: unknown option %s\n", opt.c_str());
            return 2;
        }
    }
    if (!modeFile.empty()) {
        std::string why;
        mode = readModeFile(modeFile, why);
        if (mode.empty()) {
            (void)std::fprintf(stderr, "sd-worker: cannot read the mode from %s: %s\n", modeFile.c_str(),
                               why.c_str());
            return 2;
        }
    }
    if (!isMode(mode)) {
        (void)std::fprintf(stderr, "sd-worker: unknown mode %s\n", mode.c_str());
        return 2;
    }
    // Before anything opens a descriptor: what fdsupd passed, and nothing else.
    const std::vector<int> fdsAtStart = openFds();
    (void)std::printf("sd-worker %s starting as pid %d\n", mode.c_str(), getpid());
    (void)std::fflush(stdout);
    report("start " + std::to_string(getpid()) + " " + std::to_string(monotonicUsec()));

    char **names = nullptr;
    const int n = sd_listen_fds_with_names(1, &names);
    if (n < 0) {
        (void)std::fprintf(stderr, "sd_listen_fds_with_names: %s\n", std::strerror(-n));
        return 3;
    }
    std::vector<int> listeners;
    std::vector<std::string> fdNames;
    std::map<std::string, std::string> stored;
    for (int i = 0; i < n; ++i) {
        const int fd = SD_LISTEN_FDS_START + i;
        const std::string name = names != nullptr ? names[i] : "unknown";
        fdNames.push_back(name);
        if (!fdstore.empty() && name == fdstore) {
            char buffer[256] = {};
            const ssize_t r = pread(fd, buffer, sizeof buffer - 1, 0);
            stored[name] = r > 0 ? std::string(buffer, static_cast<std::size_t>(r)) : "";
            continue;
        }
        if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) > 0) {
            listeners.push_back(fd);
        }
    }
    // strv of sd_listen_fds_with_names(): the worker owns it (LeakSanitizer
    // would report it at exit and crowd out the last output lines).
    for (int i = 0; names != nullptr && i < n; ++i) {
        std::free(names[i]);
    }
    std::free(names);
    names = nullptr;

    if (mode == "crash") {
        return exitCode;
    }
    if (!fdstore.empty()) {
        const int memfd = memfd_create("fdstore", MFD_CLOEXEC);
        const std::string content = "from pid " + std::to_string(getpid());
        if (memfd < 0 ||
            write(memfd, content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
            return 4;
        }
        const std::string message = "FDSTORE=1\nFDNAME=" + fdstore;
        if (sd_pid_notify_with_fds(0, 0, message.c_str(), &memfd, 1) <= 0) {
            (void)std::fprintf(stderr, "FDSTORE failed\n");
            return 5;
        }
        (void)close(memfd);
    }
    if (mode == "hang") {
        for (;;) {
            pause();
        }
    }
    if (mode == "ignore-term") {
        (void)signal(SIGTERM, SIG_IGN);
    } else {
        // Blocked from here on; serve() lets it in only while waiting (see the file header).
        sigset_t term;
        (void)sigemptyset(&term);
        (void)sigaddset(&term, SIGTERM);
        (void)sigprocmask(SIG_BLOCK, &term, nullptr);
        struct sigaction sa {};
        sa.sa_handler = onTerm;
        sigaction(SIGTERM, &sa, nullptr);
    }
    if (readyDelayMs > 0) {
        timespec delay{readyDelayMs / 1000, (readyDelayMs % 1000) * 1000000};
        while (nanosleep(&delay, &delay) < 0 && errno == EINTR) {
        }
    }
    if (!readyFile.empty() && !waitForFile(readyFile)) {
        (void)std::fprintf(stderr, "sd-worker: cannot watch for %s: %s\n", readyFile.c_str(),
                           std::strerror(errno));
        return 6;
    }
    sd_notify(0, "READY=1\nSTATUS=serving");
    report("ready " + std::to_string(getpid()));
    if (mode == "ready-then-exit") {
        return exitCode;
    }
    if (mode == "ignore-term") {
        for (;;) {
            pause();
        }
    }

    std::string body =
        "{\"pid\":" + std::to_string(getpid()) + ",\"listen_fds\":" + std::to_string(n) + ",\"names\":[";
    for (std::size_t i = 0; i < fdNames.size(); ++i) {
        body += (i > 0 ? "," : "") + jsonString(fdNames[i]);
    }
    body += "],\"fds\":[";
    for (std::size_t i = 0; i < fdsAtStart.size(); ++i) {
        body += (i > 0 ? "," : "") + std::to_string(fdsAtStart[i]);
    }
    body += "],\"inodes\":[";
    for (std::size_t i = 0; i < listeners.size(); ++i) {
        struct stat st {};
        (void)fstat(listeners[i], &st);
        body += (i > 0 ? "," : "") + std::to_string(st.st_ino);
    }
    body += "],\"stored\":{";
    bool first = true;
    for (const auto &[name, content] : stored) {
        body += (first ? "" : ",") + jsonString(name) + ":" + jsonString(content);
        first = false;
    }
    rlimit nofile{};
    getrlimit(RLIMIT_NOFILE, &nofile);
    body += "},\"nofile\":" + std::to_string(nofile.rlim_cur) +
            ",\"generation\":" + jsonEnv("FDSUP_GENERATION") + ",\"instance\":" + jsonEnv("FDSUP_INSTANCE") +
            ",\"service\":" + jsonEnv("FDSUP_SERVICE") + "}\n";
    serve(listeners, body);

    sd_notify(0, "STOPPING=1");
    return 0;
}
