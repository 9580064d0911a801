// Output capture: a worker's stdout and stderr read as lines, and the recent lines a service printed.
#include "model/output.hpp"

#include <algorithm>
#include <array>
#include <cerrno>

#include <sys/epoll.h>
#include <unistd.h>

namespace fdsup {
namespace {

// Reads per wake-up, so one chatty worker cannot starve the loop.
constexpr int kReadsPerWakeup = 16;
// Wake-ups' worth of reads when draining a worker that exited: enough for
// every pipe buffer, bounded so a writer that lives on (a daemonised child
// keeping the pipe) cannot hold fdsupd.
constexpr int kDrainRounds = 64;

} // namespace

OutputCapture::OutputCapture(EventLoop &loop, LineHandler onLine) : loop_(loop), onLine_(std::move(onLine))
{}

void OutputCapture::watch(UniqueFd stdoutPipe, UniqueFd stderrPipe)
{
    out_.fd = std::move(stdoutPipe);
    err_.fd = std::move(stderrPipe);
    for (const bool isStderr : {false, true}) {
        Stream &stream = isStderr ? err_ : out_;
        if (!stream.fd) {
            continue;
        }
        if (auto s = loop_.addIo(stream.fd.borrow(), EPOLLIN,
                                 [this, &stream, isStderr](std::uint32_t) { read(stream, isStderr); })) {
            stream.source = std::move(*s);
        }
    }
}

void OutputCapture::read(Stream &stream, bool isStderr)
{
    std::array<char, 16384> buffer{};
    const auto emit = [&](std::string_view line) {
        onLine_(isStderr, line);
    };
    for (int round = 0; round < kReadsPerWakeup; ++round) {
        const ssize_t n = ::read(stream.fd.get(), buffer.data(), buffer.size());
        if (n > 0) {
            stream.lines.feed(std::string_view(buffer.data(), static_cast<std::size_t>(n)), emit);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        // EOF or an error: the worker closed its end.
        stream.lines.flush(emit);
        stream.source.reset();
        stream.fd.reset();
        return;
    }
}

void OutputCapture::drain()
{
    for (const bool isStderr : {false, true}) {
        Stream &stream = isStderr ? err_ : out_;
        for (int round = 0; stream.fd && round < kDrainRounds; ++round) {
            read(stream, isStderr);
        }
        stream.lines.flush([&](std::string_view line) { onLine_(isStderr, line); });
    }
}

const LogEntry &OutputLog::add(LogEntry entry)
{
    lines_.push_back(std::move(entry));
    if (lines_.size() > kMaxLines) {
        lines_.pop_front();
    }
    return lines_.back();
}

std::vector<std::string> OutputLog::lastLinesOf(pid_t pid, std::size_t count) const
{
    std::vector<std::string> out;
    for (auto it = lines_.rbegin(); it != lines_.rend() && out.size() < count; ++it) {
        if (it->pid == pid) {
            out.push_back(it->text);
        }
    }
    std::reverse(out.begin(), out.end());
    return out;
}

} // namespace fdsup
