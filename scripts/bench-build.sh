#!/usr/bin/env bash
# Side-by-side benchmark: guestfs-appliance against supermin and
# libguestfs-make-fixed-appliance on this machine, in one run.
#
# Prints medians of wall time and peak RSS for each tool and the ratio
# ours/theirs. Runs alternate (ours, theirs, ours, ...) so drift in the page
# cache or machine load hits both sides alike. Nothing here asserts a time:
# read the ratios against the targets in the README.
#
#   RUNS=5 XZ_RUNS=5 BENCH_DIR=/var/tmp/ga-bench scripts/bench-build.sh [build|mfa|xz|all]
#
# BENCH_DIR must be on the filesystem you care about (default /var/tmp, the
# usual libguestfs cache disk); it is removed at the end.
set -euo pipefail

what=${1:-all}
runs=${RUNS:-5}
xz_runs=${XZ_RUNS:-$runs}
bench=${BENCH_DIR:-/var/tmp/ga-bench.$$}
supermin_d=${SUPERMIN_D:-/usr/lib/x86_64-linux-gnu/guestfs/supermin.d}
here=$(cd "$(dirname "$0")/.." && pwd)

for tool in supermin /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is required (apt-get install supermin time)" >&2; exit 2; }
done
[ -d "$supermin_d" ] || { echo "bench: $supermin_d not found (apt-get install libguestfs0)" >&2; exit 2; }

echo "bench: building release binaries" >&2
(cd "$here" && cargo build --release --quiet --bins)
bindir="$here/target/release"
ga="$bindir/guestfs-appliance"
mfa="$bindir/make-fixed-appliance"

mkdir -p "$bench"
trap 'rm -rf "$bench"' EXIT
results="$bench/results"
: >"$results"

# measure LABEL CMD...: run once, append "LABEL seconds maxrss_kib" to results.
measure() {
    local label=$1; shift
    local t="$bench/time.out"
    if ! /usr/bin/time -f '%e %M' -o "$t" "$@" >"$bench/cmd.out" 2>&1; then
        echo "bench: $label failed:" >&2
        tail -20 "$bench/cmd.out" >&2
        exit 2
    fi
    echo "$label $(cat "$t")" >>"$results"
    echo "bench: $label $(cat "$t" | awk '{printf "%.2f s, %.0f MiB", $1, $2/1024}')" >&2
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

report() { # report OURS THEIRS
    local o=$1 s=$2
    local ot os orss srss
    ot=$(awk -v l="$o" '$1==l {print $2}' "$results" | median)
    os=$(awk -v l="$s" '$1==l {print $2}' "$results" | median)
    orss=$(awk -v l="$o" '$1==l {print $3}' "$results" | median)
    srss=$(awk -v l="$s" '$1==l {print $3}' "$results" | median)
    awk -v o="$o" -v s="$s" -v ot="$ot" -v st="$os" -v orss="$orss" -v srss="$srss" 'BEGIN {
        printf "%-28s median wall %8.2f s   peak RSS %7.1f MiB\n", o, ot, orss/1024
        printf "%-28s median wall %8.2f s   peak RSS %7.1f MiB\n", s, st, srss/1024
        printf "%-28s wall %.3fx   RSS %.3fx\n\n", "ratio ours/theirs", ot/st, orss/srss
    }'
}

if [ "$what" = build ] || [ "$what" = all ]; then
    echo "bench: build, $runs runs each, into $bench" >&2
    for i in $(seq "$runs"); do
        rm -rf "$bench/ours" "$bench/sm"
        measure ours-build "$ga" build -q --input "$supermin_d" "$bench/ours"
        measure supermin-build supermin --build --copy-kernel -f ext2 -o "$bench/sm" "$supermin_d"
    done
    rm -rf "$bench/ours" "$bench/sm"
fi

if [ "$what" = mfa ] || [ "$what" = all ]; then
    echo "bench: make-fixed-appliance, $runs runs each" >&2
    export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg
    for i in $(seq "$runs"); do
        rm -rf "$bench/ours-mfa" "$bench/lg-mfa"
        measure ours-make-fixed "$mfa" -q "$bench/ours-mfa"
        measure libguestfs-make-fixed libguestfs-make-fixed-appliance "$bench/lg-mfa"
    done
    rm -rf "$bench/ours-mfa" "$bench/lg-mfa"
fi

if [ "$what" = xz ] || [ "$what" = all ]; then
    echo "bench: --xz, $xz_runs runs each (libguestfs's takes minutes per run)" >&2
    export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg
    mkdir -p "$bench/xz-ours" "$bench/xz-lg"
    for i in $(seq "$xz_runs"); do
        rm -f "$bench"/xz-ours/*.tar.xz "$bench"/xz-lg/*.tar.xz
        measure ours-xz sh -c "cd '$bench/xz-ours' && '$mfa' -q --xz"
        measure libguestfs-xz sh -c "cd '$bench/xz-lg' && libguestfs-make-fixed-appliance --xz"
    done
    ls -l "$bench"/xz-ours/*.tar.xz "$bench"/xz-lg/*.tar.xz >&2
fi

echo
case $what in
    build) report ours-build supermin-build ;;
    mfa) report ours-make-fixed libguestfs-make-fixed ;;
    xz) report ours-xz libguestfs-xz ;;
    all) report ours-build supermin-build; report ours-make-fixed libguestfs-make-fixed; report ours-xz libguestfs-xz ;;
esac
