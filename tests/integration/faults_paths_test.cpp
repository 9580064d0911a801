// Faults of the places fdsupd needs: a port in use, a unix socket's directory missing or read-only,
// at start and at reload, and a full disk under its log (docs/fdsupd.md#faults).
//
// Root ignores directory permissions, so a read-only directory is a
// read-only tmpfs mounted in a private mount namespace that fdsupd runs in
// (`unshare --mount` wraps it: the test sees the empty directory, fdsupd the
// mount). The network namespace is the test's: clients reach it on loopback.
#include <cerrno>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon_harness.hpp"
#include "examples.hpp"
#include "faults.hpp"
#include "seqnum_clients.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using ::testing::HasSubstr;

// A loopback TCP listener the test holds: the port is in use.
class HeldPort {
public:
    HeldPort() : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0))
    {
        sockaddr_in a = loopbackAddress(0);
        if (bind(fd_.get(), reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 || listen(fd_.get(), 1) != 0) {
            throw std::runtime_error("cannot hold a port");
        }
        socklen_t len = sizeof a;
        getsockname(fd_.get(), reinterpret_cast<sockaddr *>(&a), &len);
        port_ = ntohs(a.sin_port);
    }
    [[nodiscard]] int port() const { return port_; }

private:
    UniqueFd fd_;
    int port_ = 0;
};

// [socket.api] on `listen` and [service.api] serving it.
std::string apiService(const std::string &listen)
{
    return socketAndService("api", listen, commandOf(requireEnv("FDSUP_TEST_HTTP_KEEPALIVE")),
                            "ready = \"channel\"\n");
}

class FaultsPaths : public Faults {
protected:
    // fdsupd in a private mount namespace where roDir() is a read-only tmpfs.
    std::vector<std::string> readOnlyMount()
    {
        std::filesystem::create_directory(roDir());
        return {"/usr/bin/unshare",
                "--mount",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
                R"(mount -t tmpfs -o ro,size=64k fdsup-faults "$0" && exec "$@")",
                roDir().string()};
    }
    [[nodiscard]] std::filesystem::path roDir() const { return fdsupd_.dir() / "ro"; }

    // A reload that adds `services` is refused with these words, and changes nothing.
    void expectReloadRefused(const std::string &services, const std::vector<std::string> &words)
    {
        const auto configPath = fdsupd_.dir() / "fdsupd.toml";
        const std::string running = readFile(configPath);
        const std::set<pid_t> web = instancePids(fdsupd_.status("web"));
        writeFile(configPath, running + services);
        const auto reload = fdsupd_.fdsupctl({"reload"});
        EXPECT_EQ(reload.exitCode, 1) << reload.out << reload.err;
        for (const auto &word : words) {
            EXPECT_THAT(reload.err, HasSubstr(word));
        }
        EXPECT_THAT(reload.err, HasSubstr("nothing changed"));
        EXPECT_EQ(fdsupd_.call("io.fdsup.Manager.Status", {{"service", "api"}}).error,
                  "io.fdsup.Manager.NoSuchService");
        EXPECT_EQ(instancePids(fdsupd_.status("web")), web);
        expectFdsAtBaseline(); // the sockets bound before the failure are closed again
        writeFile(configPath, running);
    }

    // fdsupd started with api on a free port and adm on unix:`path` exits at
    // start (status 4) naming adm, its path and `reason`; api's port is free
    // again and no worker was started.
    void expectStartRefused(const std::string &path, const std::string &reason,
                            const std::vector<std::string> &wrapper = {})
    {
        const int port = freePort();
        std::string why;
        EXPECT_FALSE(
            fdsupd_.start(fdsupd_.supervisorTable() + apiService("tcp://127.0.0.1:" + std::to_string(port)) +
                              socketAndService("adm", "unix:" + path, fdsupd_.workerCommand("serve")),
                          why, wrapper));
        EXPECT_THAT(why, HasSubstr("fdsupd exited (status 4)"));
        EXPECT_THAT(why,
                    HasSubstr("Failed to bind socket 'adm': Failed to bind unix:" + path + ": " + reason));
        EXPECT_TRUE(loopbackPortFree(port)) << "the socket bound before the failure is still bound";
        EXPECT_FALSE(fdsupd_.reports().next(std::chrono::milliseconds(200)).has_value())
            << "a worker was started";
    }
};

