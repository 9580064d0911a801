// fdsupctl's terminal text: aligned tables, colours, and durations and times as people read them.
#include "table.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <ctime>
#include <optional>

#include <unistd.h>

namespace fdsup::ctl {
namespace {

// Characters as a terminal counts them, near enough: UTF-8 continuation
// bytes take no column.
std::size_t displayWidth(std::string_view text)
{
    return static_cast<std::size_t>(std::count_if(
        text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0U) != 0x80U; }));
}

std::string_view colourCode(Colour colour)
{
    switch (colour) {
    case Colour::None:
        return "";
    case Colour::Green:
        return "\033[32m";
    case Colour::Yellow:
        return "\033[33m";
    case Colour::Red:
        return "\033[31m";
    case Colour::Dim:
        return "\033[2m";
    }
    return "";
}

// A CLOCK_REALTIME timestamp in local time, to the second; "-" when out of range.
std::string localTime(std::uint64_t usec, bool withDate)
{
    const auto seconds = static_cast<std::time_t>(usec / 1000000);
    std::tm local{};
    if (localtime_r(&seconds, &local) == nullptr) {
        return "-";
    }
    std::array<char, 64> buffer{};
    const std::size_t n =
        std::strftime(buffer.data(), buffer.size(), withDate ? "%Y-%m-%d %H:%M:%S" : "%H:%M:%S", &local);
    return n == 0 ? "-" : std::string(buffer.data(), n);
}

} // namespace

std::string zeroPadded(std::uint64_t v, std::size_t width)
{
    std::string s = std::to_string(v);
    if (s.size() < width) {
        s.insert(0, width - s.size(), '0');
    }
    return s;
}

std::string painted(const std::string &text, Colour colour, bool useColour)
{
    if (!useColour || colour == Colour::None) {
        return text;
    }
    return std::string(colourCode(colour)) + text + "\033[0m";
}

Table::Table(std::vector<std::string> header, std::string indent)
    : header_(std::move(header)), indent_(std::move(indent))
{}

void Table::addRow(std::vector<Cell> row)
{
    row.resize(header_.size());
    rows_.push_back(std::move(row));
}

std::vector<std::size_t> Table::widths() const
{
    std::vector<std::size_t> w(header_.size());
    for (std::size_t i = 0; i < header_.size(); ++i) {
        w[i] = displayWidth(header_[i]);
    }
    for (const auto &row : rows_) {
        for (std::size_t i = 0; i < row.size(); ++i) {
            w[i] = std::max(w[i], displayWidth(row[i].text));
        }
    }
    return w;
}

std::string Table::renderLine(const std::vector<Cell> &cells, bool colour) const
{
    const auto w = widths();
    std::string line = indent_;
    for (std::size_t i = 0; i < cells.size(); ++i) {
        const Cell &cell = cells[i];
        const bool paint = colour && cell.colour != Colour::None;
        if (paint) {
            line += colourCode(cell.colour);
        }
        line += cell.text;
        if (paint) {
            line += "\033[0m";
        }
        if (i + 1 < cells.size()) {
            line.append(w[i] - displayWidth(cell.text) + 2, ' ');
        }
    }
    // A last column that is empty would leave the padding of the one before.
    line.erase(line.find_last_not_of(' ') + 1);
    line.push_back('\n');
    return line;
}

std::string Table::renderHeader() const
{
    std::vector<Cell> cells;
    cells.reserve(header_.size());
    for (const auto &h : header_) {
        cells.push_back({h});
    }
    return renderLine(cells, false);
}

std::string Table::renderRow(std::size_t index, bool colour) const
{
    return renderLine(rows_.at(index), colour);
}

std::string Table::render(bool colour) const
{
    std::string out = renderHeader();
    for (std::size_t i = 0; i < rows_.size(); ++i) {
        out += renderRow(i, colour);
    }
    return out;
}

bool useColour()
{
    const char *noColour = std::getenv("NO_COLOR");
    if (noColour != nullptr && *noColour != '\0') {
        return false;
    }
    const char *term = std::getenv("TERM");
    if (term != nullptr && std::string_view(term) == "dumb") {
        return false;
    }
    return isatty(STDOUT_FILENO) == 1;
}

std::string printable(std::string_view text)
{
    std::string out(text);
    for (char &c : out) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
            c = '?';
        }
    }
    return out;
}

std::string formatUptime(std::uint64_t usec)
{
    const std::uint64_t s = usec / 1000000;
    const auto two = [](std::uint64_t v) {
        return (v < 10 ? "0" : "") + std::to_string(v);
    };
    if (s < 60) {
        return std::to_string(s) + "s";
    }
    if (s < 3600) {
        return std::to_string(s / 60) + "m" + two(s % 60) + "s";
    }
    if (s < 86400) {
        return std::to_string(s / 3600) + "h" + two(s / 60 % 60) + "m";
    }
    return std::to_string(s / 86400) + "d" + two(s / 3600 % 24) + "h";
}

std::string formatElapsed(std::uint64_t usec)
{
    if (usec >= 60000000) {
        return formatUptime(usec);
    }
    const std::uint64_t tenths = usec / 100000;
    return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + "s";
}

std::string formatClock(std::uint64_t usec)
{
    const std::string seconds = localTime(usec, false);
    return seconds == "-" ? seconds : seconds + "." + zeroPadded(usec / 1000 % 1000, 3);
}

std::string formatDateTime(std::uint64_t usec)
{
    return localTime(usec, true);
}

} // namespace fdsup::ctl
