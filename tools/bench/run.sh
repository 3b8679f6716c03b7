#!/usr/bin/env bash
# urt against its peers on the six workloads of the benchmark plan and on
# ECHO (loopback echo servers), in one run on this machine: builds urt and
# every benchmark program, runs them all interleaved R times, and prints one
# markdown table of medians and ratios, with the performance targets marked
# met or missed.
#
# From a fresh clone on Debian 12, as root:   bash tools/bench/run.sh
# (installs the Debian packages it needs first; see --help).
set -euo pipefail

usage() {
	cat <<'EOF'
usage: tools/bench/run.sh [--runs N] [--quick] [--build-dir DIR] [--file-mib M]
                          [--no-install]

Builds urt and the benchmarks (tools/bench/) in DIR (default build-bench/ in
the checkout), runs every workload's programs -- urt, the raw liburing
floor, libuv, Python asyncio, boost.context, Go (W4); for ECHO, echo servers on
urt, plain epoll and libuv under one epoll client -- interleaved, N rounds
(default 3), and prints one markdown table of medians and of urt's ratio to
each peer, with the performance targets marked met or missed.

  --runs N       rounds (default 3; each program runs once per round)
  --quick        a smoke run: 1 round, smaller sizes (under a minute)
  --build-dir D  where to configure and build (default <checkout>/build-bench)
  --file-mib M   W4's file size (default 256; the workload says 1024)
  --no-install   do not apt-get install missing packages (fail instead)

Missing Debian packages are installed with apt-get when run as root:
cmake pkg-config liburing-dev libcmocka-dev libuv1-dev libboost-context-dev
g++ python3 golang-go. The default run takes about 5 minutes on 2 CPUs, --quick under
one. Logs and the table are kept in DIR/bench-logs/.
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
runs=""
quick=0
build=""
file_mib=256
install=1
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) runs=${2:?--runs needs a count}; shift 2 ;;
	--runs=*) runs=${1#--runs=}; shift ;;
	--quick) quick=1; shift ;;
	--build-dir) build=${2:?--build-dir needs a directory}; shift 2 ;;
	--build-dir=*) build=${1#--build-dir=}; shift ;;
	--file-mib) file_mib=${2:?--file-mib needs a size}; shift 2 ;;
	--file-mib=*) file_mib=${1#--file-mib=}; shift ;;
	--no-install) install=0; shift ;;
	-h|--help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
case "$runs" in *[!0-9]*|0) echo "run.sh: --runs wants a count from 1" >&2; exit 2 ;; esac
case "$file_mib" in ''|*[!0-9]*|0) echo "run.sh: --file-mib wants MiB from 1" >&2; exit 2 ;; esac
[ -n "$build" ] || build="$src/build-bench"
t_start=$(date +%s)

# ---- sizes: the workloads' own, shrunk where the suite would take too long
# (each shrink is said in the table's notes) ----
if [ "$quick" = 1 ]; then
	runs=${runs:-1}
	w2_jobs=2000	# urt-bench-offload's W2 jobs per cell; its W3 runs 50x
	w4_reads=200000
	w5_secs=1
	w6_rounds=2000000
	echo_secs=1
	py_w3_jobs=10000
	py_w6_rounds=100000
	xloop_calls=5000
	xloop_spawns=200000
	xloop_msgs=4000000
	[ "$file_mib" = 256 ] && file_mib=64
else
	w2_jobs=10000	# the workload's 100,000 adds about a minute per round
	w4_reads=1000000
	w5_secs=3
	w6_rounds=10000000
	echo_secs=3
	py_w3_jobs=20000
	py_w6_rounds=200000
	xloop_calls=20000
	xloop_spawns=1000000
	xloop_msgs=10000000
fi
runs=${runs:-3}
w1_sizes="10000 100000"
w3_jobs=$((w2_jobs * 50))	# what urt-bench-offload runs for W3: libuv the same
echo_conns=100
echo_msg=64

# ---- packages ----
need="cmake pkg-config liburing-dev libcmocka-dev libuv1-dev libboost-context-dev g++ python3
	golang-go"
missing=""
for p in $need; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$install" = 1 ] && [ "$(id -u)" = 0 ]; then
		echo "run.sh: installing$missing" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >&2
		# shellcheck disable=SC2086 # one word per package
		apt-get install -y -qq $missing >&2
	else
		echo "run.sh: missing Debian packages:$missing (run as root, or apt-get install them)" >&2
		exit 1
	fi
fi
# Debian's interpreter, not whatever python3 comes first on PATH: the peer
# is what a reader rebuilds from Debian's packages.
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)

# ---- build ----
echo "run.sh: building in $build" >&2
mkdir -p "$build"
cmake -S "$src" -B "$build" -DURT_BUILD_TESTS=OFF >"$build/configure.log" 2>&1 ||
	{ cat "$build/configure.log" >&2; exit 1; }
