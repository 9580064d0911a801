// The control API's method table against the published Varlink interface description.
#include <future>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "api/control_api.hpp"
#include "control/varlink.hpp"
#include "loop_driver.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

struct IdlParam {
    std::string type; // "string", "int", "bool", "RolloutOrder"
    bool optional = false;
};

// method Name(a: string, b: ?int, ...) -> (...): every method's parameters,
// from the interface text with its comments removed.
std::map<std::string, std::map<std::string, IdlParam>> idlMethods()
{
    std::string text;
    std::istringstream lines{std::string(varlink::managerInterfaceDescription())};
    for (std::string line; std::getline(lines, line);) {
        const auto hash = line.find('#');
        text += (hash == std::string::npos ? line : line.substr(0, hash)) + " ";
    }
    std::map<std::string, std::map<std::string, IdlParam>> methods;
    const std::regex method(R"(method\s+([A-Za-z]+)\s*\(([^)]*)\))");
    const std::regex param(R"(\s*([a-z_]+)\s*:\s*(\??)([A-Za-z]+)\s*)");
    for (auto it = std::sregex_iterator(text.begin(), text.end(), method); it != std::sregex_iterator();
         ++it) {
        auto &params = methods[(*it)[1]];
        std::istringstream list((*it)[2]);
        for (std::string item; std::getline(list, item, ',');) {
            std::smatch m;
            if (std::regex_match(item, m, param)) {
                params[m[1]] = IdlParam{m[3], m[2] == "?"};
            }
        }
    }
    return methods;
}

TEST(ControlApi, TheTableHasExactlyTheMethodsTheInterfacePublishes)
{
    const auto idl = idlMethods();
    ASSERT_FALSE(idl.empty()) << "the interface description did not parse";
    std::set<std::string> table;
    for (const auto &method : ControlApi::methods()) {
        EXPECT_TRUE(table.insert(std::string(method.name)).second) << method.name << " is in the table twice";
        EXPECT_NE(method.handler, nullptr) << method.name;
    }
    std::set<std::string> published;
    for (const auto &[name, params] : idl) {
        published.insert(name);
    }
    EXPECT_EQ(table, published);
}

TEST(ControlApi, EveryMethodTakesTheParametersTheInterfaceDescribes)
{
    const auto idl = idlMethods();
    for (const auto &method : ControlApi::methods()) {
        SCOPED_TRACE(std::string(method.name));
        const auto found = idl.find(std::string(method.name));
        ASSERT_NE(found, idl.end());
        const auto &published = found->second;
        EXPECT_EQ(method.params.size(), published.size());
        for (const auto &param : method.params) {
            const auto p = published.find(std::string(param.name));
            ASSERT_NE(p, published.end()) << param.name << " is not in the interface";
            EXPECT_EQ(paramTypeName(param), p->second.type) << param.name;
            EXPECT_EQ(!param.required, p->second.optional) << param.name;
        }
    }
}

TEST(ControlApi, WhatChangesStateNeedsMoreThanReading)
{
    for (const auto &method : ControlApi::methods()) {
        const bool reads = method.name == "Status" || method.name == "Sockets" ||
                           method.name == "Connections" || method.name == "RolloutStatus" ||
                           method.name == "Logs" || method.name == "Events";
        EXPECT_EQ(method.access == Access::Read, reads) << method.name << " is " << accessName(method.access);
        if (method.name == "Reload") {
            EXPECT_EQ(method.access, Access::Admin);
        }
    }
}

// The API answering a real daemon whose service runs nothing; a client
// thread calls over the real control socket while this thread serves.
class ControlApiCalls : public ::testing::Test {
protected:
    void SetUp() override
    {
        auto loop = EventLoop::create();
        ASSERT_TRUE(loop);
        loop_ = std::move(*loop);
        const auto file = dir_ / "fdsupd.toml";
        test::writeFile(file,
                        "[supervisor]\ncontrol = \"" + control_ +
                            "\"\n[socket.web]\nlisten = "
                            "\"tcp://127.0.0.1:0\"\n[service.web]\ncommand = [\"/bin/sleep\", \"1000\"]\n"
                            "sockets = [\"web\"]\ninstances = 0\n");
        auto loaded = config::loadConfig(file.string());
        ASSERT_TRUE(loaded.config);
        auto daemon = Daemon::create(*loop_, std::move(*loaded.config), InheritedFds{});
        ASSERT_TRUE(daemon) << daemon.error().message;
        daemon_ = std::move(*daemon);
        auto api = ControlApi::create(*loop_, *daemon_);
        ASSERT_TRUE(api) << api.error().message;
        api_ = std::move(*api);
    }
    void TearDown() override
    {
        api_.reset();
        daemon_.reset();
    }

