// The process side of a re-exec: this image's identity, the sealed state, the exec, and the fallback.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "core/fd.hpp"

namespace fdsup {

// Environment variables between the two images (docs/reexec.md).
inline constexpr const char *kReexecStateEnv = "FDSUP_REEXEC_STATE";
inline constexpr const char *kReexecFallbackEnv = "FDSUP_REEXEC_FALLBACK";
inline constexpr const char *kReexecRejectedEnv = "FDSUP_REEXEC_REJECTED";

// This process's image: how it was started (argv, kept for the next exec),
// the binary path it was first started from (the default target of a
// re-exec), the binary it runs (opened from /proc/self/exe at start, so it
// can be re-entered even once the file is replaced) and how many re-execs
// this process has done. One per process, set up by main().
class ReexecImage {
public:
    static void init(int argc, char **argv);
    static ReexecImage &get();

    [[nodiscard]] const std::vector<std::string> &argv() const { return argv_; }
    [[nodiscard]] const std::string &startedFrom() const { return startedFrom_; }
    [[nodiscard]] BorrowedFd self() const { return self_.borrow(); }
    [[nodiscard]] unsigned reexecs() const { return reexecs_; }
    // After a restore: what the state says.
    void restored(std::string startedFrom, unsigned reexecs);
    // Opens /proc/self/exe (again, after a restore closed every other fd).
    void openSelf();

private:
    std::vector<std::string> argv_;
    std::string startedFrom_;
    UniqueFd self_;
    unsigned reexecs_ = 0;
};

// A memfd named "fdsup-state" holding text, sealed against every change.
Result<UniqueFd> sealState(const std::string &text);

// Replaces this process image with `binary`, passing the descriptors in
// `fds` (their CLOEXEC cleared at the last moment), the state and this
// image's binary as the fallback. Returns only on failure, with every
// descriptor's CLOEXEC put back.
Error execInPlace(BorrowedFd binary, const std::vector<int> &fds, BorrowedFd state);

// In the new image, first thing: the state handed over (FDSUP_REEXEC_*
// are read and unset). Nothing when fdsupd was started normally.
struct IncomingState {
    UniqueFd state;                      // what FDSUP_REEXEC_STATE names
    int originalState = -1;              // the state fd the old image wrote (the fallback's)
    UniqueFd fallback;                   // the old image's binary, to re-enter
    std::optional<std::string> rejected; // we are the old image, re-entered: why
    std::string text;                    // the state's contents
    std::string unreadable;              // why the state could not be read ("" when it was)
};
std::optional<IncomingState> takeIncomingState();

// The new image could not take the state: re-enter the old binary with the
// state it wrote and the reason. Returns only if that exec failed.
Error fallBack(IncomingState &incoming, const std::string &reason);

// Closes every descriptor above 2 that is not in `keep`: what the exec
// carried but the state does not name (a wrapper's copies, the binary).
void closeOtherFds(const std::vector<int> &keep);

} // namespace fdsup
