#!/usr/bin/env bash
# stress.sh: runs the integration suites again and again while two busy loops
# keep both cores loaded, the way a shared CI machine is; a flaky test shows
# here long before it fails a merge.
#
#   tests/stress.sh [-n RUNS] [-C BUILD_DIR] [-- MESON_TEST_ARGS...]
#
#   -n RUNS       how many runs in a row (default 20)
#   -C BUILD_DIR  the build to test (default build-asan if it exists, else build)
#   MESON_TEST_ARGS are passed on to every `meson test` (e.g. --num-processes 1)
#
# The build is brought up to date once (ninja -j 2), then every run is
# `meson test --suite integration --no-rebuild`. One line per run, then
# "N runs, F failures"; the exit status is 1 when a run failed. The console
# output and meson's logs of a failed run are kept in
# BUILD_DIR/stress-logs/run-K/; those of passed runs are removed.
set -u

runs=20
build=
usage() {
  sed -n '6,10s/^# \{0,1\}//p' "$0" >&2
  exit 2
}
while getopts 'n:C:h' opt; do
  case $opt in
    n) runs=$OPTARG ;;
    C) build=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = -- ] && shift
case $runs in '' | *[!0-9]* | 0) usage ;; esac

top=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$build" ]; then
  build=$top/build-asan
  [ -d "$build" ] || build=$top/build
fi
if [ ! -f "$build/build.ninja" ]; then
  echo "stress.sh: $build is not a configured meson build directory" >&2
  exit 2
fi
build=$(cd "$build" && pwd)
logs=$build/stress-logs

# Never more than two compile jobs: the machine is shared.
meson compile -C "$build" -j 2 >/dev/null || {
  echo "stress.sh: the build in $build failed (run: meson compile -C $build -j 2)" >&2
  exit 2
}

busy=()
stop_busy() {
  [ ${#busy[@]} -gt 0 ] && kill "${busy[@]}" 2>/dev/null
  wait "${busy[@]}" 2>/dev/null
  busy=()
}
trap stop_busy EXIT
trap 'exit 130' INT TERM
# Killed at exit, and with this script should it be killed itself (setpriv --pdeathsig).
for _ in 1 2; do
  setpriv --pdeathsig KILL -- sh -c 'while :; do :; done' &
  busy+=($!)
done

rm -rf "$logs"
mkdir -p "$logs"
echo "stress: $runs runs of the integration suites in $build, both cores kept busy (pids ${busy[*]})"
failures=0
total_start=$SECONDS
for ((run = 1; run <= runs; run++)); do
  dir=$logs/run-$run
  mkdir -p "$dir"
  start=$SECONDS
  meson test -C "$build" --suite integration --no-rebuild --print-errorlogs --logbase "stress-run-$run" "$@" \
    >"$dir/console.log" 2>&1
  rc=$?
  took=$((SECONDS - start))
  mv "$build"/meson-logs/stress-run-"$run".* "$dir"/ 2>/dev/null
  if [ $rc -eq 0 ]; then
    echo "run $run/$runs: ok (${took}s)"
    rm -rf "$dir"
  else
    failures=$((failures + 1))
    failed=$(grep -oE '^ *[0-9]+/[0-9]+ [^ ]+ / [^ ]+ +(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS) ' "$dir/console.log" |
      sed -E 's/^.* \/ //; s/ +/ /g; s/ $//' | sort -u | paste -sd ',' -)
    echo "run $run/$runs: FAILED (${took}s): ${failed:-meson test exited $rc}; logs in $dir"
  fi
done
echo "$runs runs, $failures failures ($(((SECONDS - total_start) / runs))s per run)"
[ $failures -eq 0 ]
