#!/usr/bin/env bash
# Install urt and build programs against the installed copy, as a user would:
#   examples/consumer/run.sh [PREFIX]
# configures and builds urt from this checkout in a temporary directory,
# installs it with `cmake --install --prefix PREFIX` (PREFIX: empty or absent;
# default: a temporary directory), checks the installed files, then builds
# prog.c three ways and runs each program:
#   cmake/      find_package(urt) and urt::urt (and urt::urt_static)
#   pkgconfig/  pkg-config --cflags --libs urt (and --static), from a Makefile
#   a plain line: cc prog.c -I$PREFIX/include -L$LIBDIR -lurt -luring -Wl,-rpath,$LIBDIR
# Needs cmake, pkg-config, make, a C compiler and liburing-dev; no network.
# The temporary directory is removed on success and kept on failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
if [ $# -gt 1 ] || { [ $# = 1 ] && [ -e "$1" ] && [ -n "$(ls -A "$1")" ]; }; then
	echo "usage: run.sh [PREFIX], PREFIX empty or absent" >&2
	exit 2
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/urt-consumer.XXXXXX")
ok=0
finish() {
	if [ "$ok" = 1 ]; then
		rm -rf "$work"
	else
		echo "run.sh: FAILED; the build and install are left in $work" >&2
	fi
}
trap finish EXIT
step() { printf '\n== %s\n' "$*"; }
die() { echo "run.sh: $*" >&2; exit 1; }

prefix=${1:-$work/prefix}
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
cc=${CC:-cc}
jobs=$(nproc 2>/dev/null || echo 2)
# The version the header declares; everything installed must agree.
ver=$(sed -n 's/^#define URT_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' "$src/include/urt.h" |
	paste -sd. -)
major=${ver%%.*}
[[ $ver =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "no URT_VERSION_* in include/urt.h"

step "configure and build urt $ver from $src"
# The configure-time prefix is a decoy: the install goes to --prefix, and
# nothing installed may name the decoy.
decoy=$work/configure-prefix
cmake -S "$src" -B "$work/urt-build" -DCMAKE_BUILD_TYPE=Release -DURT_BUILD_TESTS=OFF \
	-DCMAKE_INSTALL_PREFIX="$decoy" -DCMAKE_C_COMPILER="$cc" >"$work/configure.log" ||
	{ cat "$work/configure.log"; die "configure failed"; }
cmake --build "$work/urt-build" -j "$jobs" >"$work/build.log" ||
	{ cat "$work/build.log"; die "build failed"; }

step "cmake --install --prefix $prefix"
cmake --install "$work/urt-build" --prefix "$prefix"
[ ! -e "$decoy" ] || die "something was installed to the configure-time prefix"
if grep -rlF "$decoy" "$prefix"; then
	die "the files above name the configure-time prefix $decoy"
fi

step "installed files"
pc=$(find "$prefix" -path '*/pkgconfig/urt.pc' | head -n 1)
[ -n "$pc" ] || die "no urt.pc installed"
libdir=$(dirname "$(dirname "$pc")")
for f in "$prefix/include/urt.h" "$libdir/liburt.so.$ver" "$libdir/liburt.a" \
	"$libdir/cmake/urt/urtConfig.cmake" "$libdir/cmake/urt/urtConfigVersion.cmake" \
	"$libdir/cmake/urt/urtTargets.cmake" "$prefix/bin/urt-latency-probe"; do
	[ -f "$f" ] || die "missing $f"
	echo "  ${f#"$prefix"/}"
done
[ "$(readlink "$libdir/liburt.so.$major")" = "liburt.so.$ver" ] ||
	die "liburt.so.$major is not a link to liburt.so.$ver"
[ "$(readlink "$libdir/liburt.so")" = "liburt.so.$major" ] ||
	die "liburt.so is not a link to liburt.so.$major"
echo "  liburt.so -> liburt.so.$major -> liburt.so.$ver"
soname=$(readelf -d "$libdir/liburt.so.$ver" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "liburt.so.$major" ] || die "SONAME is '$soname', not liburt.so.$major"
echo "  SONAME $soname"
cat "$pc"
grep -q '^Requires.private:.*liburing' "$pc" || die "urt.pc: liburing is not in Requires.private"
# The installed probe finds the installed library by itself (its RPATH).
"$prefix/bin/urt-latency-probe" --help >/dev/null || die "the installed probe does not run"
echo "  bin/urt-latency-probe --help: ok"

# Each program must load liburt.so from this prefix (or no liburt.so at all
# when static) and then run.
run() { # run PROGRAM shared|static
	local deps
	deps=$(ldd "$1") || die "ldd $1 failed"
	if [ "$2" = shared ]; then
		grep -q "liburt\.so\.$major => $libdir/" <<<"$deps" ||
			die "$1 does not load liburt.so.$major from $libdir:"$'\n'"$deps"
	elif grep -q liburt <<<"$deps"; then
		die "$1 is linked statically but needs liburt.so:"$'\n'"$deps"
	fi
	echo "+ $1"
	"$1" || die "$1 failed"
}

step "CMake consumer: find_package(urt $ver), urt::urt and urt::urt_static"
cmake -S "$here/cmake" -B "$work/cmake-consumer" -DCMAKE_PREFIX_PATH="$prefix" \
	-DURT_CONSUMER_VERSION="$ver" -DCMAKE_C_COMPILER="$cc" >"$work/consumer.log" ||
	{ cat "$work/consumer.log"; die "configuring the CMake consumer failed"; }
urt_dir=$(sed -n 's/^urt_DIR:PATH=//p' "$work/cmake-consumer/CMakeCache.txt")
[ "$urt_dir" = "$libdir/cmake/urt" ] || die "find_package(urt) found $urt_dir, not $libdir/cmake/urt"
echo "urt_DIR=$urt_dir"
cmake --build "$work/cmake-consumer" -j "$jobs"
run "$work/cmake-consumer/urt_consumer" shared
run "$work/cmake-consumer/urt_consumer_static" static

step "pkg-config consumer: make with PKG_CONFIG_PATH=$libdir/pkgconfig"
export PKG_CONFIG_PATH="$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
[ "$(pkg-config --modversion urt)" = "$ver" ] || die "pkg-config: urt is not version $ver"
[ "$(pkg-config --variable=prefix urt)" = "$prefix" ] || die "pkg-config: urt's prefix is not $prefix"
echo "pkg-config --cflags --libs urt: $(pkg-config --cflags --libs urt)"
echo "pkg-config --static --libs urt: $(pkg-config --static --libs urt)"
mkdir -p "$work/pc-consumer"
make -C "$here/pkgconfig" OUT="$work/pc-consumer" CC="$cc"
run "$work/pc-consumer/urt_consumer" shared
run "$work/pc-consumer/urt_consumer_static" static

step "a plain compiler line"
mkdir -p "$work/plain"
(
	set -x
	"$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror "$here/prog.c" -o "$work/plain/urt_consumer" \
		-I"$prefix/include" -L"$libdir" -lurt -luring -Wl,-rpath,"$libdir"
)
run "$work/plain/urt_consumer" shared

if command -v c++ >/dev/null; then
	step "the header in C++"
	echo '#include <urt.h>
int main() { return urt_version() == nullptr; }' >"$work/plain/cxx.cc"
	(set -x; c++ -Wall -Wextra -Werror "$work/plain/cxx.cc" -o "$work/plain/cxx" \
		-I"$prefix/include" -L"$libdir" -lurt -Wl,-rpath,"$libdir")
	"$work/plain/cxx" || die "the C++ program failed"
fi

ok=1
step "run.sh: urt $ver installs, and programs build and run against it three ways"
