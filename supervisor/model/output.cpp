// Output capture: a worker's stdout and stderr read as lines, and the recent lines a service printed.
#include "model/output.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

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

OutputLog::OutputLog(std::size_t maxLines, std::size_t maxBytes)
    : maxLines_(std::max<std::size_t>(maxLines, 1)), maxBytes_(std::max<std::size_t>(maxBytes, 1))
{}

LogLine OutputLog::add(const LogLine &line)
{
    const std::string_view text = line.text.substr(0, maxBytes_);
    if (count_ == maxLines_) {
        forgetOldest();
    }
    const std::size_t at = place(text.size());
    if (count_ == slots_.size()) {
        growSlots();
    }
    if (!text.empty()) {
        std::memcpy(bytes_.get() + at, text.data(), text.size());
    }
    head_ = at + text.size();
    used_ += text.size();
    Slot &slot = slots_[(first_ + count_) % slots_.size()];
    slot = Slot{line.realtimeUsec,
                static_cast<std::uint32_t>(at),
                static_cast<std::uint32_t>(text.size()),
                line.pid,
                line.index,
                line.generation,
                line.isStderr};
    ++count_;
    return view(slot);
}

LogLine OutputLog::at(std::size_t i) const
{
    return view(slot(i));
}

LogLine OutputLog::view(const Slot &s) const
{
    const std::string_view text =
        s.length == 0 ? std::string_view() : std::string_view(bytes_.get() + s.offset, s.length);
    return LogLine{s.realtimeUsec, s.index, s.pid, s.generation, s.isStderr, text};
}

std::vector<LogEntry> OutputLog::entries() const
{
    std::vector<LogEntry> out;
    out.reserve(count_);
    for (std::size_t i = 0; i < count_; ++i) {
        out.push_back(at(i).entry());
    }
    return out;
}

std::vector<std::string> OutputLog::lastLinesOf(pid_t pid, std::size_t count) const
{
    std::vector<std::string> out;
    for (std::size_t i = count_; i > 0 && out.size() < count; --i) {
        if (const Slot &s = slot(i - 1); s.pid == pid) {
            out.emplace_back(view(s).text);
        }
    }
    std::reverse(out.begin(), out.end());
    return out;
}

std::size_t OutputLog::place(std::size_t n)
{
    if (capacity_ < maxBytes_ && !roomFor(n)) {
        growBytes(n);
    }
    for (;;) {
        if (const auto at = freeRun(n)) {
            return *at;
        }
        if (capacity_ < maxBytes_) {
            growBytes(n);
        } else {
            forgetOldest();
        }
    }
}

// The kept text is one run from the oldest non-empty line to head_, wrapped
// past the end when head_ is at or before it: the space after head_ (and,
// unwrapped, before the oldest line) is free.
std::optional<std::size_t> OutputLog::freeRun(std::size_t n) const
{
    std::size_t i = 0;
    while (i < count_ && slot(i).length == 0) {
        ++i;
    }
    if (i == count_) {
        return n <= capacity_ ? std::optional<std::size_t>(0) : std::nullopt;
    }
    const std::size_t tail = slot(i).offset;
    if (head_ > tail) {
        if (n <= capacity_ - head_) {
            return head_;
        }
        return n <= tail ? std::optional<std::size_t>(0) : std::nullopt;
    }
    return n <= tail - head_ ? std::optional<std::size_t>(head_) : std::nullopt;
}

// The buffer grows while the kept text would fill more than 3/4 of it, not
// when one line does not fit at the end: its size then follows the kept
// bytes (a sum over up to kMaxLines lines, which varies little once the log
// is full), not where a line happens to wrap, so it reaches its working size
// while the log fills and stays there (a line that still finds no free run
// makes it grow, or at the bound forgets the oldest lines).
bool OutputLog::roomFor(std::size_t n, std::size_t capacity) const
{
    return (used_ + n) * 4 <= capacity * 3;
}

// Doubles the buffer (from 4 KiB, up to maxBytes_) until the kept text and
// `needed` more bytes have room, and moves the kept text to its start.
void OutputLog::growBytes(std::size_t needed)
{
    std::size_t capacity = std::max<std::size_t>(capacity_ * 2, 4096);
    while (capacity < maxBytes_ && !roomFor(needed, capacity)) {
        capacity *= 2;
    }
    capacity = std::min(capacity, maxBytes_);
    auto bytes = std::make_unique_for_overwrite<char[]>(capacity); // NOLINT(cppcoreguidelines-avoid-c-arrays)
    std::size_t at = 0;
    for (std::size_t i = 0; i < count_; ++i) {
        Slot &s = slots_[(first_ + i) % slots_.size()];
        if (s.length != 0) {
            std::memcpy(bytes.get() + at, bytes_.get() + s.offset, s.length);
        }
        s.offset = static_cast<std::uint32_t>(at);
        at += s.length;
    }
    bytes_ = std::move(bytes);
    capacity_ = capacity;
    head_ = at;
}

void OutputLog::growSlots()
{
    std::vector<Slot> slots(std::min(maxLines_, std::max<std::size_t>(slots_.size() * 2, 16)));
    for (std::size_t i = 0; i < count_; ++i) {
        slots[i] = slot(i);
    }
    slots_ = std::move(slots);
    first_ = 0;
}

void OutputLog::forgetOldest()
{
    used_ -= slots_[first_].length;
    first_ = (first_ + 1) % slots_.size();
    if (--count_ == 0) {
        first_ = 0;
        head_ = 0;
    }
}

} // namespace fdsup
