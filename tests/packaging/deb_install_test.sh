#!/usr/bin/env bash
# deb-install DEBDIR SRCDIR: install the packages packaging/build-deb made in
# DEBDIR on this machine, use them as a user and a developer would, purge
# them, and check that nothing is left behind (docs/packaging.md).
#
# It changes the machine (apt-get install, then purge), so it runs only with
# CI=true (a throwaway CI machine) or FDSUP_TEST_INSTALL=1, as root, and
# otherwise reports SKIP. Whatever fails, the EXIT trap stops what it started
# and purges what it installed, the packages apt pulled in with them too.
set -euo pipefail

if [ "${CI:-}" != true ] && [ "${FDSUP_TEST_INSTALL:-}" != 1 ]; then
  echo "SKIP: this test installs and purges the fdsup packages on this machine;" \
    "run it with FDSUP_TEST_INSTALL=1 as root (CI runs it with CI=true)"
  exit 77
fi
[ $# -eq 2 ] || { echo "usage: deb_install_test.sh DEBDIR SRCDIR" >&2; exit 2; }
debs=$(cd "$1" && pwd -P)
src=$(cd "$2" && pwd -P)
here=$(cd "$(dirname "$0")" && pwd -P)
packages=(fdsup libactivate0 libactivate-dev)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "==> $*"; }

[ "$(id -u)" -eq 0 ] || fail "needs root to install packages (sudo FDSUP_TEST_INSTALL=1 meson test ...)"
for p in "${packages[@]}"; do
  compgen -G "$debs/${p}_*.deb" >/dev/null ||
    fail "no ${p}_*.deb in $debs: run the deb-build test first (meson test --suite packaging)"
  state=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  case "$state" in '' | not-installed) ;; *)
    fail "$p is already on this machine ($state): this test would replace it; apt-get purge it first" ;;
  esac
done

[ "$(cat "$debs/source-id" 2>/dev/null)" = "$("$src/packaging/build-deb" --source-id)" ] ||
  fail "the packages in $debs were not built from this tree as it is now: run the deb-build test first (meson test --suite packaging)"

tmp=$(mktemp -d /tmp/fdsup-deb-install.XXXXXX)
daemons=()
installed_before=$tmp/installed-before
dpkg-query -W -f='${Package}:${Architecture} ${db:Status-Status}\n' | awk '$2 != "not-installed" { print $1 }' |
  sort >"$installed_before"

# installed_since_before: the packages installed (or half-installed) since.
installed_since_before() {
  dpkg-query -W -f='${Package}:${Architecture} ${db:Status-Status}\n' |
    awk '$2 != "not-installed" { print $1 }' | sort | comm -13 "$installed_before" -
}

# wait_exit PID SECONDS: wait for a process that is not our child to exit.
wait_exit() {
  python3 -c 'import os, select, sys
try:
    fd = os.pidfd_open(int(sys.argv[1]))
except ProcessLookupError:
    sys.exit(0)
sys.exit(0 if select.select([fd], [], [], float(sys.argv[2]))[0] else 1)' "$1" "$2"
}

stop_daemon() {
  kill -TERM "$1" 2>/dev/null || return 0
  wait_exit "$1" 60 || { echo "fdsupd $1 did not stop within 60s: killing it" >&2; kill -KILL "$1" 2>/dev/null || true; }
}

cleanup() {
  local status=$? p new=()
  trap - EXIT
  for p in "${daemons[@]}"; do stop_daemon "$p"; done
  [ "$status" -eq 0 ] || for f in "$tmp"/*.log; do [ -e "$f" ] && { echo "--- $f"; cat "$f"; }; done
  # Whatever this test installed, the dependencies apt pulled in included
  # (as counted right after the install: what another apt run installs
  # meanwhile on this machine is none of our business).
  [ -e "$tmp/installed-by-test" ] || installed_since_before >"$tmp/installed-by-test"
  mapfile -t new < <(dpkg-query -W -f='${Package}:${Architecture} ${db:Status-Status}\n' |
    awk '$2 != "not-installed" { print $1 }' | sort | comm -12 "$tmp/installed-by-test" -)
  if [ ${#new[@]} -gt 0 ]; then
    echo "cleanup: purging ${new[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q -o DPkg::Lock::Timeout=300 "${new[@]}" >/dev/null ||
      { echo "cleanup: apt-get purge ${new[*]} failed" >&2; status=1; }
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT

# Every path the packages ship, and which of them existed before (/usr...).
for p in "${packages[@]}"; do
  dpkg-deb --fsys-tarfile "$debs/${p}"_*.deb | tar -t | sed 's|^\./|/|; s|/$||' | grep -v '^\.\?$'
done | sort -u >"$tmp/shipped"
while read -r f; do [ -e "$f" ] || [ -L "$f" ] || echo "$f"; done <"$tmp/shipped" >"$tmp/new-paths"

step "apt-get install ./fdsup_*.deb ./libactivate0_*.deb ./libactivate-dev_*.deb"
(cd "$debs" && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 \
  ./fdsup_*.deb ./libactivate0_*.deb ./libactivate-dev_*.deb)
installed_since_before >"$tmp/installed-by-test"
# What dpkg says it installed is what the check after the purge covers.
dpkg-query -L "${packages[@]}" | grep -v -e '^/\.$' -e '^$' | sort -u >"$tmp/listed"
cmp -s "$tmp/listed" "$tmp/shipped" ||
  fail "dpkg -L differs from the packages' contents: $(diff "$tmp/shipped" "$tmp/listed")"
# shellcheck source=deb_install_checks.sh
. "$here/deb_install_checks.sh"

step "apt-get purge -y ${packages[*]}"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q -o DPkg::Lock::Timeout=300 "${packages[@]}"
for p in "${packages[@]}"; do
  state=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  case "$state" in '' | not-installed) ;; *) fail "$p is still $state after the purge" ;; esac
done
left=$(while read -r f; do [ -e "$f" ] || [ -L "$f" ] && echo "$f"; done <"$tmp/new-paths" || true)
[ -z "$left" ] || fail "left behind by the purge: $left"
[ ! -e /etc/fdsupd ] || fail "/etc/fdsupd is still there after the purge"
# What the postinst made (dh_installsystemd enables the unit) goes too.
for f in /etc/systemd/system/multi-user.target.wants/fdsupd.service \
  /var/lib/systemd/deb-systemd-helper-enabled/fdsupd.service.dsh-also \
  /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/fdsupd.service; do
  [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f is still there after the purge"
done
echo "purge left nothing behind ($(wc -l <"$tmp/new-paths") paths checked)"
