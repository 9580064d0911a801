// The handoff broker on real connections and real worker channels, with a fake clock for its deadlines.
#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "fake_clock.hpp"
#include "loop_driver.hpp"
#include "model/handoff_broker.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;

UniqueFd tcpListener()
{
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd.get(), 64), 0);
    return fd;
}

// A client connected to `listener` and the server side of it, as a worker
// accepted it.
struct Connection {
    UniqueFd client;
    UniqueFd server;
};
Connection connectTo(BorrowedFd listener)
{
    sockaddr_in a{};
    socklen_t length = sizeof a;
    EXPECT_EQ(getsockname(listener.get(), reinterpret_cast<sockaddr *>(&a), &length), 0);
    Connection c;
    c.client = UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(connect(c.client.get(), reinterpret_cast<sockaddr *>(&a), length), 0);
    c.server = UniqueFd(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    EXPECT_TRUE(c.server);
    return c;
}

// A worker on a real channel: the test holds the worker's end.
class TestPeer final : public ChannelPeer {
public:
    TestPeer(EventLoop &loop, std::string name, unsigned generation, bool adopting)
        : name_(std::move(name)), generation_(generation), adopting_(adopting)
    {
        config_.name = "web";
        config_.handoff = true;
        auto channel = WorkerChannel::create(
            loop, workerEnd_, [](ChannelMessage &&) {}, [](const std::string &) {});
        EXPECT_TRUE(channel) << channel.error().message;
        (*channel)->welcomed = true;
        (*channel)->capabilities = kChannelCapHandoff | kChannelCapAdopt;
        setChannel(std::move(*channel));
        const int flags = fcntl(workerEnd_.get(), F_GETFL);
        fcntl(workerEnd_.get(), F_SETFL, flags | O_NONBLOCK);
    }

    // The next message fdsupd sent this worker, if any.
    std::optional<ChannelMessage> received()
    {
        ChannelMessage m;
        if (recvChannelMessage(workerEnd_.borrow(), m) < 0) {
            return std::nullopt;
        }
        return m;
    }
    void setAdopting(bool adopting) { adopting_ = adopting; }

    [[nodiscard]] const config::ServiceConfig &peerConfig() const override { return config_; }
    [[nodiscard]] unsigned peerGeneration() const override { return generation_; }
    [[nodiscard]] std::uint32_t instanceNumber() const override { return 0; }
    [[nodiscard]] bool isExternal() const override { return false; }
    [[nodiscard]] std::string describe() const override { return name_; }
    [[nodiscard]] bool adopting() const override { return adopting_; }
    void channelReady(const std::string & /*status*/) override {}

private:
    config::ServiceConfig config_;
    UniqueFd workerEnd_;
    std::string name_;
    unsigned generation_;
    bool adopting_;
};

class HandoffBrokerTest : public ::testing::Test {
protected:
    HandoffBrokerTest()
    {
        auto loop = EventLoop::create();
        EXPECT_TRUE(loop);
        loop_ = std::move(*loop);
        const std::vector<BorrowedFd> listeners{listener_.borrow()};
        addresses_ = listenerAddresses(listeners);
    }

    HandoffBroker &broker()
    {
        if (!broker_) {
            broker_ =
                std::make_unique<HandoffBroker>(*loop_, clock_, limits_, "web", [this](const auto &visit) {
                    for (auto *peer : peers_) {
                        visit(*peer);
                    }
                });
            broker_->setHoldTimeout(1s);
        }
        return *broker_;
    }
    TestPeer &peer(const std::string &name, unsigned generation, bool adopting)
    {
        owned_.push_back(std::make_unique<TestPeer>(*loop_, name, generation, adopting));
        peers_.push_back(owned_.back().get());
        return *owned_.back();
    }
    // peer hands over a new connection with `state`; returns its client end
    // and HANDOFF_RESULT's code.
    std::pair<UniqueFd, std::uint32_t> handOver(TestPeer &from, std::uint64_t id,
                                                const std::string &state = "GET /")
    {
        Connection c = connectTo(listener_.borrow());
        served_.push_back(test::fileId(c.server.borrow()));
        ChannelMessage handoff;
        handoff.type = ChannelType::Handoff;
        handoff.id = id;
        handoff.stateSize = state.size();
        for (const char ch : state) {
            handoff.state.push_back(static_cast<std::byte>(ch));
        }
        handoff.fds.push_back(std::move(c.server));
        broker().accept(from, handoff, addresses_);
        const auto result = from.received();
        EXPECT_TRUE(result.has_value());
        EXPECT_EQ(result ? result->type : ChannelType::Error, ChannelType::HandoffResult);
        return {std::move(c.client), result ? result->code : 0xFFFFFFFF};
    }

    std::unique_ptr<EventLoop> loop_;
    test::FakeClock clock_;
    HandoffLimits limits_;
    UniqueFd listener_ = tcpListener();
    std::vector<ListenerAddress> addresses_;
    std::vector<std::unique_ptr<TestPeer>> owned_;
    std::vector<ChannelPeer *> peers_;
    std::vector<test::FileId> served_; // the server side of each connection handed over
    std::unique_ptr<HandoffBroker> broker_;
};

TEST_F(HandoffBrokerTest, AConnectionIsHeldUntilAnAdopterIsReadyThenGivenWithItsState)
{
    TestPeer &old = peer("old", 1, false);
    TestPeer &replacement = peer("new", 2, false);
    auto [client, code] = handOver(old, 7, "GET /a HTTP/1.1\r\n");
    EXPECT_EQ(code, 0U);
    EXPECT_EQ(broker().held().size(), 1U);
    EXPECT_EQ(limits_.heldTotal, 1U);
    EXPECT_FALSE(replacement.received()) << "nobody adopts before it is ready";

    replacement.setAdopting(true);
    broker().deliver();
    auto adopt = replacement.received();
    ASSERT_TRUE(adopt);
    EXPECT_EQ(adopt->type, ChannelType::Adopt);
    EXPECT_EQ(adopt->id, 7U);
    EXPECT_EQ(std::string(reinterpret_cast<const char *>(adopt->state.data()), adopt->state.size()),
              "GET /a HTTP/1.1\r\n");
    ASSERT_EQ(adopt->fds.size(), 1U);
    // The very socket the old worker accepted.
    EXPECT_EQ(test::fileId(adopt->fds[0].borrow()), served_.at(0));
    EXPECT_TRUE(broker().held().empty());
    EXPECT_EQ(limits_.heldTotal, 0U);
    EXPECT_EQ(broker().counters().handed, 1U);
    EXPECT_EQ(broker().counters().adopted, 1U);
    EXPECT_EQ(replacement.adopted(), 1U);
}

TEST_F(HandoffBrokerTest, TheNewestGenerationAdoptsFirstThenWhoeverWasGivenFewest)
{
    TestPeer &old = peer("old", 1, true);
    TestPeer &a = peer("a", 2, true);
    TestPeer &b = peer("b", 2, true);
    std::vector<UniqueFd> clients;
    for (std::uint64_t id = 1; id <= 4; ++id) {
        auto handed = handOver(old, id);
        EXPECT_EQ(handed.second, 0U);
        clients.push_back(std::move(handed.first));
    }
    EXPECT_EQ(old.adopted(), 0U)
        << "a connection never goes back to an older generation while a newer one adopts";
    EXPECT_EQ(a.adopted(), 2U);
    EXPECT_EQ(b.adopted(), 2U);
}

TEST_F(HandoffBrokerTest, AConnectionNobodyAdoptsIsClosedAtTheHoldTimeout)
{
    TestPeer &old = peer("old", 1, false);
    auto [client, code] = handOver(old, 1);
    ASSERT_EQ(code, 0U);
    clock_.advance(999ms);
    EXPECT_EQ(broker().held().size(), 1U);
    clock_.advance(1ms);
    EXPECT_TRUE(broker().held().empty());
    EXPECT_EQ(broker().counters().expired, 1U);
    EXPECT_EQ(limits_.heldTotal, 0U);
    // The client sees the connection end: fdsupd held the last reference.
    char byte = 0;
    EXPECT_EQ(recv(client.get(), &byte, 1, 0), 0);
    EXPECT_EQ(clock_.armed(), 0U);
}

TEST_F(HandoffBrokerTest, ConnectionsExpireOneByOneInTheOrderHandedOver)
{
    TestPeer &old = peer("old", 1, false);
    auto first = handOver(old, 1);
    clock_.advance(600ms);
    auto second = handOver(old, 2);
    clock_.advance(400ms);
    ASSERT_EQ(broker().held().size(), 1U);
    EXPECT_EQ(broker().held().front()->id, 2U);
    clock_.advance(600ms);
    EXPECT_TRUE(broker().held().empty());
    EXPECT_EQ(broker().counters().expired, 2U);
}

TEST_F(HandoffBrokerTest, AClientThatHangsUpWhileHeldIsDropped)
{
    TestPeer &old = peer("old", 1, false);
    auto [client, code] = handOver(old, 1);
    ASSERT_EQ(code, 0U);
    client.reset();
    ASSERT_TRUE(test::runLoopUntil(
        *loop_, [&] { return broker().counters().hungUp == 1; }, 10s));
    EXPECT_TRUE(broker().held().empty());
    EXPECT_EQ(limits_.heldTotal, 0U);
}

TEST_F(HandoffBrokerTest, WhatIsNotTheServicesOwnConnectionIsRefusedAndClosed)
{
    TestPeer &old = peer("old", 1, false);
    const int fdsBefore = test::countOpenFds();
    {
        // Accepted on another listener.
        UniqueFd other = tcpListener();
        Connection c = connectTo(other.borrow());
        ChannelMessage handoff;
        handoff.type = ChannelType::Handoff;
        handoff.id = 1;
        handoff.fds.push_back(std::move(c.server));
        broker().accept(old, handoff, addresses_);
        auto result = old.received();
        ASSERT_TRUE(result);
        EXPECT_EQ(result->code, static_cast<std::uint32_t>(EPERM));
    }
    {
        int pipeFds[2];
        ASSERT_EQ(pipe2(pipeFds, O_CLOEXEC), 0);
        UniqueFd writeEnd(pipeFds[1]);
        ChannelMessage handoff;
        handoff.type = ChannelType::Handoff;
        handoff.id = 2;
        handoff.fds.emplace_back(pipeFds[0]);
        broker().accept(old, handoff, addresses_);
        auto result = old.received();
        ASSERT_TRUE(result);
        EXPECT_EQ(result->code, static_cast<std::uint32_t>(ENOTSOCK));
    }
    EXPECT_EQ(test::countOpenFds(), fdsBefore) << "every refused descriptor is closed";
    EXPECT_EQ(broker().counters().refused, 2U);
    EXPECT_TRUE(broker().held().empty());
}

TEST_F(HandoffBrokerTest, LimitsRefuseWithEnobufsAndStateOverTheLimitWithEmsgsize)
{
    TestPeer &old = peer("old", 1, false);
    limits_.heldLimitPerService = 1;
    auto first = handOver(old, 1);
    EXPECT_EQ(first.second, 0U);
    auto second = handOver(old, 2);
    EXPECT_EQ(second.second, static_cast<std::uint32_t>(ENOBUFS));
    limits_.heldLimitPerService = 16;
    limits_.heldLimit = 1; // every service together
    auto third = handOver(old, 3);
    EXPECT_EQ(third.second, static_cast<std::uint32_t>(ENOBUFS));
    limits_.heldLimit = 16;
    limits_.stateLimit = 4;
    auto fourth = handOver(old, 4, "GET /too/long");
    EXPECT_EQ(fourth.second, static_cast<std::uint32_t>(EMSGSIZE));
    EXPECT_EQ(broker().held().size(), 1U);
    EXPECT_EQ(broker().counters().refused, 3U);
}

TEST_F(HandoffBrokerTest, AWorkerNotGrantedHandoffIsRefused)
{
    TestPeer &old = peer("old", 1, false);
    old.channel()->capabilities = kChannelCapAdopt;
    auto [client, code] = handOver(old, 1);
    EXPECT_EQ(code, static_cast<std::uint32_t>(EPERM));
}

TEST_F(HandoffBrokerTest, AFullAdopterChannelIsTriedAgainShortlyNeverWaitedOn)
{
    TestPeer &old = peer("old", 1, false);
    TestPeer &replacement = peer("new", 2, true);
    // Fill the replacement's channel with messages it does not read.
    ChannelMessage filler;
    filler.type = ChannelType::Drain;
    int queued = 0;
    while (replacement.channel()->send(filler) == 0) {
        ++queued;
    }
    ASSERT_GT(queued, 0);
    auto [client, code] = handOver(old, 1);
    ASSERT_EQ(code, 0U);
    EXPECT_EQ(broker().held().size(), 1U) << "held while the adopter's channel is full";
    EXPECT_EQ(clock_.nextDue(), clock_.now() + HandoffBroker::kRetryAfter);
    // The worker reads its backlog; the retry delivers.
    for (int i = 0; i < queued; ++i) {
        ASSERT_TRUE(replacement.received());
    }
    clock_.advance(HandoffBroker::kRetryAfter);
    EXPECT_TRUE(broker().held().empty());
    auto adopt = replacement.received();
    ASSERT_TRUE(adopt);
    EXPECT_EQ(adopt->type, ChannelType::Adopt);
}

TEST_F(HandoffBrokerTest, ABrokerThatGoesGivesBackWhatItHeld)
{
    TestPeer &old = peer("old", 1, false);
    auto first = handOver(old, 1);
    auto second = handOver(old, 2);
    EXPECT_EQ(limits_.heldTotal, 2U);
    broker_.reset();
    EXPECT_EQ(limits_.heldTotal, 0U);
}

// Transfer: takeAll() empties a broker and gives back its counts; hold()
// keeps a connection for its remaining time, in order, on the checks of a
// handoff, and gives it to an adopter.
TEST_F(HandoffBrokerTest, ATransferTakesEveryHeldConnectionAndAnotherBrokerHoldsItForItsRemainingTime)
{
    TestPeer &old = peer("old", 1, false);
    auto first = handOver(old, 1);
    clock_.advance(300ms);
    auto second = handOver(old, 2, "GET /b");
    auto taken = broker().takeAll();
    ASSERT_EQ(taken.size(), 2U);
    EXPECT_TRUE(broker().held().empty());
    EXPECT_EQ(limits_.heldTotal, 0U);
    EXPECT_EQ(clock_.armed(), 0U);

    // Held again with 700 ms and 1 s left: the second (held longer here) is
    // kept after the first, and each expires at its own time.
    ASSERT_TRUE(broker().hold(std::move(taken[1]), 1s, addresses_));
    ASSERT_TRUE(broker().hold(std::move(taken[0]), 700ms, addresses_));
    EXPECT_EQ(limits_.heldTotal, 2U);
    ASSERT_EQ(broker().held().size(), 2U);
    EXPECT_EQ(broker().held().front()->id, 1U);
    clock_.advance(700ms);
    ASSERT_EQ(broker().held().size(), 1U);
    EXPECT_EQ(broker().held().front()->id, 2U);

    // An adopter gets it with its state, the very socket handed over.
    TestPeer &replacement = peer("new", 2, true);
    broker().deliver();
    auto adopt = replacement.received();
    ASSERT_TRUE(adopt);
    EXPECT_EQ(adopt->id, 2U);
    EXPECT_EQ(std::string(reinterpret_cast<const char *>(adopt->state.data()), adopt->state.size()),
              "GET /b");
    ASSERT_EQ(adopt->fds.size(), 1U);
    EXPECT_EQ(test::fileId(adopt->fds[0].borrow()), served_.at(1));
    EXPECT_EQ(limits_.heldTotal, 0U);
}

TEST_F(HandoffBrokerTest, ATransferredConnectionNotFromTheServicesListenersIsRefused)
{
    UniqueFd other = tcpListener();
    Connection c = connectTo(other.borrow());
    auto held = std::make_unique<HeldConnection>();
    held->fd = std::move(c.server);
    const auto r = broker().hold(std::move(held), 1s, addresses_);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EPERM);
    EXPECT_TRUE(broker().held().empty());
    EXPECT_EQ(limits_.heldTotal, 0U);
}

