# shellcheck shell=bash disable=SC2154 # (its variables are deb_install_test.sh's)
# Sourced by deb_install_test.sh once the packages are installed: what a user
# and a developer do with them. Uses its variables (tmp, src, here,
# multiarch, daemons) and functions (fail, step, stop_daemon).

step "the files are where Debian puts them, in the right package"
expect_owner() {
  local owner
  owner=$(dpkg-query -S "$2" 2>/dev/null | cut -d: -f1) || true
  [ "$owner" = "$1" ] || fail "$2: expected from package $1, found '${owner:-nothing}'"
}
expect_owner fdsup /usr/sbin/fdsupd
expect_owner fdsup /usr/bin/fdsupctl
expect_owner fdsup /usr/bin/fdsup-preload
expect_owner fdsup "/usr/lib/$multiarch/fdsup/libactivate-preload.so"
expect_owner fdsup /usr/share/bash-completion/completions/fdsupctl
expect_owner fdsup /etc/fdsupd/fdsupd.toml
expect_owner fdsup /usr/share/man/man8/fdsupd.8.gz
expect_owner libactivate0 "/usr/lib/$multiarch/libactivate.so.0"
expect_owner libactivate-dev "/usr/lib/$multiarch/libactivate.so"
expect_owner libactivate-dev "/usr/lib/$multiarch/pkgconfig/libactivate.pc"
expect_owner libactivate-dev /usr/include/activate/activate.h
dpkg-query -W -f='${Conffiles}\n' fdsup | grep -q '^ /etc/fdsupd/fdsupd.toml ' ||
  fail "/etc/fdsupd/fdsupd.toml is not a conffile of fdsup"

step "systemd-analyze verify the installed units"
mapfile -t units < <(dpkg-query -L fdsup | grep -E '/systemd/system/[^/]+\.(service|socket)$')
[ ${#units[@]} -gt 0 ] || fail "fdsup ships no systemd unit"
for u in "${units[@]}"; do
  echo "$u"
  systemd-analyze verify "$u" || fail "systemd-analyze verify $u"
done

# start_fdsupd LOG CMD...: start an installed fdsupd as a Type=notify service,
# return once it said READY=1; its pid goes to $daemon_pid and $daemons.
start_fdsupd() {
  local log=$1
  shift
  daemon_pid=$(python3 "$here/notify_run.py" 30 "$log" -- "$@") || fail "fdsupd did not start (log above)"
  daemons+=("$daemon_pid")
}

step "fdsupd -c /etc/fdsupd/fdsupd.toml answers fdsupctl status"
# The example configuration names /run/fdsupd/control.sock, which systemd's
# RuntimeDirectory= makes: here a private tmpfs on /run in a mount namespace
# of fdsupd's own stands for it, so that the machine's /run is left alone.
start_fdsupd "$tmp/example.log" unshare --mount --propagation private sh -c \
  'mount -t tmpfs -o mode=0755 tmpfs /run && mkdir /run/fdsupd && exec /usr/sbin/fdsupd -c /etc/fdsupd/fdsupd.toml'
nsenter --target "$daemon_pid" --mount /usr/bin/fdsupctl status | tee "$tmp/status.out"
nsenter --target "$daemon_pid" --mount /usr/bin/fdsupctl status --json >"$tmp/status.json"
python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["services"] != [])' "$tmp/status.json" || fail "the example configuration runs services: $(cat "$tmp/status.json")"
stop_daemon "$daemon_pid"

step "a worker built with pkg-config --cflags --libs libactivate only"
mkdir "$tmp/worker"
cp "$src/libactivate/examples/http-keepalive.c" "$src/libactivate/examples/common.c" \
  "$src/libactivate/examples/common.h" "$src/libactivate/examples/listen.c" \
  "$src/libactivate/examples/listen.h" "$tmp/worker/"
(
  cd "$tmp/worker" || exit 1
  # Only what the installed package says: no PKG_CONFIG_PATH into a build tree.
  flags=$(env -u PKG_CONFIG_PATH -u PKG_CONFIG_LIBDIR pkg-config --cflags --libs libactivate)
  echo "cc -std=c11 -o http-keepalive http-keepalive.c common.c listen.c $flags"
  # shellcheck disable=SC2086
  cc -std=c11 -Wall -Werror -o http-keepalive http-keepalive.c common.c listen.c $flags
)
loaded=$(ldd "$tmp/worker/http-keepalive" | awk '$1 == "libactivate.so.0" { print $3 }')
[ -n "$loaded" ] && [ "$(readlink -f "$loaded")" = "$(readlink -f "/usr/lib/$multiarch/libactivate.so.0")" ] ||
  fail "the worker does not load the installed libactivate: $(ldd "$tmp/worker/http-keepalive")"

step "the worker under the installed fdsupd keeps its connection across fdsupctl restart"
cat >"$tmp/worker/fdsupd.toml" <<'TOML'
[supervisor]
control = "control.sock"

[socket.web]
listen = "tcp://127.0.0.1:0"

[service.web]
command = ["./http-keepalive"]
sockets = ["web"]
instances = 1
ready = "channel"
handoff = true
drain_timeout = "20s"
ready_timeout = "20s"
TOML
start_fdsupd "$tmp/worker.log" /usr/sbin/fdsupd -c "$tmp/worker/fdsupd.toml"
ctl=(/usr/bin/fdsupctl -s "$tmp/worker/control.sock")
"${ctl[@]}" sockets --json >"$tmp/sockets.json"
port=$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["sockets"][0]["bound"][0]["address"].rsplit(":", 1)[1])' "$tmp/sockets.json") ||
  fail "no bound address in fdsupctl sockets --json: $(cat "$tmp/sockets.json")"
python3 "$here/keepalive_client.py" "$port" -- "${ctl[@]}" restart web --wait
"${ctl[@]}" status web
stop_daemon "$daemon_pid"