    varlink::Reply call(const std::string &method,
                        const nlohmann::json &parameters = nlohmann::json::object())
    {
        auto future = std::async(std::launch::async, [this, method, parameters]() -> varlink::Reply {
            auto client = varlink::Client::connect(control_, test::kEventDeadline);
            if (!client) {
                return varlink::Reply{{}, false, "connect: " + client.error().message};
            }
            auto reply = client->call(varlink::Call{"io.fdsup.Manager." + method, parameters, false, false});
            return reply ? *reply : varlink::Reply{{}, false, "call: " + reply.error().message};
        });
        EXPECT_TRUE(test::runLoopUntil(
            *loop_, [&] { return future.wait_for(std::chrono::seconds(0)) == std::future_status::ready; },
            test::kEventDeadline, std::chrono::milliseconds(5)));
        return future.get();
    }

    test::TempDir dir_;
    std::string control_ = (dir_ / "control.sock").string();
    std::unique_ptr<EventLoop> loop_;
    std::unique_ptr<Daemon> daemon_;
    std::unique_ptr<ControlApi> api_;
};

TEST_F(ControlApiCalls, ParametersAreDecodedOnceAndABadOneIsNamed)
{
    const auto wrongType = call("Restart", {{"service", "web"}, {"batch", "two"}});
    EXPECT_EQ(wrongType.error, "org.varlink.service.InvalidParameter");
    EXPECT_EQ(wrongType.parameters.at("parameter"), "batch");
    const auto outOfRange = call("Restart", {{"service", "web"}, {"batch", 0}});
    EXPECT_EQ(outOfRange.parameters.at("parameter"), "batch");
    const auto badOrder = call("Restart", {{"service", "web"}, {"order", "sideways"}});
    EXPECT_EQ(badOrder.parameters.at("parameter"), "order");
    const auto missing = call("Scale", {{"service", "web"}});
    EXPECT_EQ(missing.error, "org.varlink.service.InvalidParameter");
    EXPECT_EQ(missing.parameters.at("parameter"), "instances");
    const auto noService = call("Stop");
    EXPECT_EQ(noService.parameters.at("parameter"), "service");
}

TEST_F(ControlApiCalls, AnUnknownServiceOrMethodIsSaidSo)
{
    const auto unknown = call("Stop", {{"service", "nope"}});
    EXPECT_EQ(unknown.error, "io.fdsup.Manager.NoSuchService");
    EXPECT_EQ(unknown.parameters.at("service"), "nope");
    EXPECT_EQ(call("Status", {{"service", "nope"}}).error, "io.fdsup.Manager.NoSuchService");
    EXPECT_EQ(call("Frobnicate").error, "org.varlink.service.MethodNotFound");
}

TEST_F(ControlApiCalls, CancellingWithoutARolloutIsNoRollout)
{
    const auto cancel = call("RolloutCancel", {{"service", "web"}});
    EXPECT_EQ(cancel.error, "io.fdsup.Manager.NoRollout");
    const auto status = call("RolloutStatus", {{"service", "web"}});
    EXPECT_TRUE(status.error.empty());
    EXPECT_TRUE(status.parameters.at("rollout").is_null());
    EXPECT_EQ(status.parameters.at("queued"), 0);
}

TEST_F(ControlApiCalls, StatusRendersTheModel)
{
    const auto status = call("Status");
    ASSERT_TRUE(status.error.empty()) << status.error;
    const auto &web = status.parameters.at("services").at(0);
    EXPECT_EQ(web.at("name"), "web");
    EXPECT_EQ(web.at("state"), "stopped");
    EXPECT_EQ(web.at("generation"), 1);
    EXPECT_TRUE(web.at("instances").empty());
    EXPECT_TRUE(web.at("rollout").is_null());
    const auto sockets = call("Sockets");
    EXPECT_EQ(sockets.parameters.at("sockets").at(0).at("services"), nlohmann::json::array({"web"}));
}

} // namespace
} // namespace fdsup
