#!/usr/bin/env bash
# Freshness check, side by side: `guestfs-appliance check` answered from the
# stat stamp; after the package database was touched (stamp invalid, file
# digests remembered: the package database is parsed again, nothing is
# hashed); by full recomputation with the stamp and the remembered digests
# removed; and `supermin --build --if-newer` on an up-to-date output
# (outputs touched, as libguestfs does after each build). Prints medians and
# ratios; asserts nothing.
#
# The package database is "touched" with `touch -r DB DB`: its ctime moves
# (which is what invalidates the stamp) but not its mtime, so apt and dpkg
# notice nothing. DB is the first of dpkg's status, rpm's rpmdb.sqlite or
# Packages, pacman's local/ found under ROOT, or PKGDB.
#
#   RUNS=21 BENCH_DIR=/var/tmp/ga-bench-check scripts/bench-check.sh
#
# ROOT=DIR checks (and builds) with --root DIR; SUPERMIN_D picks the
# inputs; SUPERMIN_KERNEL/SUPERMIN_MODULES, if set, are honoured by both
# tools; GA=BINARY times that binary instead of building this tree's.
# Without supermin installed its row is left out.
set -euo pipefail

runs=${RUNS:-21}
bench=${BENCH_DIR:-/var/tmp/ga-bench-check.$$}
supermin_d=${SUPERMIN_D:-/usr/lib/x86_64-linux-gnu/guestfs/supermin.d}
root=${ROOT:-/}
here=$(cd "$(dirname "$0")/.." && pwd)
have_supermin=yes
command -v supermin >/dev/null || { have_supermin=; echo "bench: supermin not installed; its row is left out" >&2; }
db=${PKGDB:-}
if [ -z "$db" ]; then
    for candidate in var/lib/dpkg/status var/lib/rpm/rpmdb.sqlite var/lib/rpm/Packages var/lib/pacman/local; do
        if [ -e "$root/$candidate" ]; then db="$root/$candidate"; break; fi
    done
fi
[ -n "$db" ] || { echo "bench: no package database under $root (set PKGDB)" >&2; exit 2; }

if [ -n "${GA:-}" ]; then
    ga=$GA # another build of the tool, for before/after comparisons
else
    (cd "$here" && cargo build --release --quiet --bins)
    ga="$here/target/release/guestfs-appliance"
fi
mkdir -p "$bench"
trap 'rm -rf "$bench"' EXIT
rootargs=()
[ "$root" = / ] || rootargs=(--root "$root")

"$ga" build -q "${rootargs[@]}" --input "$supermin_d" "$bench/ours"
[ -z "$have_supermin" ] || supermin --build --copy-kernel -f ext2 -o "$bench/sm" "$supermin_d"

ms() { # ms CMD...: wall milliseconds of one run
    local t0 t1
    t0=$EPOCHREALTIME
    "$@" >/dev/null 2>&1 || true
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", (b-a)*1000}'
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
check() { "$ga" check "${rootargs[@]}" --input "$supermin_d" "$bench/ours"; }

: >"$bench/stamp"; : >"$bench/touch"; : >"$bench/full"; : >"$bench/sm.t"
check || { echo "bench: appliance not fresh" >&2; exit 2; }
for i in $(seq "$runs"); do
    ms check >>"$bench/stamp"
    touch -r "$db" "$db"
    ms check >>"$bench/touch"
    rm -f "$bench/.ours.stamp" "$bench/.ours.hashes"
    ms check >>"$bench/full"
    if [ -n "$have_supermin" ]; then
        touch "$bench/sm" "$bench/sm/kernel" "$bench/sm/initrd" "$bench/sm/root"
        ms supermin --build --if-newer --copy-kernel -f ext2 -o "$bench/sm" "$supermin_d" >>"$bench/sm.t"
    fi
done
s=$(median <"$bench/stamp"); t=$(median <"$bench/touch"); f=$(median <"$bench/full")
m=$( [ -n "$have_supermin" ] && median <"$bench/sm.t" || echo 0)
awk -v s="$s" -v t="$t" -v f="$f" -v m="$m" -v n="$runs" -v db="$db" '
function row(name, v) {
    if (m > 0) printf "%-42s median %7.2f ms   ratio to supermin %.2fx\n", name, v, v/m
    else printf "%-42s median %7.2f ms\n", name, v
}
BEGIN {
    printf "runs: %d each; package database %s\n", n, db
    row("check (stat stamp)", s)
    row("check after touch of the package database", t)
    row("check (full recomputation, cold)", f)
    if (m > 0) printf "%-42s median %7.2f ms\n", "supermin --if-newer", m
}'
