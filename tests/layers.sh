#!/bin/bash
# The library's layers, checked on its objects: each file may use what the
# files of lower layers define, and what the files before it in its own
# layer define; never a file above it. Calls go down (task -> operation ->
# ring -> kernel); completions come back up through callbacks (an op's
# done(), a closable's close(), a wait's interrupt()), which are pointers
# and not symbols, so they are not edges here.
#
# usage: layers.sh NM STATIC_LIBRARY
# Fails, naming the call, on an upward call or a file no layer lists.
set -euo pipefail
nm=$1
lib=$2

# Bottom first. Keep in step with the README's architecture section.
layers='
base:  clock version
ring:  ring
pool:  pool
task:  switch_x86_64 switch_aarch64 ctx task
timer: timer
sched: sched
wait:  wait spawn sync
ops:   op file net acceptor offload
loop:  loop
'

"$nm" -A "$lib" | awk -v layers="$layers" '
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
	if (!edges) {
		print "layers: no call between files found: is this the library?"
		exit 1
	}
	if (!bad)
		printf "layers: %d calls between files, every one downward\n", edges
	exit bad
}'
