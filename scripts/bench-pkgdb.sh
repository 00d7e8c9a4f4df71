#!/usr/bin/env bash
# Package handlers, side by side with the package managers' own tools.
#
# Makes three fixture roots holding the same synthetic package set with the
# real tools (dpkg-deb + dpkg --root, rpmbuild + rpm --root with Fedora's
# sqlite layout, bsdtar + pacman --root): PACKAGES packages (default
# 880, this Debian host's count) of FILES files each (default 54), where
# bp-0001 depends on a chain of CLOSURE packages (default 222, libguestfs's
# closure here; every 10th link through a virtual provide, every 25th through
# a file requirement). Then, per root, times our handler (open + closure +
# file list, `examples/pkgdb-timing.rs`) against the tool listing the same
# packages' files (`dpkg-query -L`, `rpm -ql`, `pacman -Qlq`). Prints medians
# and ratios. Every tool must succeed: a fixture maker or a listing that
# fails, a listing too short or a closure of the wrong size stops the bench
# (a failed command is fast, and its time is no measurement). Needs
# dpkg-deb, rpm, rpmbuild, pacman, bsdtar (all in .ci/install-deps).
#
#   RUNS=21 PACKAGES=880 FILES=54 CLOSURE=222 scripts/bench-pkgdb.sh
#
# FIXTURES=DIR keeps the roots in DIR and reuses them on the next run with
# the same PACKAGES, FILES and CLOSURE (making them takes minutes), e.g. to
# time two versions of a handler on the same databases; TIMING=BINARY times
# that build of examples/pkgdb-timing instead of this tree's.
set -euo pipefail

runs=${RUNS:-21}
n=${PACKAGES:-880}
files=${FILES:-54}
closure=${CLOSURE:-222}
here=$(cd "$(dirname "$0")/.." && pwd)
for tool in dpkg-deb dpkg-query rpm rpmbuild pacman bsdtar; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is required (.ci/install-deps)" >&2; exit 2; }
done
[ "$closure" -le "$n" ] || { echo "bench: CLOSURE must not exceed PACKAGES" >&2; exit 2; }

if [ -n "${TIMING:-}" ]; then
    timing=$TIMING
else
    (cd "$here" && cargo build --release --quiet --example pkgdb-timing)
    timing="$here/target/release/examples/pkgdb-timing"
fi
params="$n packages x $files files, closure of $closure"
if [ -n "${FIXTURES:-}" ]; then
    bench=$FIXTURES
    if [ "$(cat "$bench/params" 2>/dev/null)" != "$params" ]; then
        rm -rf "$bench"
        mkdir -p "$bench"
    fi
else
    bench=$(mktemp -d /var/tmp/ga-bench-pkgdb.XXXXXX)
    trap 'rm -rf "$bench"' EXIT
fi
chmod 755 "$bench"

name() { printf 'bp-%04d' "$1"; }
# requirement I FORMAT: what package I requires, if anything: the next link
# of the chain by name, every 10th through its virtual provide, every 25th
# through a file it owns (rpm; dpkg and pacman have no file requirements, so
# they name the package).
requirement() {
    local i=$1 next=$(($1 + 1))
    [ "$i" -lt "$closure" ] || return 0
    if [ $((i % 25)) -eq 0 ] && [ "$2" = rpm ]; then
        echo "/usr/share/bp/$(name "$next")/f1"
    elif [ $((i % 25)) -ne 0 ] && [ $((i % 10)) -eq 0 ]; then
        echo "$(name "$next")-virt"
    else
        name "$next"
        echo
    fi
}
# virtual I: the virtual name package I provides, if any.
virtual() {
    if [ $((($1 - 1) % 10)) -eq 0 ] && [ "$1" -gt 1 ]; then echo "$(name "$1")-virt"; fi
}
# fill DIR I: package I's files under DIR.
fill() {
    local p k
    p=$(name "$2")
    mkdir -p "$1/usr/share/bp/$p"
    for k in $(seq "$files"); do echo "$p $k" >"$1/usr/share/bp/$p/f$k"; done
}
names_in_closure() { for i in $(seq "$closure"); do name "$i"; echo; done; }

