#!/usr/bin/env bash
# A base archive holding a 1 GiB sparse member (GNU tar --sparse, a few bytes
# of data), built with `guestfs-appliance build` and with
# `supermin --build -f ext2` from the same supermin.d (plus `bash`, which
# supermin needs for /usr/lib). Prints, per tool, wall time, peak RSS
# (/usr/bin/time -v), bytes allocated by the root image and the sectors the
# member takes inside it (debugfs), and the ratios ours/supermin. Asserts
# nothing (issue 8, item 5).
#
#   RUNS=3 BENCH_DIR=/var/tmp/ga-bench-sparse scripts/bench-sparse-member.sh
set -euo pipefail

runs=${RUNS:-3}
bench=${BENCH_DIR:-/var/tmp/ga-bench-sparse.$$}
here=$(cd "$(dirname "$0")/.." && pwd)
for tool in supermin debugfs /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 2; }
done

(cd "$here" && cargo build --release --quiet --bins)
ga="$here/target/x86_64-unknown-linux-gnu/release/guestfs-appliance"
mkdir -p "$bench/src" "$bench/in"
trap 'rm -rf "$bench"' EXIT

truncate -s 1G "$bench/src/big"
printf 'middle' | dd of="$bench/src/big" bs=1 seek=$((512 << 20)) conv=notrunc status=none
tar -C "$bench/src" --sparse --format=gnu -czf "$bench/in/base.tar.gz" big
echo bash >"$bench/in/packages"

# measure NAME CMD...: one run; appends "wall rss_kb" to $bench/NAME.
measure() {
    local name=$1
    shift
    /usr/bin/time -v -o "$bench/time.txt" "$@" >/dev/null 2>&1
    awk -F': ' '/Elapsed/ {split($2, t, ":"); w = t[1] * 60 + t[2]} /Maximum resident/ {r = $2}
        END {print w, r}' "$bench/time.txt" >>"$bench/$name"
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

: >"$bench/ours"; : >"$bench/sm"
for _ in $(seq "$runs"); do
    rm -rf "$bench/out-ours" "$bench/out-sm"
    measure ours "$ga" build -q --input "$bench/in" "$bench/out-ours"
    measure sm supermin --build --copy-kernel -f ext2 -o "$bench/out-sm" "$bench/in"
done

report() { # report NAME DIR
    local wall rss alloc sectors
    wall=$(cut -d' ' -f1 "$bench/$1" | median)
    rss=$(cut -d' ' -f2 "$bench/$1" | median)
    alloc=$(($(stat -c %b "$2/root") * 512))
    sectors=$(debugfs -R 'stat /big' "$2/root" 2>/dev/null | sed -n 's/.*Blockcount: \([0-9]*\).*/\1/p')
    echo "$1 $wall $rss $alloc $sectors"
}
read -r _ ow orss oalloc osec < <(report ours "$bench/out-ours")
read -r _ sw srss salloc ssec < <(report sm "$bench/out-sm")
printf '%-10s %8s %12s %16s %14s\n' tool wall_s peak_rss_kb root_alloc_bytes member_sectors
printf '%-10s %8s %12s %16s %14s\n' ours "$ow" "$orss" "$oalloc" "$osec"
printf '%-10s %8s %12s %16s %14s\n' supermin "$sw" "$srss" "$salloc" "$ssec"
awk -v a="$ow" -v b="$sw" -v c="$orss" -v d="$srss" -v e="$oalloc" -v f="$salloc" \
    'BEGIN {printf "ratio ours/supermin: wall %.2fx, peak RSS %.2fx, root allocated %.2fx\n", a/b, c/d, e/f}'