// Records what a broker asks of its store (HeldConnectionStore's contract).
class RecordingStore final : public HeldConnectionStore {
public:
    void put(const std::string &service, HeldConnection &held) override
    {
        held.storedAs = service + "." + std::to_string(held.id);
        events.push_back("put " + held.storedAs);
    }
    void remove(const HeldConnection &held) override { events.push_back("remove " + held.storedAs); }
    std::vector<std::string> events;
};

// Every connection held is stored, and removed from the store on each way
// out: adopted, expired, hung up, taken out by a transfer; not when the
// broker goes (fdsupd stopping: the store keeps it for the next one), and
// not again when one already stored is held (given back at start).
TEST_F(HandoffBrokerTest, HeldConnectionsAreStoredAndRemovedFromTheStoreOnEveryWayOut)
{
    RecordingStore store;
    limits_.store = &store;
    TestPeer &old = peer("old", 1, false);
    auto adopted = handOver(old, 1);
    auto expired = handOver(old, 2);
    auto hungUp = handOver(old, 3);
    EXPECT_EQ(store.events, (std::vector<std::string>{"put web.1", "put web.2", "put web.3"}));
    store.events.clear();

    TestPeer &replacement = peer("new", 2, true);
    broker().deliver(); // all three adopted
    EXPECT_EQ(store.events, (std::vector<std::string>{"remove web.1", "remove web.2", "remove web.3"}));
    replacement.setAdopting(false);
    store.events.clear();

    auto timedOut = handOver(old, 4);
    clock_.advance(1s);
    auto gone = handOver(old, 5);
    gone.first.reset();
    ASSERT_TRUE(test::runLoopUntil(
        *loop_, [&] { return broker().counters().hungUp == 1; }, 10s));
    auto moved = handOver(old, 6);
    auto taken = broker().takeAll();
    ASSERT_EQ(taken.size(), 1U);
    EXPECT_TRUE(taken[0]->storedAs.empty()); // the other fdsupd stores it, under its own name
    EXPECT_EQ(store.events, (std::vector<std::string>{"put web.4", "remove web.4", "put web.5",
                                                      "remove web.5", "put web.6", "remove web.6"}));
    store.events.clear();

    // Held again (a transfer given back): stored again. Back from the store: not.
    ASSERT_TRUE(broker().hold(std::move(taken[0]), 1s, addresses_));
    auto restored = std::make_unique<HeldConnection>();
    restored->id = 7;
    restored->fd = connectTo(listener_.borrow()).server;
    restored->storedAs = "fdsup.held.web.1.7";
    ASSERT_TRUE(broker().hold(std::move(restored), 1s, addresses_));
    EXPECT_EQ(store.events, (std::vector<std::string>{"put web.6"}));
    store.events.clear();
    broker_.reset(); // fdsupd stops with two held: they stay in the store
    EXPECT_TRUE(store.events.empty());
}

