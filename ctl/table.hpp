// fdsupctl's human output: aligned text tables built from the control API's JSON replies.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace fdsup::ctl {

// ANSI colours for a cell; None prints plain text.
enum class Colour : std::uint8_t { None, Green, Yellow, Red, Dim };

struct Cell {
    std::string text;
    Colour colour = Colour::None;
};

// Columns separated by two spaces, each as wide as its widest cell (in
// characters, not bytes), the last one unpadded so lines carry no trailing
// blanks. Colour codes are added after the padding is computed, so coloured
// and plain output line up the same.
class Table {
public:
    explicit Table(std::vector<std::string> header, std::string indent = {});
    void addRow(std::vector<Cell> row);
    [[nodiscard]] std::size_t rows() const { return rows_.size(); }
    // Each ends in a newline. Rows may be printed in groups, interleaved with
    // other output, and still line up with every row of the table.
    [[nodiscard]] std::string renderHeader() const;
    [[nodiscard]] std::string renderRow(std::size_t index, bool colour) const;
    [[nodiscard]] std::string render(bool colour) const;

private:
    [[nodiscard]] std::vector<std::size_t> widths() const;
    [[nodiscard]] std::string renderLine(const std::vector<Cell> &cells, bool colour) const;

    std::vector<std::string> header_;
    std::vector<std::vector<Cell>> rows_;
    std::string indent_;
};

// True when stdout is a terminal, NO_COLOR is unset or empty
// (https://no-color.org) and TERM is not "dumb".
bool useColour();

// Terminal-safe text: control characters (which a worker's STATUS= could use
// to rewrite the user's terminal) become '?'.
std::string printable(std::string_view text);

// "42s", "5m12s", "3h04m", "2d05h": precise where it matters, short always.
std::string formatUptime(std::uint64_t usec);

// "0.4s", "2.1s", "59.9s", then as formatUptime: how long an operation took.
std::string formatElapsed(std::uint64_t usec);

// A CLOCK_REALTIME timestamp in microseconds as local time:
// "12:00:01.234" (formatClock) or "2026-03-01 12:00:01" (formatDateTime).
std::string formatClock(std::uint64_t usec);
std::string formatDateTime(std::uint64_t usec);

// The output of fdsupctl's commands, from the parameters of the
// io.fdsup.Manager replies (and error replies) named. Missing or mistyped
// members print as "-": output never fails on a reply shape. Each returns
// whole lines, ending in a newline.

// Status, Sockets: `fdsupctl status`, `fdsupctl sockets`. A service with a
// rollout in progress gets a line saying how far it is.
std::string formatStatus(const nlohmann::json &reply, bool colour);
std::string formatSockets(const nlohmann::json &reply, bool colour);
// Connections: per service, the counters, the instances on the channel and
// the connections held (oldest first).
std::string formatConnections(const nlohmann::json &reply, bool colour);

// RolloutStatus: the rollout (state, generations, timing, failure and a
// table of its steps) and the restarts queued behind it.
std::string formatRolloutStatus(const nlohmann::json &reply, std::string_view service, bool colour);
// Restart: one progress event (a reply with continues) elapsedUsec after
// the call: "[ 1.23s] web[0]: ...". Empty when the reply carries no event.
std::string formatRolloutEvent(std::uint64_t elapsedUsec, const nlohmann::json &reply);
// Restart: the final reply without wait ("web: rollout 7 started
// (generation 2 → 3)") and with it ("web: rolled out to generation 3 in
// 2.1s (4 instances)").
std::string formatRolloutStarted(const nlohmann::json &reply);
std::string formatRolloutDone(const nlohmann::json &reply);
// RolloutCancel: "web: rollout 7 cancelled, rolled back to generation 2".
std::string formatRolloutCancelled(const nlohmann::json &reply);
// The RolloutFailed error: why, which replacement failed with its last
// output lines, and which generation keeps serving. For stderr.
std::string formatRolloutFailed(const nlohmann::json &error);
// Scale: "web: 4 instances, running".
std::string formatScaled(const nlohmann::json &reply);
// Reload (and the ReloadFailed error): a table of the changes, or
// "no changes".
std::string formatChanges(const nlohmann::json &reply, bool colour);
// The ReloadRefused error: every reason, then "nothing changed". For stderr.
std::string formatReloadRefused(const nlohmann::json &error);
// The ConfigInvalid error: "file:line:column: message" each, then a count.
// For stderr.
std::string formatConfigErrors(const nlohmann::json &error);
// Logs: "12:00:01.234 web[0] 1234: text" a line; lines the worker wrote to
// stderr are marked "(stderr)".
std::string formatLogLines(const nlohmann::json &reply, std::string_view service, bool colour);

} // namespace fdsup::ctl
