#!/bin/sh
# Fork at density: `paddock fork SNAP --count K` for K = 1, 10 and 50 (wall clock of the whole
# command), then each sandbox's PSS (its share of the memory file's pages and of the VMM's own,
# from /proc/PID/smaps_rollup) and RSS, in one lab boot.
# POOL=1: each fork claims K warm VMMs, filled (`paddock pool fill K`) before it, untimed.
# Lab:    cargo xtask lab -- sh -c "$(cat benches/scripts/fork-density.sh)"
# Native: sh benches/scripts/fork-density.sh   (paddock on PATH, default artifacts built)
set -e
export XDG_STATE_HOME="${XDG_STATE_HOME:-/tmp/paddock-fork-density}"
snap="$XDG_STATE_HOME/snap"
mkdir -p "$XDG_STATE_HOME"
# Milliseconds of the monotonic clock (busybox's date has no %N; the lab runs as root).
ms() { awk '/^now at/ { print int($3 / 1000000); exit }' /proc/timer_list; }
paddock start --name base --profile "${PROFILE:-minimal}" >/dev/null
paddock snapshot base "$snap" --stop >/dev/null
# The first restore records the snapshot's working set.
paddock restore "$snap" --name warm >/dev/null
paddock rm --force warm >/dev/null
for k in ${COUNTS:-1 10 50}; do
  if [ -n "$POOL" ]; then paddock pool fill "$k" >/dev/null; fi
  t0=$(ms)
  paddock fork "$snap" --count "$k" --prefix "f$k" >/dev/null
  t1=$(ms)
  pss=0; rss=0
  for pid in $(paddock ls --json | grep -o '"pid": *[0-9]*' | tr -dc '0-9\n'); do
    [ -r /proc/$pid/smaps_rollup ] || continue  # a stopped sandbox (base)
    p=$(awk '/^Pss:/ {print $2}' /proc/$pid/smaps_rollup); r=$(awk '/^Rss:/ {print $2}' /proc/$pid/smaps_rollup)
    pss=$((pss + p)); rss=$((rss + r))
  done
  echo "fork of $k: $((t1 - t0)) ms wall; per sandbox: PSS $((pss / k)) KiB, RSS $((rss / k)) KiB"
  for i in $(seq 0 $((k - 1))); do paddock rm --force "f$k-$i" >/dev/null; done
done
paddock rm --force base >/dev/null 2>&1 || true
if [ -n "$POOL" ]; then paddock pool drain; fi
