// The control API's method table against the published Varlink interface description.
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "api/control_api.hpp"
#include "control/varlink.hpp"

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
                           method.name == "Logs";
        EXPECT_EQ(method.access == Access::Read, reads) << method.name << " is " << accessName(method.access);
        if (method.name == "Reload") {
            EXPECT_EQ(method.access, Access::Admin);
        }
    }
}

} // namespace
} // namespace fdsup
