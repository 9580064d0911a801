// The fixture of the fault tests (faults_test.cpp, faults_paths_test.cpp): a real fdsupd, a
// bystander service answering a real client throughout, and fdsupd's descriptor baseline.
#pragma once

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "load_clients.hpp"
#include "seqnum_clients.hpp"
#include "test_support.hpp"

namespace fdsup::test {

inline constexpr int kClients = 10;

class Faults : public DaemonTest<> {
protected:
    // web: seqnum-echo on the worker channel with handoff; other: the bystander.
    static std::string seqnumWeb(const std::string &extra = "")
    {
        return socketAndService("web", "tcp://127.0.0.1:0", commandOf(requireEnv("FDSUP_TEST_SEQNUM_ECHO")),
                                "ready = \"channel\"\nhandoff = true\ndrain_timeout = \"60s\"\n" + extra);
    }

    static std::string bystander(int port = 0)
    {
        return socketAndService("other", "tcp://127.0.0.1:" + std::to_string(port),
                                commandOf(requireEnv("FDSUP_TEST_HTTP_KEEPALIVE")), "ready = \"channel\"\n");
    }

    // Starts fdsupd with these services and the bystander, its curl client,
    // and notes fdsupd's descriptor count once everything is ready.
    void start(const std::string &services, int bystanderPort = 0)
    {
        std::string why;
        ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + services + bystander(bystanderPort), why, {},
                                  sanitizersAtTheDescriptorLimit()))
            << why;
        startBystander();
    }

    // The sanitizers' runtime needs descriptors of its own: UBSan checks the
    // dynamic type of an object it has not seen before by writing its vtable
    // into a pipe(2) (sanitizer_common's IsAccessibleMemoryRange), and when
    // pipe() fails with EMFILE it reports "object has invalid vptr" on a
    // perfectly valid object (tests/README.md, "The sanitizers at the
    // descriptor limit"). The fdsupd of these tests, which is run out of descriptors on
    // purpose, runs without that one check; ASan and the rest of UBSan stay.
    // Without sanitizers the variable changes nothing.
    [[nodiscard]] std::vector<std::string> sanitizersAtTheDescriptorLimit() const
    {
        const auto suppressions = fdsupd_.dir() / "ubsan.supp";
        writeFile(suppressions, "vptr:*\n");
        const char *inherited = std::getenv("UBSAN_OPTIONS");
        const std::string options =
            inherited != nullptr && *inherited != '\0' ? std::string(inherited) + ":" : "";
        return {"UBSAN_OPTIONS=" + options + "suppressions=" + suppressions.string()};
    }

    // The bystander's client, and the baseline, once fdsupd runs.
    void startBystander()
    {
        bystanderLoad_.start(fdsupd_.port("other"), 1, LoadClients::Tool::Curl);
        ASSERT_TRUE(bystanderLoad_.waitForRequests(3, kEventDeadline)) << "the bystander does not answer";
        noteBaseline();
    }

    // fdsupd's descriptors once it holds no control connection (the
    // harness's last call hung up, and fdsupd closes its end after).
    void noteBaseline()
    {
        EXPECT_TRUE(waitUntil([&] {
            const auto connections = controlConnections();
            baselineFds_ = openFds(fdsupd_.pid());
            return std::none_of(baselineFds_.begin(), baselineFds_.end(),
                                [&](const auto &fd) { return connections.count(fd.second) != 0; });
        }));
        baseline_ = static_cast<int>(baselineFds_.size());
    }

    // "socket:[INODE]" of every connection accepted on the control socket, from /proc/net/unix.
    std::set<std::string> controlConnections() const
    {
        std::set<std::string> out;
        std::istringstream table(readFile("/proc/net/unix"));
        for (std::string line; std::getline(table, line);) {
            std::istringstream in(line);
            std::string slot, refs, protocol, flags, type, state, inode, path;
            in >> slot >> refs >> protocol >> flags >> type >> state >> inode >> path;
            if (path == fdsupd_.controlPath() && state == "03") {
                out.insert("socket:[" + inode + "]");
            }
        }
        return out;
    }

    // The bystander answered every request, from start() until now.
    void expectBystanderServed()
    {
        const LoadReport report = bystanderLoad_.stop();
        EXPECT_GT(report.ok, 0U);
        EXPECT_EQ(report.refused, 0U) << report.summary();
        EXPECT_EQ(report.failed, 0U) << report.summary();
    }

    // fdsupd's descriptors come back to the count of start().
    void expectFdsAtBaseline()
    {
        EXPECT_TRUE(waitUntil([&] { return countFdsOf(fdsupd_.pid()) == baseline_; }))
            << countFdsOf(fdsupd_.pid()) << " descriptors, " << baseline_ << " at start:\n"
            << describeFds(openFds(fdsupd_.pid())) << "at start:\n"
            << describeFds(baselineFds_);
    }

    nlohmann::json connections(const std::string &service = "web")
    {
        return fdsupd_.call("io.fdsup.Manager.Connections", {{"service", service}})
            .parameters.at("services")
            .at(0);
    }

    // The state of the instance with this pid ("" when it is not listed).
    std::string stateOf(pid_t pid, const std::string &service = "web")
    {
        const auto status = fdsupd_.status(service);
        for (const auto &instance : status.at("instances")) {
            if (instance.at("pid").is_number() && instance.at("pid").get<pid_t>() == pid) {
                return instance.at("state").get<std::string>();
            }
        }
        return "";
    }

    pid_t onlyPid(const std::string &service = "web")
    {
        const auto pids = instancePids(fdsupd_.status(service));
        EXPECT_EQ(pids.size(), 1U);
        return pids.empty() ? 0 : *pids.begin();
    }

    // Stops `old` (SIGSTOP), restarts web without waiting, and waits until
    // fdsupd has told `old` to drain (DRAIN queued in its channel) with its
    // replacement ready: the handoff is due and nothing of it happened yet.
    // Returns the replacement's pid.
    pid_t restartWithTheOldOneStopped(pid_t old)
    {
        EXPECT_EQ(kill(old, SIGSTOP), 0);
        const auto restart = fdsupd_.fdsupctl({"restart", "--no-wait", "web"});
        EXPECT_EQ(restart.exitCode, 0) << restart.out << restart.err;
        pid_t replacement = 0;
        EXPECT_TRUE(waitUntil([&] {
            const auto status = fdsupd_.status("web");
            for (const auto &instance : status.at("instances")) {
                if (instance.at("pid").is_number() && instance.at("pid").get<pid_t>() != old &&
                    instance.at("state") == "ready") {
                    replacement = instance.at("pid").get<pid_t>();
                }
            }
            return replacement != 0 && stateOf(old) == "draining";
        })) << fdsupd_.status("web").dump();
        return replacement;
    }

    // A restart with kClients fresh seqnum clients hands every connection
    // over and the clients see nothing: fdsupd is whole again.
    void expectAHandoffRestartWorks()
    {
        const auto before = connections();
        SeqnumClients clients(fdsupd_.port("web"), kClients);
        ASSERT_TRUE(waitUntil([&] { return clients.rounds() >= 10 * kClients; }));
        const auto restart = fdsupd_.fdsupctl({"restart", "--wait", "web"});
        EXPECT_EQ(restart.exitCode, 0) << restart.out << restart.err;
        const std::uint64_t after = clients.rounds();
        EXPECT_TRUE(waitUntil([&] { return clients.rounds() >= after + 10 * kClients; }));
        clients.close();
        EXPECT_TRUE(clients.errors().empty()) << ::testing::PrintToString(clients.errors());
        const auto now = connections();
        EXPECT_EQ(now.at("handed").get<int>() - before.at("handed").get<int>(), kClients);
        EXPECT_EQ(now.at("adopted").get<int>() - before.at("adopted").get<int>(), kClients);
        EXPECT_TRUE(now.at("held").empty());
    }

    // web: two sd-workers that get ready only once the file `ready` exists.
    std::string readyFileWeb(int port = 0)
    {
        return socketAndService("web", "tcp://127.0.0.1:" + std::to_string(port),
                                fdsupd_.workerCommand("serve", {"--ready-file", readyFile().string()}),
                                "instances = 2\nready = \"notify\"\nstop_timeout = \"10s\"\n");
    }
    [[nodiscard]] std::filesystem::path readyFile() const { return fdsupd_.dir() / "ready"; }

    // The pid of the next worker that reports its start and is not in `known`.
    pid_t nextStarted(const std::set<pid_t> &known)
    {
        const auto started = fdsupd_.reports().waitFor(
            [&](const std::string &m) {
                return m.starts_with("start ") && known.count(std::stoi(m.substr(6))) == 0;
            },
            kEventDeadline);
        return started ? std::stoi(started->substr(6)) : 0;
    }

    LoadClients bystanderLoad_;
    int baseline_ = 0;
    std::map<int, std::string> baselineFds_;
};

} // namespace fdsup::test
