// Helpers shared by the tests: fd accounting, temporary directories, files.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include <sys/stat.h>

#include "fdsup/fd.hpp"

namespace fdsup::test {

// Number of entries in /proc/self/fd (the directory fd used to read it is
// not counted). Compare before and after to prove a test leaks nothing.
int countOpenFds();

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;

    [[nodiscard]] const std::filesystem::path &path() const { return path_; }
    [[nodiscard]] std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

void writeFile(const std::filesystem::path &path, std::string_view contents);
std::string readFile(const std::filesystem::path &path);

// fstat() identity of a descriptor, to prove two fds are the same file.
struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    friend bool operator==(const FileId &, const FileId &) = default;
};
FileId fileId(BorrowedFd fd);

// The directory of test data (tests/data), from $FDSUP_TEST_DATA.
std::filesystem::path dataDir();

} // namespace fdsup::test
