// handoff-bench's notes: where fdsupd's time goes, what the clock covers, what 100k connections would take.
#pragma once

#include "bench_report.hpp"
#include "handoff_fdsupd.hpp"

namespace fdsup::bench {

// Figures handoff.syscalls.per_connection and .per_message and a note with
// the system calls fdsupd made while moving n connections.
void syscallNotes(BenchReport &report, int n, const SyscallProfile &profile);
// The notes that follow from the figures measured so far: the clock, the
// descriptor limit, 100,000 connections extrapolated from the largest size.
void staticNotes(BenchReport &report, int largest);

} // namespace fdsup::bench
