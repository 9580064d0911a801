// The control API's wire format: message codec, stream framing and the blocking client.
#include <cerrno>
#include <string>
#include <string_view>
#include <thread>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "control/varlink.hpp"
#include "test_support.hpp"

namespace fdsup::varlink {
namespace {

using ::testing::HasSubstr;
using namespace std::string_view_literals;

TEST(VarlinkCodec, CallRoundTrips)
{
    Call call;
    call.method = "io.fdsup.Manager.Status";
    call.parameters = {{"service", "web"}, {"n", 3}};
    call.more = true;
    const std::string wire = encodeCall(call);
    ASSERT_FALSE(wire.empty());
    EXPECT_EQ(wire.back(), '\0');
    EXPECT_EQ(wire.find('\0'), wire.size() - 1);
    const auto back = decodeCall(std::string_view(wire).substr(0, wire.size() - 1));
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(back->method, call.method);
    EXPECT_EQ(back->parameters, call.parameters);
    EXPECT_TRUE(back->more);
    EXPECT_FALSE(back->oneway);
}

TEST(VarlinkCodec, CallEncodingIsPlainVarlink)
{
    EXPECT_EQ(encodeCall(Call{"org.varlink.service.GetInfo", nlohmann::json::object(), false, false}),
              "{\"method\":\"org.varlink.service.GetInfo\",\"parameters\":{}}\0"sv);
    EXPECT_EQ(encodeCall(Call{"a.b.C", nlohmann::json::object(), false, true}),
              "{\"method\":\"a.b.C\",\"oneway\":true,\"parameters\":{}}\0"sv);
}

TEST(VarlinkCodec, ReplyRoundTrips)
{
    Reply reply;
    reply.parameters = {{"services", nlohmann::json::array({{{"name", "web"}}})}};
    reply.continues = true;
    const std::string wire = encodeReply(reply);
    EXPECT_EQ(wire, "{\"continues\":true,\"parameters\":{\"services\":[{\"name\":\"web\"}]}}\0"sv);
    const auto back = decodeReply(std::string_view(wire).substr(0, wire.size() - 1));
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(back->parameters, reply.parameters);
    EXPECT_TRUE(back->continues);
    EXPECT_TRUE(back->error.empty());
}

TEST(VarlinkCodec, ErrorReplyRoundTrips)
{
    const Reply reply{{{"service", "nope"}}, false, std::string(kErrorNoSuchService)};
    const std::string wire = encodeReply(reply);
    EXPECT_EQ(wire,
              "{\"error\":\"io.fdsup.Manager.NoSuchService\",\"parameters\":{\"service\":\"nope\"}}\0"sv);
    const auto back = decodeReply(std::string_view(wire).substr(0, wire.size() - 1));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->error, kErrorNoSuchService);
    EXPECT_EQ(back->parameters.at("service"), "nope");
}

TEST(VarlinkCodec, InvalidUtf8IsReplacedNotThrown)
{
    Reply reply;
    reply.parameters = {{"status", std::string("bad \xff byte")}};
    std::string wire;
    EXPECT_NO_THROW(wire = encodeReply(reply));
    const auto back = decodeReply(std::string_view(wire).substr(0, wire.size() - 1));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->parameters.at("status"), "bad \xef\xbf\xbd byte");
}

TEST(VarlinkCodec, AbsentParametersAreAnEmptyObject)
{
    const auto call = decodeCall(R"({"method":"org.varlink.service.GetInfo"})");
    ASSERT_TRUE(call);
    EXPECT_EQ(call->parameters, nlohmann::json::object());
    const auto reply = decodeReply(R"({})");
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->parameters, nlohmann::json::object());
}

struct Malformed {
    std::string_view input;
    std::string_view reason;
};

class VarlinkMalformedCall : public ::testing::TestWithParam<Malformed> {};

