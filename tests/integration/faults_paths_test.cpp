// Faults of the places a configuration names: a port in use, a unix socket's directory missing or
// read-only, at start and at reload (docs/fdsupd.md#faults).
//
// Root ignores directory permissions, so a read-only directory is a
// read-only tmpfs mounted in a private mount namespace that fdsupd runs in
// (`unshare --mount` wraps it: the test sees the empty directory, fdsupd the
// mount). The network namespace is the test's: clients reach it on loopback.
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon_harness.hpp"
#include "examples.hpp"
#include "faults.hpp"
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
    return R"(
[socket.api]
listen = ")" +
           listen + R"("

[service.api]
command = [")" +
           requireEnv("FDSUP_TEST_HTTP_KEEPALIVE") +
           R"("]
sockets = ["api"]
ready = "channel"
)";
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
    const int port = freePort();
    const std::string missing = (fdsupd_.dir() / "missing" / "api.sock").string();
    std::string why;
    EXPECT_FALSE(fdsupd_.start(fdsupd_.supervisorTable() +
                                   apiService("tcp://127.0.0.1:" + std::to_string(port)) +
                                   R"(
[socket.adm]
listen = "unix:)" + missing + R"("

[service.adm]
command = )" + fdsupd_.workerCommand("serve") +
                                   R"(
sockets = ["adm"]
)",
                               why));
    EXPECT_THAT(why, HasSubstr("fdsupd exited (status 4)"));
    EXPECT_THAT(why, HasSubstr("Failed to bind socket 'adm': Failed to bind unix:" + missing +
                               ": No such file or directory"));
    EXPECT_TRUE(loopbackPortFree(port)) << "the socket bound before the failure is still bound";
    EXPECT_FALSE(fdsupd_.reports().next(std::chrono::milliseconds(200)).has_value())
        << "a worker was started";
}

// 6. A read-only directory at start: fdsupd exits naming the socket, its
// path and EROFS, and leaves nothing behind.
TEST_F(FaultsPaths, AtStartAUnixSocketInAReadOnlyDirectoryStopsStartupAndNamesIt)
{
    const int port = freePort();
    const std::string path = (roDir() / "api.sock").string();
    std::string why;
    EXPECT_FALSE(fdsupd_.start(fdsupd_.supervisorTable() +
                                   apiService("tcp://127.0.0.1:" + std::to_string(port)) +
                                   R"(
[socket.adm]
listen = "unix:)" + path + R"("

[service.adm]
command = )" + fdsupd_.workerCommand("serve") +
                                   R"(
sockets = ["adm"]
)",
                               why, readOnlyMount()));
    EXPECT_THAT(why, HasSubstr("fdsupd exited (status 4)"));
    EXPECT_THAT(why, HasSubstr("Failed to bind socket 'adm': Failed to bind unix:" + path +
                               ": Read-only file system"));
    EXPECT_TRUE(loopbackPortFree(port));
    EXPECT_FALSE(fdsupd_.reports().next(std::chrono::milliseconds(200)).has_value())
        << "a worker was started";
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

} // namespace
} // namespace fdsup::test
