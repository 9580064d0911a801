# Shared by .ci/demo and .ci/test: install what is missing, configure, build.
# Sourced, not run.

# Debian 12 packages the build, the tests and the demo need.
FDSUP_PACKAGES=(
  g++ meson ninja-build pkg-config ccache
  libsystemd-dev libcli11-dev libtomlplusplus-dev libspdlog-dev
  libgtest-dev libgmock-dev nlohmann-json3-dev
  clang-format clang-tidy
  python3 systemd curl strace util-linux wrk man-db
  gnuplot-nox # tests/bench/run: the report's plots
  nodejs redis-server iproute2 libcap2-bin
  nginx-light gunicorn python3-uvicorn lighttpd haproxy
  dpkg-dev debhelper lintian git # packaging/build-deb, tests/packaging
  clang libclang-rt-14-dev # tests/fuzz/run: clang++ and libFuzzer's runtime (docs/fuzzing.md)
  valgrind                 # the valgrind suite: fdsupd under memcheck
)

fdsup_install_missing() {
  local missing=() p
  for p in "${FDSUP_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# fdsup_use_caches: CI's caches live outside the clone, so that the next
# clone, wherever it is, finds them: ccache's objects and the clean
# clang-tidy results (docs/ci.md). FDSUP_CI_CACHE moves them.
fdsup_use_caches() {
  if [ -z "${FDSUP_CI_CACHE:-}" ]; then
    if [ -n "${XDG_CACHE_HOME:-}" ]; then
      FDSUP_CI_CACHE=$XDG_CACHE_HOME/fdsup-ci
    elif [ -n "${HOME:-}" ]; then
      FDSUP_CI_CACHE=$HOME/.cache/fdsup-ci
    else
      FDSUP_CI_CACHE=/var/cache/fdsup-ci
    fi
  fi
  # meson puts ccache in front of the compilers when it is on PATH.
  CCACHE_DIR=$FDSUP_CI_CACHE/ccache
  # Paths under the clone are hashed relative to it, so that a clone
  # elsewhere hits. A build with debug information maps the clone's path
  # away (-fdebug-prefix-map=CLONE=.), which ccache applies to the build dir
  # it hashes.
  CCACHE_BASEDIR=$(pwd -P)
  CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-2G}
  export FDSUP_CI_CACHE CCACHE_DIR CCACHE_BASEDIR CCACHE_MAXSIZE
  mkdir -p "$CCACHE_DIR" "$FDSUP_CI_CACHE/clang-tidy"
}

# fdsup_configure DIR [meson options...]: configure, or reconfigure.
fdsup_configure() {
  local dir=$1
  shift
  if [ -f "$dir/build.ninja" ]; then
    meson configure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@"
  fi
}

# fdsup_build DIR [meson options...]: configure (or reconfigure) and build.
fdsup_build() {
  local dir=$1
  shift
  fdsup_configure "$dir" "$@"
  meson compile -C "$dir"
}
