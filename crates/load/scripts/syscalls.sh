#!/usr/bin/env bash
# System calls, context switches and wake-ups of ctid (or of the floor relay) per switch event,
# under ctid-load (docs/performance.md, "System calls and wake-ups"). Needs Linux perf
# (Debian: linux-perf) with tracepoints; run as root.
#
#   crates/load/scripts/syscalls.sh [--floor] [--ctid BIN] [ctid-load arguments...]
#
# It starts ctid-load (release build, next to this script's workspace) with the arguments (without
# --dns: 10,000 DNs, 1,000 clients, 3 watchers, 5,000 events/s, 30 s), waits for the load to run for
# 5 s, counts for 15 s with `perf stat` on the server's process, and prints each count per switch
# event (the run's switch events/s, as ctid-load reports it at the end, times the 15 s: the load
# is steady).
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
load="$root/target/release/ctid-load"
[ -x "$load" ] || { echo "build it: cargo build --release --bin ctid --bin ctid-load" >&2; exit 2; }
args=("$@")
# The load unless the arguments give their own (--dns …); --ctid and --floor alone keep it.
if ! printf '%s\n' "${args[@]}" | grep -qx -- --dns; then
  args+=(--dns 10000 --clients 1000 --watchers-per-dn 3 --rate 5000 --duration 30)
fi
want=floor
pattern="ctid-load --relay"
if ! printf '%s\n' "${args[@]}" | grep -qx -- --floor; then
  want=ctid
  pattern="--config /tmp/ctid-load-"
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"$load" "${args[@]}" >"$log" 2>&1 &
lpid=$!
pid=""
for _ in $(seq 1 600); do
  if grep -q "t=  5s" "$log"; then
    pid="$(pgrep -f -- "$pattern" | head -n1 || true)"
    break
  fi
  kill -0 "$lpid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.5
done
[ -n "$pid" ] || { echo "the $want process was not found" >&2; kill "$lpid"; exit 1; }
events='raw_syscalls:sys_enter,syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,context-switches,sched:sched_wakeup'
stat="$(perf stat -x, -e "$events" -p "$pid" -- sleep 15 2>&1 >/dev/null)"
wait "$lpid" || true
rate="$(grep -m1 '^  switch events/s' "$log" | awk '{print $NF}')"
n="$(awk -v r="$rate" 'BEGIN { printf "%d", r * 15 }')"
echo "$want: $rate switch events/s, $n in the 15 s counted (pid $pid)"
echo "$stat" | awk -F, -v n="$n" '$1 ~ /^[0-9]+$/ && n > 0 { printf "  %-32s %10d  %6.2f per switch event\n", $3, $1, $1 / n }'
grep -E '"cpu_us_per_switch_event"|CPU per switch event' "$log" | tail -n1 || true
