// The descriptor store (FDSTORE=1) and output capture, on a real event loop.
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "loop_driver.hpp"
#include "model/fd_store.hpp"
#include "model/output.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::Pair;

class FdStoreTest : public ::testing::Test {
protected:
    FdStoreTest()
    {
        auto loop = EventLoop::create();
        EXPECT_TRUE(loop);
        loop_ = std::move(*loop);
    }
    // FDSTORE=1 with FDNAME=name and the given fds.
    static NotifyMessage storing(const std::string &name, std::vector<UniqueFd> fds, bool poll = true)
    {
        NotifyMessage m;
        m.fdStore = true;
        m.fdName = name;
        m.fdPoll = poll;
        m.fds = std::move(fds);
        return m;
    }
    static std::pair<UniqueFd, UniqueFd> socketPair()
    {
        int sv[2];
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        return {UniqueFd(sv[0]), UniqueFd(sv[1])};
    }

    std::unique_ptr<EventLoop> loop_;
};

TEST_F(FdStoreTest, StoresTheVeryDescriptorsUnderTheirNameAndRemovesThemByName)
{
    FdStore store(*loop_, "web");
    auto [a, peerA] = socketPair();
    auto [b, peerB] = socketPair();
    const auto idA = test::fileId(a.borrow());
    std::vector<UniqueFd> fds;
    fds.push_back(std::move(a));
    fds.push_back(std::move(b));
    NotifyMessage m = storing("db", std::move(fds));
    store.apply(m);
    auto [c, peerC] = socketPair();
    std::vector<UniqueFd> more;
    more.push_back(std::move(c));
    NotifyMessage unnamed = storing("", std::move(more));
    store.apply(unnamed);
    EXPECT_THAT(store.summary(), ElementsAre(Pair("db", 2U), Pair("stored", 1U)));
    EXPECT_EQ(test::fileId(store.fds()[0].fd.borrow()), idA);

    NotifyMessage remove;
    remove.fdStoreRemove = true;
    remove.fdName = "db";
    store.apply(remove);
    EXPECT_THAT(store.summary(), ElementsAre(Pair("stored", 1U)));
}

TEST_F(FdStoreTest, AStoredDescriptorWhosePeerHangsUpIsDroppedUnlessFdpollIsOff)
{
    FdStore store(*loop_, "web");
    auto [watched, peerWatched] = socketPair();
    auto [kept, peerKept] = socketPair();
    std::vector<UniqueFd> one;
    one.push_back(std::move(watched));
    NotifyMessage polled = storing("watched", std::move(one));
    store.apply(polled);
    std::vector<UniqueFd> two;
    two.push_back(std::move(kept));
    NotifyMessage unpolled = storing("kept", std::move(two), false);
    store.apply(unpolled);
    peerWatched.reset();
    peerKept.reset();
    ASSERT_TRUE(test::runLoopUntil(
        *loop_, [&] { return store.summary().size() == 1; }, 10s));
    EXPECT_THAT(store.summary(), ElementsAre(Pair("kept", 1U)));
}

TEST_F(FdStoreTest, AWorkerCannotMakeFdsupdHoldMoreThanTheLimit)
{
    rlimit limit{};
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
    constexpr rlim_t kNeeded = FdStore::kMaxFds + 256;
    if (limit.rlim_max < kNeeded) {
        GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << limit.rlim_max << " is below " << kNeeded;
    }
    const rlimit saved = limit;
    limit.rlim_cur = std::max(limit.rlim_cur, kNeeded);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);
    {
        FdStore store(*loop_, "web");
        std::vector<UniqueFd> fds;
        for (std::size_t i = 0; i < FdStore::kMaxFds + 10; ++i) {
            fds.emplace_back(open("/dev/null", O_RDONLY | O_CLOEXEC));
        }
        NotifyMessage m = storing("many", std::move(fds), false);
        store.apply(m);
        EXPECT_EQ(store.fds().size(), FdStore::kMaxFds);
    }
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

TEST_F(FdStoreTest, OutputIsReadAsLinesAndTheLastPartialLineIsKeptForTheEnd)
{
    int out[2];
    int err[2];
    ASSERT_EQ(pipe2(out, O_CLOEXEC | O_NONBLOCK), 0);
    ASSERT_EQ(pipe2(err, O_CLOEXEC | O_NONBLOCK), 0);
    UniqueFd outWrite(out[1]);
    UniqueFd errWrite(err[1]);
    std::vector<std::string> lines;
    OutputCapture capture(*loop_, [&](bool isStderr, std::string_view line) {
        lines.push_back((isStderr ? "err: " : "out: ") + std::string(line));
    });
    capture.watch(UniqueFd(out[0]), UniqueFd(err[0]));
    const std::string written = "one\ntwo\nthree without newline";
    ASSERT_EQ(write(outWrite.get(), written.data(), written.size()), static_cast<ssize_t>(written.size()));
    ASSERT_EQ(write(errWrite.get(), "oops\n", 5), 5);
    ASSERT_TRUE(test::runLoopUntil(
        *loop_, [&] { return lines.size() == 3; }, 10s));
    EXPECT_THAT(lines, ::testing::UnorderedElementsAre("out: one", "out: two", "err: oops"));
    // The worker exits: what is left, partial line included, is read at once.
    outWrite.reset();
    capture.drain();
    EXPECT_EQ(lines.back(), "out: three without newline");
}

TEST(OutputLogTest, KeepsTheMostRecentLinesAndFindsAProcesssLast)
{
    OutputLog log;
    for (std::size_t i = 0; i < OutputLog::kMaxLines + 5; ++i) {
        const std::string text = "line " + std::to_string(i);
        log.add(LogLine{0, 0, static_cast<pid_t>(i % 2 == 0 ? 10 : 11), 1, false, text});
    }
    EXPECT_EQ(log.size(), OutputLog::kMaxLines);
    EXPECT_EQ(log.at(0).text, "line 5");
    EXPECT_THAT(log.lastLinesOf(11, 2), ElementsAre("line 1001", "line 1003"));
    EXPECT_TRUE(log.lastLinesOf(12, 10).empty());
}

} // namespace
} // namespace fdsup
