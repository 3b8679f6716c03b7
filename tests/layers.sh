#!/bin/bash
# The library's layers, checked on its objects: each file may use what the
# files of lower layers define, and what the files before it in its own
# layer define; never a file above it. Calls go down (task -> operation ->
# ring -> kernel); completions come back up through callbacks (an op's
# done(), a closable's close(), a wait's interrupt()), which are pointers
# and not symbols, so they are not edges here.
#
# The same for the #include lines of src/: a file includes the headers of
# its layer and the layers below; a header only those below its own.
#
# usage: layers.sh NM STATIC_LIBRARY SRC_DIR
# Fails, naming the call or the include, on an upward one or a file no
# layer lists.
set -euo pipefail
nm=$1
lib=$2
src=$3

# Bottom first. Keep in step with the README's architecture section.
layers='
base:  base.h clock hist version
ring:  ring.h epoll ring
pool:  pool.h pool
task:  task.h switch_x86_64 switch_aarch64 ctx task
timer: timer.h timer
sched: sched.h stall sched
wait:  wait.h wait spawn sync
ops:   op.h op file net acceptor offload xloop xchan
loop:  loop loops
'

# Includes: "file includes header" lines, for awk below.
includes=$(cd "$src" && grep -H '^#include "' -- *.c *.h arch/*.c | \
	sed -E 's|^(arch/)?([^:]*)\.c:#include "(\.\./)?([^"]*)".*|\2 \4|; s|^([^:]*\.h):#include "([^"]*)".*|\1 \2|')

{ echo "$includes" | sed 's/^/include /'; "$nm" -A "$lib"; } | awk -v layers="$layers" '
BEGIN {
	n = split(layers, line, "\n")
	for (i = 1; i <= n; i++) {
		if (line[i] !~ /:/)
			continue
		li++
		split(line[i], f, /[: ]+/)
		for (j = 2; j in f; j++) {
			if (f[j] == "")
				continue
			rank[f[j]] = li * 100 + j
			layer[f[j]] = f[1]
		}
	}
}
$1 == "include" {
	# a header of the public API (urt.h) is below every layer
	if ($3 in layer)
		inc[$2, $3] = 1
	next
}
{
	# lib.a:file.c.o:value type symbol (value empty for undefined ones)
	split($1, p, ":")
	obj = p[2]
	sub(/\.(c|S)\.o$/, "", obj)
	seen[obj] = 1
	sym = $NF
	type = $(NF - 1)
	if (sym !~ /^urt/)
		next
	if (type == "U")
		use[obj, sym] = 1
	else if (type ~ /^[TDBR]$/)
		def[sym] = obj
}
END {
	bad = 0
	for (o in seen) {
		if (!(o in rank)) {
			printf "layers: %s is in no layer: add it to tests/layers.sh and the README\n", o
			bad = 1
		}
	}
	for (k in use) {
		split(k, u, SUBSEP)
		from = u[1]
		to = def[u[2]]
		if (to == "" || !(from in rank) || !(to in rank))
			continue
		edges++
		if (rank[to] >= rank[from]) {
			printf "layers: %s (%s) calls %s of %s (%s): not below it\n",
				from, layer[from], u[2], to, layer[to]
			bad = 1
		}
	}
	for (k in inc) {
		split(k, u, SUBSEP)
		from = u[1]
		to = u[2]
		if (!(from in layer)) {
			printf "layers: %s is in no layer: add it to tests/layers.sh and the README\n", from
			bad = 1
			continue
		}
		includes++
		# A file may include its own layer'"'"'s header; a header only lower ones.
		lf = int(rank[from] / 100)
		lt = int(rank[to] / 100)
		if (lt > lf || (lt == lf && from ~ /\.h$/)) {
			printf "layers: %s (%s) includes %s (%s): not below it\n",
				from, layer[from], to, layer[to]
			bad = 1
		}
	}
	if (!edges || !includes) {
		print "layers: no call between files found: is this the library?"
		exit 1
	}
	if (!bad)
		printf "layers: %d calls between files and %d includes, every one downward\n",
			edges, includes
	exit bad
}'