// A worker that hands over faster than it reads its answers fills its
// channel: the HANDOFF_RESULT waits in fdsupd, in order, and goes once there
// is room (it used to be dropped, and the worker waited for it until its
// drain deadline).
TEST_F(HandoffBrokerTest, AnAnswerThatFindsTheWorkersChannelFullIsSentOnceThereIsRoom)
{
    TestPeer &old = peer("old", 1, false);
    ChannelMessage filler;
    filler.type = ChannelType::Drain;
    int queued = 0;
    while (old.channel()->send(filler) == 0) {
        ++queued;
    }
    ASSERT_GT(queued, 0);
    Connection c = connectTo(listener_.borrow());
    ChannelMessage handoff;
    handoff.type = ChannelType::Handoff;
    handoff.id = 7;
    handoff.fds.push_back(std::move(c.server));
    broker().accept(old, handoff, addresses_);
    EXPECT_EQ(broker().counters().handed, 1U);
    // The worker reads its backlog: the answer is not in it yet.
    for (int i = 0; i < queued; ++i) {
        const auto m = old.received();
        ASSERT_TRUE(m);
        EXPECT_EQ(m->type, ChannelType::Drain);
    }
    EXPECT_FALSE(old.received());
    // There is room now: the loop sends it.
    std::optional<ChannelMessage> answer;
    ASSERT_TRUE(test::runLoopUntil(
        *loop_, [&] { return (answer = old.received()).has_value(); }, 10s));
    EXPECT_EQ(answer->type, ChannelType::HandoffResult);
    EXPECT_EQ(answer->id, 7U);
    EXPECT_EQ(answer->code, 0U);
}

// A connection an adopter takes at once is never parked: not watched for a
// hang-up, not stored, not timed (docs/handoff.md, "Performance").
TEST_F(HandoffBrokerTest, AConnectionAnAdopterTakesAtOnceIsNeitherStoredNorTimed)
{
    RecordingStore store;
    limits_.store = &store;
    TestPeer &old = peer("old", 1, false);
    TestPeer &replacement = peer("new", 2, true);
    auto [client, code] = handOver(old, 1);
    ASSERT_EQ(code, 0U);
    EXPECT_EQ(broker().counters().adopted, 1U);
    EXPECT_TRUE(broker().held().empty());
    EXPECT_TRUE(store.events.empty());
    EXPECT_FALSE(clock_.nextDue().has_value()) << "no hold timer for a connection adopted at once";
    const auto adopt = replacement.received();
    ASSERT_TRUE(adopt);
    EXPECT_EQ(adopt->type, ChannelType::Adopt);
}

} // namespace
} // namespace fdsup
