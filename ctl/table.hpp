// fdsupctl's terminal text: aligned tables, colours, and durations and times as people read them
// (the output of each command: replies.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

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
// `text` in `colour` when `useColour`, else as it is.
std::string painted(const std::string &text, Colour colour, bool useColour);
// v with leading zeros to width digits.
std::string zeroPadded(std::uint64_t v, std::size_t width);

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

} // namespace fdsup::ctl