TEST_P(VarlinkMalformedCall, IsRefusedWithAReason)
{
    const auto r = decodeCall(GetParam().input);
    ASSERT_FALSE(r) << GetParam().input;
    EXPECT_EQ(r.error().code, EINVAL);
    EXPECT_THAT(r.error().message, HasSubstr(std::string(GetParam().reason)));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, VarlinkMalformedCall,
    ::testing::Values(Malformed{"", "not valid JSON"}, Malformed{"hello", "not valid JSON"},
                      Malformed{R"({"method":"a.b.C")", "not valid JSON"},
                      Malformed{R"({"method":"a.b.C"} trailing)", "not valid JSON"},
                      Malformed{R"({"method":"a.b.C"}{})", "not valid JSON"},
                      Malformed{"{\"method\":\"a.b.C\"}\0{}"sv, "NUL"},
                      Malformed{"{\"method\":\"a.b\0.C\"}"sv, "NUL"}, Malformed{"[1,2]", "not a JSON object"},
                      Malformed{"\"str\"", "not a JSON object"}, Malformed{"{}", "'method' is missing"},
                      Malformed{R"({"method":5})", "'method' is not a string"},
                      Malformed{R"({"method":null})", "'method' is not a string"},
                      Malformed{R"({"method":"GetInfo"})", "qualified"},
                      Malformed{R"({"method":"io.fdsup.Manager."})", "qualified"},
                      Malformed{R"({"method":"io.fdsup.Manager.status"})", "qualified"},
                      Malformed{R"({"method":"a.b.C","parameters":[]})", "'parameters' is not an object"},
                      Malformed{R"({"method":"a.b.C","parameters":"x"})", "'parameters' is not an object"},
                      Malformed{R"({"method":"a.b.C","more":1})", "'more' is not a boolean"},
                      Malformed{R"({"method":"a.b.C","oneway":"yes"})", "'oneway' is not a boolean"},
                      Malformed{R"({"method":"a.b.C","more":true,"oneway":true})", "exclude"},
                      Malformed{R"({"method":"a.b.C","upgrade":true})", "upgrade"}));

TEST(VarlinkCodec, MalformedReplies)
{
    EXPECT_FALSE(decodeReply("nope"));
    EXPECT_FALSE(decodeReply("[]"));
    EXPECT_FALSE(decodeReply(R"({"parameters":1})"));
    EXPECT_FALSE(decodeReply(R"({"continues":"yes"})"));
    EXPECT_FALSE(decodeReply(R"({"error":5})"));
    EXPECT_FALSE(decodeReply(R"({"error":""})"));
}

TEST(VarlinkCodec, InterfaceOfMethod)
{
    EXPECT_EQ(interfaceOf("io.fdsup.Manager.Status"), "io.fdsup.Manager");
    EXPECT_EQ(interfaceOf("Status"), "");
    EXPECT_EQ(interfaceOf(".Status"), "");
    EXPECT_EQ(interfaceOf("io.fdsup."), "");
}

TEST(VarlinkFrameReader, ReassemblesAMessageSplitIntoSingleBytes)
{
    FrameReader reader(1024);
    const std::string wire = encodeCall(Call{"io.fdsup.Manager.Status", {{"service", "web"}}, false, false});
    std::string out;
    for (std::size_t i = 0; i + 1 < wire.size(); ++i) {
        reader.append(wire.substr(i, 1));
        ASSERT_EQ(reader.next(out), 0) << "at byte " << i;
    }
    reader.append(wire.substr(wire.size() - 1));
    ASSERT_EQ(reader.next(out), 1);
    EXPECT_EQ(out, wire.substr(0, wire.size() - 1));
    EXPECT_EQ(reader.next(out), 0);
    EXPECT_EQ(reader.pending(), 0U);
}

TEST(VarlinkFrameReader, SplitsSeveralMessagesInOneAppend)
{
    FrameReader reader(1024);
    reader.append("{\"a\":1}\0{\"b\":2}\0{\"c\""sv);
    std::string out;
    ASSERT_EQ(reader.next(out), 1);
    EXPECT_EQ(out, "{\"a\":1}");
    ASSERT_EQ(reader.next(out), 1);
    EXPECT_EQ(out, "{\"b\":2}");
    EXPECT_EQ(reader.next(out), 0);
    EXPECT_EQ(reader.pending(), 4U);
    reader.append(":3}\0"sv);
    ASSERT_EQ(reader.next(out), 1);
    EXPECT_EQ(out, "{\"c\":3}");
}

TEST(VarlinkFrameReader, ManyPipelinedMessagesStayInOrder)
{
    FrameReader reader(64);
    std::string stream;
    for (int i = 0; i < 1000; ++i) {
        stream += std::to_string(i);
        stream.push_back('\0');
    }
    std::string out;
    int expected = 0;
    // Odd-sized chunks so messages straddle every boundary.
    for (std::size_t pos = 0; pos < stream.size(); pos += 7) {
        reader.append(std::string_view(stream).substr(pos, 7));
        while (reader.next(out) == 1) {
            ASSERT_EQ(out, std::to_string(expected));
            ++expected;
        }
    }
    EXPECT_EQ(expected, 1000);
}

TEST(VarlinkFrameReader, ExactlyTheLimitIsAccepted)
{
    FrameReader reader(8);
    reader.append(std::string("12345678\0", 9));
    std::string out;
    ASSERT_EQ(reader.next(out), 1);
    EXPECT_EQ(out, "12345678");
}

