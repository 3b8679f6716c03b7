#!/usr/bin/env bash
# The echo example end to end on loopback: urt-echo-server, driven by
# urt-echo-client with 100 concurrent connections moving a known byte count,
# then a graceful shutdown by SIGINT while 50 more connections are open.
# Usage: echo_test.sh <urt-echo-server> <urt-echo-client> [server options...]
set -euo pipefail
server=$1
client=$2
shift 2
dir=$(mktemp -d)
spid=""
cleanup() {
	[ -n "$spid" ] && kill -KILL "$spid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "echo_test: $*" >&2; for f in "$dir"/*; do echo "--- $f"; cat "$f"; done >&2; exit 1; }

"$server" --port 0 "$@" >"$dir/server.out" 2>"$dir/server.err" &
spid=$!
for _ in $(seq 100); do
	grep -q '^port ' "$dir/server.out" 2>/dev/null && break
	sleep 0.1
done
port=$(awk '/^port /{print $2; exit}' "$dir/server.out")
[ -n "$port" ] || fail "the server printed no port"

# 100 connections, 256 KiB each in 4 KiB messages, every byte checked.
out=$(timeout 120 "$client" --port "$port" --conns 100 --bytes 262144 --msg 4096) ||
	fail "the client failed: $out"
[ "$out" = "connections 100 bytes 26214400" ] || fail "the client said: $out"

# 50 connections that would run for long; SIGINT the server meanwhile.
timeout 120 "$client" --port "$port" --conns 50 --bytes 100000000000 --msg 64 \
	>"$dir/client2.out" 2>"$dir/client2.err" &
cpid=$!
sleep 1
# SIGUSR1: one line of metrics on stderr, and the server goes on.
kill -USR1 "$spid"
sleep 0.2
kill -INT "$spid"
rc=0
timeout 20 tail --pid="$spid" -f /dev/null || fail "the server did not exit after SIGINT"
wait "$spid" || rc=$?
spid=""
[ "$rc" = 0 ] || fail "the server exited $rc after SIGINT"
crc=0
wait "$cpid" || crc=$?
[ "$crc" = 1 ] || fail "the client of the closed server exited $crc, not 1"
summary=$(tail -1 "$dir/server.out")
read -r word conns word2 bytes <<<"$summary"
[ "$word" = connections ] && [ "$word2" = bytes ] || fail "no summary from the server: $summary"
# The second client's connections open while it starts: on a slow machine
# (a sanitizer build) a few may still be in the backlog at the SIGINT.
[ "$conns" -gt 100 ] && [ "$conns" -le 150 ] ||
	fail "the server counted $conns connections, not 101 to 150"
[ "$bytes" -gt 26214400 ] || fail "the server echoed $bytes bytes, at most the first client's"
# The metrics: at SIGUSR1 and at the shutdown, each one line of key=value.
metrics=$(grep -c '^urt-echo-server: loops=[0-9]* utilization=[01]\.[0-9]* .* cqes=[0-9]* .* lag_p99_us=' \
	"$dir/server.err" || true)
[ "$metrics" = 2 ] || fail "expected 2 metrics lines on the server's stderr, saw $metrics"
echo "echo_test: 100 connections moved 26214400 bytes; SIGINT closed $((conns - 100)) open ones; server: $summary"
