#include "examples.hpp"

#include <stdexcept>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "core/fd.hpp"
#include "test_support.hpp"

namespace fdsup::test {

namespace fs = std::filesystem;

int freePort()
{
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (!fd || bind(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 ||
        getsockname(fd.get(), reinterpret_cast<sockaddr *>(&addr), &len) != 0) {
        throw std::runtime_error("cannot find a free port");
    }
    return ntohs(addr.sin_port);
}

void replaceAll(std::string &text, std::string_view from, std::string_view to)
{
    for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
        text.replace(at, from.size(), to);
    }
}

std::string prepareExample(const fs::path &dir, const std::string &name, int port,
                           const std::vector<std::pair<std::string, std::string>> &extra)
{
    const fs::path examples = fs::path(requireEnv("FDSUP_UNITS_DIR")) / "examples";
    fs::create_directories(dir / "run");
    if (fs::exists(examples / name)) {
        fs::copy(examples / name, dir / name, fs::copy_options::recursive);
    }
    fs::copy_file(examples / (name + ".toml"), dir / (name + ".toml"));
    const auto rewrite = [&](const fs::path &file) {
        std::string text = readFile(file);
        replaceAll(text, kInstalledDir, dir.string());
        replaceAll(text, kRunDir, (dir / "run").string());
        replaceAll(text, kExamplePort, std::to_string(port));
        for (const auto &[from, to] : extra) {
            replaceAll(text, from, to);
        }
        writeFile(file, text);
    };
    for (const auto &entry : fs::recursive_directory_iterator(dir)) {
        if (entry.is_regular_file()) {
            rewrite(entry.path());
        }
    }
    return readFile(dir / (name + ".toml"));
}

} // namespace fdsup::test
