// The control API against a real fdsupd: fdsupctl as users run it, refused callers, hostile requests.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// Exit codes of fdsupctl, from docs/fdsupctl.md.
constexpr int kOk = 0;
constexpr int kCannotConnect = 3;
constexpr int kRefused = 4;
constexpr int kNotFound = 5;

class Control : public DaemonTest<> {
protected:
    void startDaemon(const std::string &supervisorExtra = "")
    {
        // mkdtemp() made the directory 0700; the tests that run fdsupctl as
        // nobody need to reach the socket inside so that its own mode decides.
        std::filesystem::permissions(fdsupd_.dir().path(), std::filesystem::perms(0755));
        std::string why;
        const std::string config =
            "[supervisor]\ncontrol = " + nlohmann::json(fdsupd_.controlPath()).dump() +
            "\nlog_level = \"debug\"\n" + supervisorExtra +
            "\n[supervisor.limits]\ncontrol_request_size = \"4KiB\"\n" +
            socketAndService("web", "tcp://127.0.0.1:0", fdsupd_.workerCommand("serve"), "instances = 2\n");
        ASSERT_TRUE(fdsupd_.start(config, why)) << why;
        for (int i = 0; i < 2; ++i) {
            ASSERT_TRUE(fdsupd_.reports().waitFor(
                [](const std::string &m) { return m.starts_with("ready "); }, kEventDeadline));
        }
    }

    ProcessResult ctl(std::vector<std::string> args, const std::vector<std::string> &asUser = {})
    {
        std::vector<std::string> argv = asUser;
        argv.emplace_back(requireEnv("FDSUPCTL"));
        argv.emplace_back("-s");
        argv.emplace_back(fdsupd_.controlPath());
        argv.insert(argv.end(), args.begin(), args.end());
        return runProcess(argv);
    }

    // Runs a command as nobody:nogroup with no supplementary groups.
    static std::vector<std::string> asNobody()
    {
        return {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"};
    }

    // A raw connection to the control socket, for requests fdsupctl would never send.
    UniqueFd rawConnect()
    {
        UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string path = fdsupd_.controlPath();
        path.copy(addr.sun_path, path.size());
        if (connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
            throw std::runtime_error("connect to the control socket failed");
        }
        return fd;
    }

    // Reads one NUL-terminated reply, or what arrived before EOF/the deadline.
    static std::string readReply(BorrowedFd fd)
    {
        std::string reply;
        const auto until = std::chrono::steady_clock::now() + 10s;
        while (reply.empty() || reply.back() != '\0') {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                until - std::chrono::steady_clock::now());
            pollfd pfd{fd.get(), POLLIN, 0};
            if (left.count() <= 0 || poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
                break;
            }
            char c = 0;
            if (read(fd.get(), &c, 1) != 1) {
                break;
            }
            reply.push_back(c);
        }
        if (!reply.empty() && reply.back() == '\0') {
            reply.pop_back();
        }
        return reply;
    }

    static void sendAll(BorrowedFd fd, std::string_view data)
    {
        while (!data.empty()) {
            const ssize_t n = send(fd.get(), data.data(), data.size(), MSG_NOSIGNAL);
            if (n <= 0) {
                return; // the daemon may close a connection it refuses
            }
            data.remove_prefix(static_cast<std::size_t>(n));
        }
    }
};

TEST_F(Control, FdsupctlShowsStatusAndSocketsAndDrivesStopStart)
{
    startDaemon();
    const auto status = ctl({"status"});
    ASSERT_EQ(status.exitCode, kOk) << status.err;
    EXPECT_THAT(status.out, HasSubstr("web"));
    EXPECT_THAT(status.out, HasSubstr("running"));

    const auto json = ctl({"status", "web", "--json"});
    ASSERT_EQ(json.exitCode, kOk) << json.err;
    const auto parsed = nlohmann::json::parse(json.out);
    EXPECT_EQ(parsed.at("services").at(0).at("ready"), 2);

    const auto sockets = ctl({"sockets", "--json"});
    ASSERT_EQ(sockets.exitCode, kOk) << sockets.err;
    EXPECT_EQ(nlohmann::json::parse(sockets.out).at("sockets").at(0).at("name"), "web");
    EXPECT_THAT(ctl({"sockets"}).out, HasSubstr("127.0.0.1:"));

    const auto stopped = ctl({"stop", "web"});
    EXPECT_EQ(stopped.exitCode, kOk) << stopped.err;
    EXPECT_EQ(fdsupd_.status("web").at("state"), "stopped");
    const auto started = ctl({"start", "web"});
    EXPECT_EQ(started.exitCode, kOk) << started.err;
    EXPECT_EQ(fdsupd_.status("web").at("state"), "running");

    const auto missing = ctl({"status", "nope"});
    EXPECT_EQ(missing.exitCode, kNotFound);
    EXPECT_THAT(missing.err, HasSubstr("nope"));
    EXPECT_EQ(ctl({"stop", "nope"}).exitCode, kNotFound);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Control, FdsupctlWithoutADaemonSaysSo)
{
    const auto r =
        runProcess({requireEnv("FDSUPCTL"), "-s", (fdsupd_.dir() / "none.sock").string(), "status"});
    EXPECT_EQ(r.exitCode, kCannotConnect);
    EXPECT_THAT(r.err, HasSubstr("cannot connect"));
}