cmake --build "$build" -j "$(nproc)" >"$build/build.log" 2>&1 ||
	{ tail -50 "$build/build.log" >&2; exit 1; }
bin="$build/tools/bench"
for b in urt-bench-uv-sleepers urt-bench-uv-echo urt-bench-fcontext; do
	[ -x "$bin/$b" ] || { echo "run.sh: $b was not built (see $build/configure.log)" >&2; exit 1; }
done
# W4's Go peer: the standard library only, built offline, its cache here.
GOCACHE="$build/go-cache" GOFLAGS=-trimpath go build -o "$bin/urt-bench-go-reads" \
	"$here/go_reads/main.go" >>"$build/build.log" 2>&1 ||
	{ tail -20 "$build/build.log" >&2; exit 1; }
# ECHO's urt server is an example program, with the peers' command line.
echo_urt_server="$build/examples/urt-echo-server"
[ -x "$echo_urt_server" ] ||
	{ echo "run.sh: $echo_urt_server was not built (see $build/build.log)" >&2; exit 1; }

logs="$build/bench-logs/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$logs"
log="$logs/results.log"
: >"$log"
w4_file="$build/urt-bench-w4-${file_mib}mib.dat"
echo_pid=""	# ECHO's server while it runs
# W4's file is made again in a second by the next run: do not leave it
# taking its hundreds of MiB in the checkout. Nor a server listening when a
# check failed or the run was cut short.
cleanup() {
	rm -f "$w4_file"
	if [ -n "$echo_pid" ]; then
		kill -KILL "$echo_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
# The CPUs this process may use, one a line, from taskset's list ("0-3,6").
allowed_cpus() {
	local part list
	list=$(taskset -pc $$ | sed 's/.*: *//')
	for part in ${list//,/ }; do
		case "$part" in
		*-*) seq "${part%-*}" "${part#*-}" ;;
		*) echo "$part" ;;
		esac
	done
}
# The first: the "one CPU" placement of W2's peers, and ECHO's servers.
cpu0=$(allowed_cpus | sed -n 1p)
# The second: ECHO's client, so that client and server do not take turns
# on one CPU. Empty when there is one CPU: the client then runs unpinned.
cpu1=$(allowed_cpus | sed -n 2p)

# Run one program, its output kept in the log under a header saying what it
# was. A failed check in any program fails the whole run: a figure whose work
# was wrong must not reach the table.
bench() {
	local name=$1 t0 t1 ms
	shift
	printf '### round %s %s: %s\n' "$round" "$name" "$*" >>"$log"
	printf '  round %s/%s  %-26s' "$round" "$runs" "$name" >&2
	t0=$(date +%s%N)
	if ! "$@" >>"$log" 2>"$logs/stderr.txt"; then
		echo " FAILED" >&2
		cat "$logs/stderr.txt" >&2
		echo "run.sh: $name failed: $*  (log: $log)" >&2
		exit 1
	fi
	t1=$(date +%s%N)
	ms=$(((t1 - t0) / 1000000))
	printf ' %3d.%d s\n' $((ms / 1000)) $((ms % 1000 / 100)) >&2
}

