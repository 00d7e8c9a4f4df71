#!/usr/bin/env bash
# Freshness check, side by side: `guestfs-appliance check` (answered from the
# stat stamp, and by full recomputation with the stamp removed) against
# `supermin --build --if-newer` on an up-to-date output (outputs touched, as
# libguestfs does after each build). Prints medians and ratios; asserts
# nothing.
#
#   RUNS=21 BENCH_DIR=/var/tmp/ga-bench-check scripts/bench-check.sh
set -euo pipefail

runs=${RUNS:-21}
bench=${BENCH_DIR:-/var/tmp/ga-bench-check.$$}
supermin_d=${SUPERMIN_D:-/usr/lib/x86_64-linux-gnu/guestfs/supermin.d}
here=$(cd "$(dirname "$0")/.." && pwd)
command -v supermin >/dev/null || { echo "bench: supermin is required" >&2; exit 2; }

(cd "$here" && cargo build --release --quiet --bins)
ga="$here/target/release/guestfs-appliance"
mkdir -p "$bench"
trap 'rm -rf "$bench"' EXIT

"$ga" build -q --input "$supermin_d" "$bench/ours"
supermin --build --copy-kernel -f ext2 -o "$bench/sm" "$supermin_d"

ms() { # ms CMD...: wall milliseconds of one run
    local t0 t1
    t0=$EPOCHREALTIME
    "$@" >/dev/null 2>&1 || true
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", (b-a)*1000}'
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

: >"$bench/stamp"; : >"$bench/full"; : >"$bench/sm.t"
"$ga" check --input "$supermin_d" "$bench/ours" || { echo "bench: appliance not fresh" >&2; exit 2; }
for i in $(seq "$runs"); do
    ms "$ga" check --input "$supermin_d" "$bench/ours" >>"$bench/stamp"
    rm -f "$bench/.ours.stamp"
    ms "$ga" check --input "$supermin_d" "$bench/ours" >>"$bench/full"
    touch "$bench/sm" "$bench/sm/kernel" "$bench/sm/initrd" "$bench/sm/root"
    ms supermin --build --if-newer --copy-kernel -f ext2 -o "$bench/sm" "$supermin_d" >>"$bench/sm.t"
done
s=$(median <"$bench/stamp"); f=$(median <"$bench/full"); m=$(median <"$bench/sm.t")
awk -v s="$s" -v f="$f" -v m="$m" -v n="$runs" 'BEGIN {
    printf "runs: %d each\n", n
    printf "check (stat stamp)          median %7.2f ms   ratio to supermin %.2fx\n", s, s/m
    printf "check (full recomputation)  median %7.2f ms   ratio to supermin %.2fx\n", f, f/m
    printf "supermin --if-newer         median %7.2f ms\n", m
}'