ms() { # ms CMD...: wall milliseconds of one run; stops the bench if CMD fails
    local t0 t1
    t0=$EPOCHREALTIME
    "$@" >/dev/null 2>"$bench/stderr" || { echo "bench: failed: $*" >&2; cat "$bench/stderr" >&2; exit 1; }
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", (b-a)*1000}'
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
tool_median() { # tool_median CMD...
    local i
    for i in $(seq "$runs"); do ms "$@"; done | median
}

echo "bench: $params, $runs runs each (fixtures in $bench)" >&2

# --- dpkg -------------------------------------------------------------------
make_dpkg() {
    local root=$bench/dpkg/root debs=$bench/dpkg/debs i p dep virt
    mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$debs"
    : >"$root/var/lib/dpkg/status"
    : >"$root/var/lib/dpkg/available"
    for i in $(seq "$n"); do
        p=$(name "$i")
        local d=$bench/dpkg/src/$p
        mkdir -p "$d/DEBIAN"
        fill "$d" "$i"
        dep=$(requirement "$i" dpkg)
        virt=$(virtual "$i")
        printf 'Package: %s\nVersion: 1.0-1\nArchitecture: all\nMaintainer: bench <bench@example.org>\nDescription: bench fixture\n%s%s' \
            "$p" "${dep:+Depends: $dep$'\n'}" "${virt:+Provides: $virt$'\n'}" >"$d/DEBIAN/control"
        dpkg-deb --root-owner-group -Zgzip -z1 --build "$d" "$debs/$p.deb" >/dev/null
    done
    dpkg --root="$root" --force-depends --force-script-chrootless -i "$debs"/*.deb >/dev/null
}

# --- rpm --------------------------------------------------------------------
make_rpm() {
    local top=$bench/rpm/build root=$bench/rpm/root spec=$bench/rpm/bp.spec i p dep virt
    mkdir -p "$top" "$root/usr/lib/sysimage/rpm" "$root/var/lib"
    ln -s ../../usr/lib/sysimage/rpm "$root/var/lib/rpm"
    {
        printf 'Name: bp\nVersion: 1.0\nRelease: 1\nSummary: bench\nLicense: MIT\nBuildArch: noarch\n'
        printf '%%description\nbench\n'
        for i in $(seq "$n"); do
            p=$(name "$i")
            printf '%%package -n %s\nSummary: %s\n' "$p" "$p"
            dep=$(requirement "$i" rpm)
            virt=$(virtual "$i")
            if [ -n "$dep" ]; then printf 'Requires: %s\n' "$dep"; fi
            if [ -n "$virt" ]; then printf 'Provides: %s\n' "$virt"; fi
            printf '%%description -n %s\n%s\n' "$p" "$p"
        done
        printf '%%install\n'
        printf 'for p in $(seq -f "bp-%%04g" 1 %d); do mkdir -p %%{buildroot}/usr/share/bp/$p; ' "$n"
        printf 'for k in $(seq 1 %d); do echo "$p $k" > %%{buildroot}/usr/share/bp/$p/f$k; done; done\n' "$files"
        for i in $(seq "$n"); do
            printf '%%files -n %s\n/usr/share/bp/%s\n' "$(name "$i")" "$(name "$i")"
        done
    } >"$spec"
    rpmbuild --quiet --define "_topdir $top" --define '_binary_payload w1.gzdio' -bb "$spec" >/dev/null 2>&1
    rpm --root "$root" --dbpath /usr/lib/sysimage/rpm --initdb
    rpm --root "$root" --dbpath /usr/lib/sysimage/rpm -i --nodeps "$top"/RPMS/noarch/*.rpm 2>/dev/null
}

# --- pacman -----------------------------------------------------------------
make_pacman() {
    # Packages are written with bsdtar (.PKGINFO + payload) rather than
    # makepkg: makepkg costs seconds per split package (880 would take an
    # hour here), and the handler reads only what pacman writes into its
    # database, which the real pacman does below. The handler's tests build
    # their fixtures with makepkg.
    local dir=$bench/pacman/build root=$bench/pacman/root i p dep virt
    mkdir -p "$dir" "$root/var/lib/pacman"
    for i in $(seq "$n"); do
        p=$(name "$i")
        local d=$dir/$p
        fill "$d" "$i"
        dep=$(requirement "$i" pacman)
        virt=$(virtual "$i")
        {
            printf 'pkgname = %s\npkgbase = bp\npkgver = 1.0-1\npkgdesc = bench fixture\n' "$p"
            printf 'builddate = 0\npackager = bench\nsize = %d\narch = any\n' "$files"
            if [ -n "$dep" ]; then printf 'depend = %s\n' "$dep"; fi
            if [ -n "$virt" ]; then printf 'provides = %s\n' "$virt"; fi
        } >"$d/.PKGINFO"
        (cd "$d" && bsdtar --uid 0 --gid 0 -czf "$dir/$p-1.0-1-any.pkg.tar.gz" .PKGINFO usr)
    done
    pacman --root "$root" --dbpath "$root/var/lib/pacman" --noconfirm --noscriptlet --nodeps --nodeps \
        --noprogressbar -U "$dir"/*.pkg.tar.gz >/dev/null 2>&1
}

timed() { # timed FN: run FN, say how long it took
    local t0=$EPOCHREALTIME
    "$1"
    echo "bench: $1 took $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.0f", b-a}') s" >&2
}
if [ "$(cat "$bench/params" 2>/dev/null)" != "$params" ]; then
    # Each maker in the background, each waited for by its pid: a bare
    # `wait` returns 0 whatever the makers did.
    pids=()
    for maker in make_dpkg make_rpm make_pacman; do
        timed "$maker" &
        pids+=($!)
    done
    failed=0
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    [ "$failed" = 0 ] || { echo "bench: making a fixture root failed (see above)" >&2; exit 1; }
    echo "$params" >"$bench/params"
fi

mapfile -t members < <(names_in_closure)
[ "${#members[@]}" = "$closure" ] || { echo "bench: ${#members[@]} closure names, not $closure" >&2; exit 1; }
report() { # report TOOL-LABEL ROOT TOOL-CMD...
    local label=$1 root=$2 ours theirs line listed
    shift 2
    line=$(RUNS=$runs "$timing" "$root" "$(name 1)")
    grep -q "closure of $closure packages " <<<"$line" || { echo "bench: wrong closure: $line" >&2; exit 1; }
    listed=$("$@" | wc -l)
    [ "$listed" -ge $((closure * files)) ] || { echo "bench: $label listed $listed lines" >&2; exit 1; }
    ours=$(sed -n 's/.*median \([0-9.]*\) ms.*/\1/p' <<<"$line")
    theirs=$(tool_median "$@")
    printf '%s\n    `%s` listing the same %d packages: median %.1f ms; ours/theirs %.2f\n' \
        "$line" "$label" "$closure" "$theirs" "$(awk -v a="$ours" -v b="$theirs" 'BEGIN {print a/b}')"
}
report "dpkg-query -L" "$bench/dpkg/root" dpkg-query --admindir="$bench/dpkg/root/var/lib/dpkg" -L "${members[@]}"
report "rpm -ql" "$bench/rpm/root" rpm --root "$bench/rpm/root" --dbpath /usr/lib/sysimage/rpm -ql "${members[@]}"
report "pacman -Qlq" "$bench/pacman/root" pacman --root "$bench/pacman/root" --dbpath "$bench/pacman/root/var/lib/pacman" -Qlq "${members[@]}"
