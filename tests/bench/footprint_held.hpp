// footprint-bench's held connections: fdsupd's memory and descriptors while its handoff broker holds them.
#pragma once

#include "bench_report.hpp"

namespace fdsup::bench {

// `repeats` times: a handoff service (8 http-keepalive instances) serves `connections` keep-alive connections
// of this program; a stop-first rollout drains them into the broker while the replacements wait before exec;
// the footprint is sampled once fdsupd holds them all, then the replacement adopts them. Declares and adds
// footprint.held_N.private_kib, .fds and .ms (drain to all held). Throws when a step does not happen.
void held(BenchReport &report, int connections, int repeats);

} // namespace fdsup::bench
