#!/usr/bin/env bash
# scripts/watch-idle.sh [SECONDS]: what an idle `guestfs-appliance watch`
# costs. Builds the built-in minimal appliance into a scratch directory,
# starts `watch` on it, lets it sit for SECONDS (default 60) and prints the
# CPU time it used meanwhile (utime+stime from /proc/PID/stat, after the
# start-up check), its wakeups (voluntary context switches) and its resident
# memory (VmRSS, VmHWM). Then SIGTERM, and the exit status.
set -euo pipefail
secs=${1:-60}
top=$(cd "$(dirname "$0")/.." && pwd)
ga=${GA:-$top/target/release/guestfs-appliance}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$ga" build -q --minimal --size 1G "$tmp/appliance"
"$ga" watch "$tmp/appliance" 2>"$tmp/watch.log" &
pid=$!
sleep 5   # the start-up check
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
switches() { cat /proc/"$pid"/task/*/status | awk '/^voluntary_ctxt_switches/ {n += $2} END {print n}'; }
t0=$(ticks); s0=$(switches)
sleep "$secs"
t1=$(ticks); s1=$(switches)
hz=$(getconf CLK_TCK)
rss=$(awk '/^VmRSS/ {print $2, $3}' "/proc/$pid/status")
hwm=$(awk '/^VmHWM/ {print $2, $3}' "/proc/$pid/status")
threads=$(ls "/proc/$pid/task" | wc -l)
echo "idle ${secs} s: cpu $(( (t1 - t0) * 1000 / hz )) ms, voluntary context switches $((s1 - s0)) (all ${threads} threads)"
echo "VmRSS $rss, VmHWM $hwm"
kill -TERM "$pid"
wait "$pid" && echo "SIGTERM: exit 0" || echo "SIGTERM: exit $?"
tail -n 2 "$tmp/watch.log"