TEST(VarlinkFrameReader, OverTheLimitWithoutNulIsRefused)
{
    FrameReader reader(8);
    reader.append("12345678");
    std::string out;
    EXPECT_EQ(reader.next(out), 0);
    reader.append("9");
    EXPECT_EQ(reader.next(out), -EMSGSIZE);
    // The stream stays unusable: later data cannot resynchronise it.
    reader.append(std::string("\0{}\0", 4));
    EXPECT_EQ(reader.next(out), -EMSGSIZE);
}

TEST(VarlinkFrameReader, OverTheLimitWithNulIsRefused)
{
    FrameReader reader(4);
    reader.append(std::string("ok\0toolong\0", 11));
    std::string out;
    ASSERT_EQ(reader.next(out), 1);
    EXPECT_EQ(out, "ok");
    EXPECT_EQ(reader.next(out), -EMSGSIZE);
}

// A listening socket in a temporary directory, served by plain system calls.
class VarlinkClient : public ::testing::Test {
protected:
    void SetUp() override
    {
        path_ = (dir_ / "s.sock").string();
        listener_ = UniqueFd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        ASSERT_TRUE(listener_);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        path_.copy(sa.sun_path, path_.size());
        ASSERT_EQ(bind(listener_.get(), reinterpret_cast<sockaddr *>(&sa), sizeof(sa)), 0);
        ASSERT_EQ(listen(listener_.get(), 8), 0);
    }
    UniqueFd acceptOne() const { return UniqueFd(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC)); }
    static std::string readMessage(BorrowedFd fd)
    {
        std::string message;
        char c = 0;
        while (read(fd.get(), &c, 1) == 1 && c != '\0') {
            message.push_back(c);
        }
        return message;
    }

    test::TempDir dir_;
    std::string path_;
    UniqueFd listener_;
};

TEST_F(VarlinkClient, NoSocketFileIsENOENT)
{
    auto c = Client::connect((dir_ / "missing.sock").string(), std::chrono::seconds(5));
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, ENOENT);
}

TEST_F(VarlinkClient, NobodyListeningIsECONNREFUSED)
{
    listener_.reset(); // the file stays, the listener is gone
    auto c = Client::connect(path_, std::chrono::seconds(5));
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, ECONNREFUSED);
}

TEST_F(VarlinkClient, CallsAndReadsRepliesSentInPieces)
{
    std::thread server([this] {
        const UniqueFd fd = acceptOne();
        const auto call = decodeCall(readMessage(fd.borrow()));
        EXPECT_TRUE(call);
        EXPECT_EQ(call->method, "io.fdsup.Manager.Status");
        EXPECT_TRUE(call->more);
        const std::string replies =
            encodeReply(Reply{{{"n", 1}}, true, {}}) + encodeReply(Reply{{{"n", 2}}, false, {}});
        // One byte at a time: the client must reassemble.
        for (const char c : replies) {
            ASSERT_EQ(write(fd.get(), &c, 1), 1);
        }
    });
    auto c = Client::connect(path_, std::chrono::seconds(10));
    ASSERT_TRUE(c) << c.error().message;
    auto first = c->call(Call{"io.fdsup.Manager.Status", nlohmann::json::object(), true, false});
    ASSERT_TRUE(first) << first.error().message;
    EXPECT_TRUE(first->continues);
    EXPECT_EQ(first->parameters.at("n"), 1);
    auto second = c->next();
    ASSERT_TRUE(second) << second.error().message;
    EXPECT_FALSE(second->continues);
    EXPECT_EQ(second->parameters.at("n"), 2);
    server.join();
    auto third = c->next();
    ASSERT_FALSE(third);
    EXPECT_EQ(third.error().code, ECONNRESET);
}

TEST_F(VarlinkClient, NoReplyTimesOut)
{
    auto c = Client::connect(path_, std::chrono::milliseconds(50));
    ASSERT_TRUE(c) << c.error().message;
    // Accepted by the kernel (backlog) but never answered.
    auto r = c->call(Call{"io.fdsup.Manager.Status", nlohmann::json::object(), false, false});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ETIMEDOUT);
}

TEST_F(VarlinkClient, InvalidReplyIsEBADMSG)
{
    std::thread server([this] {
        const UniqueFd fd = acceptOne();
        readMessage(fd.borrow());
        ASSERT_EQ(write(fd.get(), "[]\0", 3), 3);
    });
    auto c = Client::connect(path_, std::chrono::seconds(10));
    ASSERT_TRUE(c);
    auto r = c->call(Call{"io.fdsup.Manager.Status", nlohmann::json::object(), false, false});
    server.join();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EBADMSG);
}

TEST(VarlinkIdl, DocsQuoteTheInterfaceVerbatim)
{
    const auto doc = test::readFile(test::dataDir() / ".." / ".." / "docs" / "control-api.md");
    EXPECT_THAT(doc, HasSubstr(std::string(managerInterfaceDescription())));
}

} // namespace
} // namespace fdsup::varlink
