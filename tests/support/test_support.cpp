// Helpers shared by the tests: fd accounting, temporary directories, files.
#include "test_support.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

namespace fdsup::test {

int countOpenFds()
{
    DIR *dir = opendir("/proc/self/fd");
    if (dir == nullptr) {
        throw std::system_error(errno, std::generic_category(), "opendir /proc/self/fd");
    }
    int count = 0;
    while (const dirent *entry = readdir(dir)) {
        if (entry->d_name[0] != '.') {
            ++count;
        }
    }
    closedir(dir);
    return count - 1; // the DIR's own descriptor
}

TempDir::TempDir()
{
    const char *base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/fdsup-test-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
        throw std::system_error(errno, std::generic_category(), "mkdtemp");
    }
    path_ = pattern;
}

TempDir::~TempDir()
{
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

void writeFile(const std::filesystem::path &path, std::string_view contents)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) {
        throw std::runtime_error("cannot write " + path.string());
    }
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
}

std::string readFile(const std::filesystem::path &path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw std::runtime_error("cannot read " + path.string());
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

FileId fileId(BorrowedFd fd)
{
    struct stat st {};
    if (fstat(fd.get(), &st) != 0) {
        throw std::system_error(errno, std::generic_category(), "fstat");
    }
    return FileId{st.st_dev, st.st_ino};
}

std::filesystem::path dataDir()
{
    const char *dir = std::getenv("FDSUP_TEST_DATA");
    if (dir == nullptr) {
        throw std::runtime_error("FDSUP_TEST_DATA is not set; run the tests through meson test");
    }
    return dir;
}

} // namespace fdsup::test
