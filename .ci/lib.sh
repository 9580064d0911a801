# Shared by .ci/demo and .ci/test: install what is missing, configure, build.
# Sourced, not run.

# Debian 12 packages the build, the tests and the demo need.
FDSUP_PACKAGES=(
  g++ meson ninja-build pkg-config
  libsystemd-dev libcli11-dev libtomlplusplus-dev libspdlog-dev
  libgtest-dev libgmock-dev nlohmann-json3-dev
  clang-format clang-tidy
  python3 systemd curl strace util-linux wrk
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

# fdsup_build DIR [meson options...]: configure (or reconfigure) and build.
fdsup_build() {
  local dir=$1
  shift
  if [ -f "$dir/build.ninja" ]; then
    meson configure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@"
  fi
  meson compile -C "$dir"
}