// 5. A port in use at reload: refused, naming the socket, the address and
// the reason; nothing changes (at start: Daemon.SocketThatCannotBeBound...,
// Recovery.APortHeldByAnotherProgram...).
// 6. A unix socket whose directory is missing: the same at reload and at start.
TEST_F(FaultsPaths, AReloadNeedingAPortInUseOrAMissingDirectoryIsRefusedAndChangesNothing)
{
    ASSERT_NO_FATAL_FAILURE(start(seqnumWeb()));
    const HeldPort held;
    const std::string taken = "tcp://127.0.0.1:" + std::to_string(held.port());
    expectReloadRefused(apiService(taken), {"Failed to bind socket 'api'", taken, "Address already in use"});
    EXPECT_TRUE(loopbackAccepts(held.port())) << "the holder lost its port";

    const std::string missing = (fdsupd_.dir() / "missing" / "api.sock").string();
    expectReloadRefused(apiService("unix:" + missing),
                        {"Failed to bind socket 'api'", missing, "No such file or directory"});

    // The same file with the directory there is applied.
    std::filesystem::create_directory(fdsupd_.dir() / "missing");
    writeFile(fdsupd_.dir() / "fdsupd.toml",
              readFile(fdsupd_.dir() / "fdsupd.toml") + apiService("unix:" + missing));
    const auto reload = fdsupd_.fdsupctl({"reload"});
    EXPECT_EQ(reload.exitCode, 0) << reload.out << reload.err;
    EXPECT_TRUE(std::filesystem::is_socket(missing));
    expectBystanderServed();
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(FaultsPaths, AtStartAUnixSocketInAMissingDirectoryStopsStartupAndNamesIt)
{
    expectStartRefused((fdsupd_.dir() / "missing" / "api.sock").string(), "No such file or directory");
}

// 6. A read-only directory at start: fdsupd exits naming the socket, its
// path and EROFS, and leaves nothing behind.
TEST_F(FaultsPaths, AtStartAUnixSocketInAReadOnlyDirectoryStopsStartupAndNamesIt)
{
    expectStartRefused((roDir() / "api.sock").string(), "Read-only file system", readOnlyMount());
}

// 6. A read-only directory at reload: refused with EROFS, nothing changed,
// and the running services keep serving.
TEST_F(FaultsPaths, AReloadNeedingAReadOnlyDirectoryIsRefusedAndChangesNothing)
{
    std::string why;
    ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + seqnumWeb() + bystander(), why, readOnlyMount()))
        << why;
    ASSERT_NO_FATAL_FAILURE(startBystander());
    const std::string path = (roDir() / "api.sock").string();
    expectReloadRefused(apiService("unix:" + path),
                        {"Failed to bind socket 'api'", path, "Read-only file system"});
    expectBystanderServed();
    EXPECT_EQ(fdsupd_.stop(), 0);
}

// Writes to path until the file system is full; returns the errno that
// ended it (ENOSPC), or 0 when a whole MiB fitted (not the tiny tmpfs).
int fillUp(const std::filesystem::path &path)
{
    const UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!fd) {
        return errno;
    }
    const std::vector<char> chunk(1024, '#');
    for (std::size_t written = 0; written < std::size_t{1} << 20;) {
        const ssize_t n = write(fd.get(), chunk.data(), chunk.size());
        if (n < 0) {
            return errno;
        }
        written += static_cast<std::size_t>(n);
    }
    return 0;
}

// 7. fdsupd's log on a full disk (its stdout and stderr appended to a file
// on a 256 KiB tmpfs in its own mount namespace, filled up to the last byte
// of the log's own last page): it keeps running and serving, a rollout with
// handoff works and nothing blocks; the workers' captured output is still
// kept (`fdsupctl logs`); once space frees, its lines reach the file again.
TEST_F(FaultsPaths, AFullDiskForTheLogBlocksNothingAndLoggingResumesWhenSpaceFrees)
{
    const auto logDir = fdsupd_.dir() / "logs";
    std::filesystem::create_directory(logDir);
    std::string why;
    ASSERT_TRUE(
        fdsupd_.start(fdsupd_.supervisorTable() + seqnumWeb() + bystander(), why,
                      {"/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                       R"(mount -t tmpfs -o size=256k fdsup-logs "$0" && exec "$@" >>"$0/fdsupd.log" 2>&1)",
                       logDir.string()}))
        << why;
    ASSERT_NO_FATAL_FAILURE(startBystander());
    // The tmpfs as fdsupd sees it.
    const std::filesystem::path inside = "/proc/" + std::to_string(fdsupd_.pid()) + "/root" + logDir.string();
    const auto log = inside / "fdsupd.log";
    ASSERT_THAT(readFile(log), HasSubstr("is ready"));
    ASSERT_EQ(fillUp(inside / "fill"), ENOSPC);
    ASSERT_EQ(fillUp(log), ENOSPC);
    const auto full = std::filesystem::file_size(log);

    const int port = fdsupd_.port("web");
    SeqnumClients clients(port, kClients);
    ASSERT_TRUE(waitUntil([&] { return clients.rounds() >= 10 * kClients; }));
    const auto restart = fdsupd_.fdsupctl({"restart", "--wait", "web"});
    EXPECT_EQ(restart.exitCode, 0) << restart.out << restart.err;
    const pid_t replacement = onlyPid();
    const std::uint64_t after = clients.rounds();
    EXPECT_TRUE(waitUntil([&] { return clients.rounds() >= after + 10 * kClients; }));
    EXPECT_TRUE(clients.errors().empty()) << ::testing::PrintToString(clients.errors());
    EXPECT_EQ(connections().at("adopted"), kClients);
    EXPECT_EQ(std::filesystem::file_size(log), full) << "the disk was not full";
    const auto logs = fdsupd_.fdsupctl({"logs", "web", "-n", "100"});
    EXPECT_EQ(logs.exitCode, 0) << logs.err;
    EXPECT_THAT(logs.out, HasSubstr("seqnum-echo[" + std::to_string(replacement) + "]: ready"));

    std::filesystem::remove(inside / "fill");
    const auto again = fdsupd_.fdsupctl({"restart", "--wait", "web"});
    EXPECT_EQ(again.exitCode, 0) << again.out << again.err;
    EXPECT_TRUE(waitUntil([&] {
        return readFile(log).find("Rollout 2 of web succeeded") != std::string::npos;
    })) << "nothing logged once space was free";
    clients.close();
    EXPECT_TRUE(clients.errors().empty()) << ::testing::PrintToString(clients.errors());
    expectFdsAtBaseline();
    expectBystanderServed();
    EXPECT_EQ(fdsupd_.stop(), 0);
}

} // namespace
} // namespace fdsup::test
