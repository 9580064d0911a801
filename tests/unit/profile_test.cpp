// A generation's spawn request: what a wrapped worker is started with.
#include <algorithm>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "model/profile.hpp"

namespace fdsup {
namespace {

using testing::Contains;
using testing::HasSubstr;
using testing::Not;

config::ServiceConfig wrapped()
{
    auto loaded = config::loadConfigString(R"(
[socket.web]
listen = "tcp://127.0.0.1:0"
[service.web]
command = ["/bin/true"]
sockets = ["web"]
wrap = "preload"
preload_map = { web = "tcp://0.0.0.0:9000" }
environment = { LD_PRELOAD = "/usr/lib/own.so" }
drain_signal = "SIGINT"
drain_timeout = "7s"
)",
                                           "test.toml", "/");
    EXPECT_TRUE(loaded.config);
    return loaded.config->services.at(0);
}

TEST(Profile, AWrappedWorkerGetsTheShimInFrontOfItsOwnPreloadAndThePreloadVariables)
{
    auto profile = makeProfile(wrapped(), 3, "/nonexistent/fdsup-test/shim.so");
    ASSERT_TRUE(profile) << profile.error().message;
    EXPECT_TRUE((*profile)->preloadLibraryMissing);
    EXPECT_EQ((*profile)->preloadBlocker, std::nullopt) << "/bin/true is dynamic";
    const SpawnRequest request =
        spawnRequest(**profile, 0, "@notify", {}, config::ResourceLimit{}, "@fdsup-1-x-preload-web");
    const auto &env = request.environment;
    EXPECT_THAT(env, Contains("LD_PRELOAD=/nonexistent/fdsup-test/shim.so:/usr/lib/own.so"));
    EXPECT_EQ(std::count_if(env.begin(), env.end(),
                            [](const std::string &v) { return v.starts_with("LD_PRELOAD="); }),
              1);
    EXPECT_THAT(env, Contains("FDSUP_PRELOAD=@fdsup-1-x-preload-web"));
    EXPECT_THAT(env, Contains("FDSUP_PRELOAD_MAP=web=tcp://0.0.0.0:9000"));
    EXPECT_THAT(env, Contains("FDSUP_DRAIN_SIGNAL=" + std::to_string(SIGINT)));
    EXPECT_THAT(env, Contains("FDSUP_DRAIN_TIMEOUT_USEC=7000000"));
    EXPECT_THAT(env, Contains("FDSUP_GENERATION=3"));
}

TEST(Profile, AServiceThatIsNotWrappedGetsNoneOfIt)
{
    config::ServiceConfig plain = wrapped();
    plain.wrap = config::Wrap::None;
    auto profile = makeProfile(plain, 1, "/nonexistent/fdsup-test/shim.so");
    ASSERT_TRUE(profile);
    const SpawnRequest request = spawnRequest(**profile, 0, "@notify", {}, config::ResourceLimit{}, "");
    EXPECT_THAT(request.environment, Contains("LD_PRELOAD=/usr/lib/own.so"));
    for (const auto &v : request.environment) {
        EXPECT_THAT(v, Not(HasSubstr("FDSUP_PRELOAD")));
        EXPECT_THAT(v, Not(HasSubstr("FDSUP_DRAIN")));
    }
}

} // namespace
} // namespace fdsup