TEST_F(Control, CallerThatIsNotAllowedIsRefused)
{
    // 0666: nobody can connect, so the refusal is fdsupd's own (SO_PEERCRED).
    startDaemon("control_mode = \"0666\"\n");
    const auto refused = ctl({"status"}, asNobody());
    EXPECT_EQ(refused.exitCode, kRefused) << refused.out << refused.err;
    EXPECT_THAT(refused.err, HasSubstr("ermission"));
    EXPECT_THAT(fdsupd_.log(), HasSubstr("uid 65534"));
    // The daemon is unaffected and still answers root.
    EXPECT_EQ(ctl({"status"}).exitCode, kOk);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Control, SocketPermissionsRefuseBeforeTheDaemonIsAsked)
{
    startDaemon(); // control_mode 0660, root:root
    const auto refused = ctl({"status"}, asNobody());
    EXPECT_EQ(refused.exitCode, kRefused) << refused.out << refused.err;
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Control, AllowedUserIsServed)
{
    startDaemon("control_mode = \"0666\"\nallow_users = [\"nobody\"]\n");
    const auto r = ctl({"status", "--json"}, asNobody());
    EXPECT_EQ(r.exitCode, kOk) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out).at("services").at(0).at("name"), "web");
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Control, GarbageTruncatedAndHugeRequestsGetErrorsAndTheDaemonGoesOn)
{
    startDaemon();
    // Settle: the harness's own connections are gone before counting.
    ASSERT_EQ(ctl({"status"}).exitCode, kOk);
    // What must hold is that nothing is open afterwards that was not open
    // before (fdsOpenedSince(): the baseline may still hold an instance's
    // transient descriptors when the machine is busy).
    const auto before = openFds(fdsupd_.pid());

    {
        UniqueFd fd = rawConnect();
        sendAll(fd.borrow(), std::string("this is not json") + '\0');
        const auto reply = nlohmann::json::parse(readReply(fd.borrow()));
        EXPECT_EQ(reply.at("error"), "io.fdsup.Manager.InvalidRequest");
        // The framing was intact, so the same connection still works.
        sendAll(fd.borrow(), std::string("{\"method\":\"io.fdsup.Manager.Status\"}") + '\0');
        const auto ok = nlohmann::json::parse(readReply(fd.borrow()));
        EXPECT_FALSE(ok.contains("error")) << ok.dump();
    }
    {
        UniqueFd fd = rawConnect();
        sendAll(fd.borrow(), "{\"method\":\"io.fdsup.Mana"); // and hang up mid-message
    }
    {
        UniqueFd fd = rawConnect();
        sendAll(fd.borrow(), std::string("{\"method\":\"io.fdsup.Manager.Nope\"}") + '\0');
        EXPECT_EQ(nlohmann::json::parse(readReply(fd.borrow())).at("error"),
                  "org.varlink.service.MethodNotFound");
    }
    {
        // Over control_request_size (4KiB): refused, connection closed.
        UniqueFd fd = rawConnect();
        const std::string huge = "{\"method\":\"io.fdsup.Manager.Status\",\"parameters\":{\"x\":\"" +
                                 std::string(std::size_t{64} * 1024, 'a') + "\"}}" + std::string(1, '\0');
        sendAll(fd.borrow(), huge);
        const std::string reply = readReply(fd.borrow());
        ASSERT_FALSE(reply.empty());
        EXPECT_EQ(nlohmann::json::parse(reply).at("error"), "io.fdsup.Manager.RequestTooLarge");
    }

    // Still serving, and every one of those connections is gone again once
    // the last hang-up has been processed (order across connections is not
    // defined).
    EXPECT_EQ(ctl({"status"}).exitCode, kOk);
    std::map<int, std::string> opened;
    EXPECT_TRUE(waitUntil([&] { return (opened = fdsOpenedSince(before, fdsupd_.pid())).empty(); }))
        << "open before:\n"
        << describeFds(before) << "opened since:\n"
        << describeFds(opened);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Control, GenericVarlinkIntrospection)
{
    startDaemon();
    const auto info = fdsupd_.call("org.varlink.service.GetInfo");
    ASSERT_EQ(info.error, "");
    EXPECT_EQ(info.parameters.at("product"), "fdsupd");
    const auto interfaces = info.parameters.at("interfaces").get<std::vector<std::string>>();
    EXPECT_THAT(interfaces, ::testing::Contains("io.fdsup.Manager"));
    const auto description =
        fdsupd_.call("org.varlink.service.GetInterfaceDescription", {{"interface", "io.fdsup.Manager"}});
    ASSERT_EQ(description.error, "");
    EXPECT_THAT(description.parameters.at("description").get<std::string>(),
                HasSubstr("interface io.fdsup.Manager"));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

} // namespace
} // namespace fdsup::test