# Run a group's programs (shell functions) in an order rotated by the round,
# so that no program always runs first (cold caches) or right after the
# same neighbour.
rotate() {
	local -a fns=("$@")
	local i k=${#fns[@]}
	for ((i = 0; i < k; i++)); do
		"${fns[$(((i + round) % k))]}"
	done
}

# The programs, one function each; $n and $load are set by the loops below.
w1_urt() { bench "urt-sleepers-$n" "$bin/urt-bench-sleepers" "$n"; }
w1_raw() { bench "raw-sleepers-$n" "$bin/urt-bench-raw-sleepers" "$n"; }
w1_uv() { bench "uv-sleepers-$n" "$bin/urt-bench-uv-sleepers" "$n"; }
w1_py() { bench "asyncio-sleepers-$n" "$py" "$here/bench_asyncio.py" sleepers "$n"; }
# W2/W3: offload.c runs urt and its raw floors, interleaved, itself. The
# peers run unpinned, and for W2 also on one CPU (workload "W2.1cpu").
w23_urt() { bench urt+raw-offload "$bin/urt-bench-offload" --runs 1 --jobs "$w2_jobs"; }
w2_uv() { bench uv-offload-rt "$bin/urt-bench-uv-offload" rt "$w2_jobs"; }
w2_uv1() {
	bench uv-offload-rt-1cpu taskset -c "$cpu0" "$bin/urt-bench-uv-offload" rt "$w2_jobs" W2.1cpu
}
w3_uv() { bench uv-offload-tp "$bin/urt-bench-uv-offload" tp "$w3_jobs"; }
w2_py() { bench asyncio-rt "$py" "$here/bench_asyncio.py" rt "$w2_jobs"; }
w2_py1() {
	bench asyncio-rt-1cpu taskset -c "$cpu0" "$py" "$here/bench_asyncio.py" rt "$w2_jobs" W2.1cpu
}
w3_py() { bench asyncio-tp "$py" "$here/bench_asyncio.py" tp "$py_w3_jobs"; }
w4_opts=(--file "$w4_file" --file-mib "$file_mib" --reads "$w4_reads")
w4_urt() { bench urt-reads "$bin/urt-bench-reads" "${w4_opts[@]}"; }
w4_urt_fixed() { bench urt-reads-fixed "$bin/urt-bench-reads" --fixed "${w4_opts[@]}"; }
w4_raw() { bench raw-reads "$bin/urt-bench-raw-reads" "${w4_opts[@]}"; }
w4_uv() { bench uv-reads "$bin/urt-bench-uv-reads" "${w4_opts[@]}"; }
# Go: 32 goroutines reading with pread, on every CPU of the run (2 here).
w4_go() { bench go-reads "$bin/urt-bench-go-reads" "${w4_opts[@]}"; }
# W4 on the epoll backend: cached reads answered on the loop, the rest on
# the pool; set against libuv's uv_fs_read.
w4_urt_watched() {
	URT_BENCH_METRICS=1 bench urt-reads-watched "$bin/urt-bench-reads" "${w4_opts[@]}"
}
w4_urt_epoll() { URT_BACKEND=epoll bench urt-reads-epoll "$bin/urt-bench-reads" "${w4_opts[@]}"; }
# ... and with every read on the pool (URT_LOOP_FILES_ON_POOL), as uv_fs_read.
w4_urt_epoll_pool() {
	URT_BACKEND=epoll bench urt-reads-epoll-pool "$bin/urt-bench-reads" --pool "${w4_opts[@]}"
}
# W4 on a set of two loops (QD 32 each), to set against one loop.
w4_urt2() { bench urt-reads-2loops "$bin/urt-bench-reads" --loops 2 "${w4_opts[@]}"; }
# Between two loops: urt_call's round trip against MSG_RING and eventfd
# ping-pong floors (interleaved by the program itself), channel messages.
xloop_urt() {
	bench urt-xloop "$bin/urt-bench-xloop" --runs 1 --calls "$xloop_calls" \
		--spawns "$xloop_spawns" --msgs "$xloop_msgs"
}
w5_urt() { bench "urt-timer-$load" "$bin/urt-bench-timer" --load "$load" --seconds "$w5_secs"; }
w5_urt_epoll() {
	URT_BACKEND=epoll bench "urt-epoll-timer-$load" "$bin/urt-bench-timer" --load "$load" \
		--seconds "$w5_secs"
}
w5_raw() { bench "raw-timer-$load" "$bin/urt-bench-raw-timer" --load "$load" --seconds "$w5_secs"; }
w5_uv() { bench "uv-timer-$load" "$bin/urt-bench-uv-timer" --load "$load" --seconds "$w5_secs"; }
w5_py() { bench "asyncio-timer-$load" "$py" "$here/bench_asyncio.py" timer "$load" "$w5_secs"; }
w6_urt() { bench urt-yield "$bin/urt-bench-yield" "$w6_rounds"; }
# Watched: URT_LOOP_METRICS and a 10 ms lag monitor (bench_loop.h), to see
# what that costs; W4 and ECHO the same.
w6_urt_watched() { URT_BENCH_METRICS=1 bench urt-yield-watched "$bin/urt-bench-yield" "$w6_rounds"; }
w6_boost() { bench boost-fcontext "$bin/urt-bench-fcontext" "$w6_rounds"; }
w6_py() { bench asyncio-yield "$py" "$here/bench_asyncio.py" yield "$py_w6_rounds"; }

# ECHO: start the server on cpu0, take its port from its first line, run
# the client (which checks every byte) on cpu1 through bench, then stop the
# server with SIGINT: it must exit 0 within 5 s. A server that cannot start,
# dies or hangs fails the run like a failed check.
# echo_pin=0: neither is pinned (the server on a loop per CPU).
echo_pin=1
echo_run() {
	local name=$1 impl=$2 server=$3 line="" port rc=0 i
	local sout="$logs/echo-server.out" serr="$logs/echo-server.err"
	local -a pin=() spin=()
	shift 3
	[ -z "$cpu1" ] || [ "$echo_pin" = 0 ] || pin=(taskset -c "$cpu1")
	[ "$echo_pin" = 0 ] || spin=(taskset -c "$cpu0")
	# bash starts a background job with SIGINT ignored; every server
	# catches it itself (signalfd, uv_signal, urt), which undoes that.
	"${spin[@]}" "$server" --port 0 "$@" >"$sout" 2>"$serr" &
	echo_pid=$!
	for ((i = 0; i < 100; i++)); do
		# A whole line only: the newline comes with the port.
		if [ "$(head -c 64 "$sout" | wc -l)" -ge 1 ]; then
			line=$(head -n 1 "$sout")
			break
		fi
		kill -0 "$echo_pid" 2>/dev/null || break
		sleep 0.05
	done
	port=${line#port }
	case "$line" in
	"port "*) case "$port" in ''|*[!0-9]*) port="" ;; esac ;;
	*) port="" ;;
	esac
	if [ -z "$port" ] || [ "$port" = 0 ] || [ "$port" -gt 65535 ]; then
		echo "run.sh: $name: $server printed no \"port N\" line in 5 s; it said:" >&2
		cat "$sout" "$serr" >&2
		exit 1
	fi
	bench "$name" "${pin[@]}" "$bin/urt-bench-echo-client" --port "$port" \
		--conns "$echo_conns" --msg-size "$echo_msg" --seconds "$echo_secs" --impl "$impl"
	kill -INT "$echo_pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$echo_pid" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$echo_pid" 2>/dev/null; then
		echo "run.sh: $name: $server did not exit within 5 s of SIGINT" >&2
		exit 1	# cleanup kills it
	fi
	wait "$echo_pid" || rc=$?
	echo_pid=""
	if [ "$rc" != 0 ]; then
		echo "run.sh: $name: $server exited $rc after SIGINT, not 0; it said:" >&2
		cat "$serr" >&2
		exit 1
	fi
}
# urt's server without its metrics, as the peers' servers have none; with
# them (its default), watched.
echo_urt() { echo_run urt-echo urt "$echo_urt_server" --no-metrics; }
echo_urt_watched() { URT_BENCH_METRICS=1 echo_run urt-echo-watched urt "$echo_urt_server"; }
# The same server on two loops, unpinned, the client too: on a 2-CPU
# machine they share the CPUs.
echo_urt2() {
	echo_pin=0
	echo_run urt-echo-2loops urt-2loops "$echo_urt_server" --loops 2 --no-metrics
	echo_pin=1
}
echo_epoll() { echo_run epoll-echo epoll "$bin/urt-bench-epoll-echo"; }
# urt's server on its epoll backend; bench_result names it urt-epoll (the
# client, plain epoll, sees URT_BACKEND too).
echo_urt_epoll() {
	URT_BACKEND=epoll echo_run urt-echo-epoll urt "$echo_urt_server" --no-metrics
}
echo_uv() { echo_run uv-echo libuv "$bin/urt-bench-uv-echo"; }

