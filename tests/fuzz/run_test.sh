#!/usr/bin/env bash
# The documented command, briefly (docs/fuzzing.md): tests/fuzz/run fuzzes one target for 2 s against
# this build and prints its line with no finding; with a memory limit no process can meet
# (-rss_limit_mb=1, passed through to libFuzzer) it reports the finding, the reproducer and the
# command that runs it, and fails.
set -euo pipefail
build=$1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run="$FDSUP_SOURCE_ROOT/tests/fuzz/run"

fail() {
  echo "FAIL: $*"
  exit 1
}

"$run" --no-install --build "$build" --out "$out/clean" --time 2 --jobs 1 units >"$out/clean.txt" 2>&1 ||
  fail "a clean run failed: $(cat "$out/clean.txt")"
cat "$out/clean.txt"
line=$(grep '^units ' "$out/clean.txt") || fail "no line for the target"
execs=$(awk '{print $2}' <<<"$line")
[[ $execs =~ ^[0-9]+$ ]] && [ "$execs" -gt 0 ] || fail "no executions: $line"
[ "$(awk '{print $NF}' <<<"$line")" = 0 ] || fail "findings in a clean run: $line"
[ -n "$(ls "$out/clean/corpus/units")" ] || fail "no corpus written to $out/clean/corpus/units"

if "$run" --no-install --build "$build" --out "$out/oom" --time 2 --jobs 1 units -- -rss_limit_mb=1 \
  >"$out/oom.txt" 2>&1; then
  fail "a run with a finding exited 0: $(cat "$out/oom.txt")"
fi
cat "$out/oom.txt"
grep -q "FINDING $out/oom/findings/units/oom-" "$out/oom.txt" || fail "the finding is not named"
reproduce=$(sed -n 's/^ *reproduce: //p' "$out/oom.txt")
[[ $reproduce == */tests/fuzz/fuzz-units\ -rss_limit_mb=1\ $out/oom/findings/units/oom-* ]] ||
  fail "no command to reproduce it: '$reproduce'"
# The command printed runs the target on that input (an RSS limit is checked
# once a second, so one short input does not exceed it again: a crash
# would show here, this finding cannot).
$reproduce >"$out/reproduce.txt" 2>&1 || fail "the reproducer failed to run: $(cat "$out/reproduce.txt")"
grep -q "Executed $out/oom/findings/units/oom-" "$out/reproduce.txt" ||
  fail "the reproducer did not run the input: $(cat "$out/reproduce.txt")"
echo "ok: clean run $execs executions; the finding was reported"
