// fdsupctl's human output: aligned text tables built from the control API's JSON replies.
#include "table.hpp"

#include <algorithm>
#include <cstdlib>

#include <unistd.h>

namespace fdsup::ctl {
namespace {

using Json = nlohmann::json;

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

// Accessors that never throw: a daemon newer or older than this fdsupctl
// may add or omit members.
std::string text(const Json &j, const char *key)
{
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        return "-";
    }
    if (it->is_string()) {
        const std::string s = printable(it->get_ref<const std::string &>());
        return s.empty() ? "-" : s;
    }
    return printable(it->dump());
}

const Json *member(const Json &j, const char *key)
{
    if (!j.is_object()) {
        return nullptr;
    }
    const auto it = j.find(key);
    return it == j.end() ? nullptr : &*it;
}

const Json &arrayOf(const Json &j, const char *key)
{
    static const Json empty = Json::array();
    const Json *m = member(j, key);
    return m != nullptr && m->is_array() ? *m : empty;
}

std::string optionalText(const Json &j, const char *key)
{
    const Json *m = member(j, key);
    return m != nullptr && m->is_string() ? printable(m->get_ref<const std::string &>()) : std::string();
}

// One palette for service and instance states: running/ready are good,
// transitions are in progress, failed is bad, the rest is quiet.
Colour stateColour(std::string_view state)
{
    if (state == "running" || state == "ready") {
        return Colour::Green;
    }
    if (state == "starting" || state == "stopping") {
        return Colour::Yellow;
    }
    if (state == "failed") {
        return Colour::Red;
    }
    return Colour::Dim;
}

// An instance that is not running has no uptime and no pid worth showing;
// its last exit or error says more than its last STATUS=.
std::vector<Cell> instanceRow(const Json &instance)
{
    const std::string state = text(instance, "state");
    const bool running = state == "starting" || state == "ready" || state == "stopping";
    std::string pid = "-";
    if (const Json *p = member(instance, "pid");
        running && p != nullptr && p->is_number_integer() && p->get<std::int64_t>() > 0) {
        pid = std::to_string(p->get<std::int64_t>());
    }
    std::string uptime = "-";
    if (const Json *u = member(instance, "uptime_usec"); running && u != nullptr && u->is_number_unsigned()) {
        uptime = formatUptime(u->get<std::uint64_t>());
    }
    std::string status = optionalText(instance, "status");
    if (!running) {
        std::string why = optionalText(instance, "last_error");
        if (why.empty()) {
            why = optionalText(instance, "last_exit");
        }
        if (!why.empty()) {
            status = why;
        }
    }
    return {{text(instance, "index")},      {pid},    {state, stateColour(state)},
            {text(instance, "generation")}, {uptime}, {status.empty() ? "-" : status}};
}

} // namespace

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

std::string formatStatus(const Json &reply, bool colour)
{
    const Json &services = arrayOf(reply, "services");
    const bool anyReason = std::any_of(services.begin(), services.end(), [](const Json &s) {
        return !optionalText(s, "failed_reason").empty();
    });
    std::vector<std::string> header = {"SERVICE", "STATE", "READY/WANTED", "RESTARTS"};
    if (anyReason) {
        header.emplace_back("REASON");
    }
    Table table(header);
    // One table for every instance, so the blocks under each service line up.
    Table instances({"INSTANCE", "PID", "STATE", "GEN", "UPTIME", "STATUS"}, "  ");
    std::vector<std::size_t> firstInstance;
    for (const Json &service : services) {
        const std::string state = text(service, "state");
        std::vector<Cell> row = {{text(service, "name")},
                                 {state, stateColour(state)},
                                 {text(service, "ready") + "/" + text(service, "wanted")},
                                 {text(service, "restarts")}};
        if (anyReason) {
            row.push_back({optionalText(service, "failed_reason")});
        }
        table.addRow(std::move(row));
        firstInstance.push_back(instances.rows());
        for (const Json &instance : arrayOf(service, "instances")) {
            instances.addRow(instanceRow(instance));
        }
    }
    firstInstance.push_back(instances.rows());

    std::string out = table.renderHeader();
    for (std::size_t i = 0; i < table.rows(); ++i) {
        out += table.renderRow(i, colour);
        if (firstInstance[i] < firstInstance[i + 1]) {
            out += instances.renderHeader();
        }
        for (std::size_t k = firstInstance[i]; k < firstInstance[i + 1]; ++k) {
            out += instances.renderRow(k, colour);
        }
    }
    return out;
}

std::string formatSockets(const Json &reply, bool colour)
{
    Table table({"SOCKET", "ADDRESS", "FD", "ORIGIN", "SERVICES"});
    for (const Json &socket : arrayOf(reply, "sockets")) {
        std::string services;
        for (const Json &s : arrayOf(socket, "services")) {
            services +=
                (services.empty() ? "" : ",") + (s.is_string() ? printable(s.get<std::string>()) : "?");
        }
        if (services.empty()) {
            services = "-";
        }
        const std::string name = text(socket, "name");
        const Json &bound = arrayOf(socket, "bound");
        if (bound.empty()) {
            // Configured but not bound (yet): show what it will listen on.
            const Json &listens = arrayOf(socket, "listen");
            if (listens.empty()) {
                table.addRow({{name}, {"-"}, {"-"}, {"-", Colour::Dim}, {services}});
            }
            for (const Json &listen : listens) {
                table.addRow({{name},
                              {listen.is_string() ? printable(listen.get<std::string>()) : "-"},
                              {"-"},
                              {"-", Colour::Dim},
                              {services}});
            }
            continue;
        }
        for (const Json &b : bound) {
            const std::string origin = text(b, "origin");
            table.addRow({{name},
                          {text(b, "address")},
                          {text(b, "fd")},
                          {origin, origin == "adopted" ? Colour::Yellow : Colour::None},
                          {services}});
        }
    }
    return table.render(colour);
}

} // namespace fdsup::ctl
