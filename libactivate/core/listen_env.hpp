// The socket activation environment (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES) read as systemd's
// sd_listen_fds_with_names() does.
#pragma once

#include <string>
#include <vector>

namespace fdsup {

// The name of every fd when LISTEN_FDNAMES is unset.
inline constexpr const char *kUnnamedListener = "unknown";

// Parses the three values (null: the variable is unset) for the process
// `self`. Returns the fd count, 0 when LISTEN_PID is unset or names another
// process (the variables were inherited from a parent they were meant for),
// or -EINVAL: a pid or count that is not a plain decimal, a count above
// INT32_MAX - 3, or a number of names that is not the count. On success, when
// `names` is not null, it holds one name per fd, or none without
// LISTEN_FDNAMES: every fd is then "unknown" (kUnnamedListener), as systemd
// names them. Pure: the fuzz target `listen-env` runs it.
int parseListenEnvironment(const char *pid, const char *fds, const char *fdNames, unsigned long self,
                           std::vector<std::string> *names);

} // namespace fdsup