# Make W4's file (and fill the page cache) before anything is timed.
"$bin/urt-bench-raw-reads" --file "$w4_file" --file-mib "$file_mib" --reads 1000 >/dev/null

echo "run.sh: $runs round(s); each line is one program's run" >&2
for ((round = 1; round <= runs; round++)); do
	# W1: each size in a fresh process of each kind, since cold means first.
	for n in $w1_sizes; do
		rotate w1_urt w1_raw w1_uv w1_py
	done
	rotate w23_urt w2_uv w2_uv1 w3_uv w2_py w2_py1 w3_py
	rotate w4_urt w4_urt_fixed w4_raw w4_uv w4_urt2 w4_go w4_urt_epoll w4_urt_epoll_pool \
		w4_urt_watched
	xloop_urt
	for load in idle offload inline; do
		if [ "$load" = inline ]; then
			# libuv is compared on idle and offload only.
			rotate w5_urt w5_raw w5_py
		else
			rotate w5_urt w5_raw w5_uv w5_py w5_urt_epoll
		fi
	done
	rotate w6_urt w6_boost w6_py w6_urt_watched
	rotate echo_urt echo_epoll echo_uv echo_urt2 echo_urt_epoll echo_urt_watched
done

t_end=$(date +%s)
"$py" "$here/report.py" "$log" \
	--runs "$runs" --mode "$([ "$quick" = 1 ] && echo quick || echo default)" \
	--wall-s "$((t_end - t_start))" --file-mib "$file_mib" \
	--sizes "W2 $w2_jobs jobs (+1,000 warm-up), W3 urt/raw/libuv $w3_jobs jobs, \
asyncio $py_w3_jobs; W4 $w4_reads reads; W5 ${w5_secs} s per load; \
W6 $w6_rounds ping-pongs (asyncio $py_w6_rounds); \
ECHO $echo_conns connections x $echo_msg B for $echo_secs s (+0.5 s warm-up); \
XLOOP $xloop_calls round trips, $xloop_spawns spawns, $xloop_msgs channel messages" \
	--build-type "$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")" \
	--commit "$(git -C "$src" describe --always --dirty 2>/dev/null || echo "not a git checkout")" |
	tee "$logs/table.md"
echo "run.sh: logs and table in $logs" >&2
