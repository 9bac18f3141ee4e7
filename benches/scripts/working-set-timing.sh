#!/bin/sh
# What populating a snapshot's working set before the vCPUs run saves: `paddock start` (a
# template restore) with the record (default) and without (PADDOCK_WORKING_SET=off), with the
# memory file in the page cache (warm) and dropped from it (cold, as after a reboot or under
# memory pressure), in one lab boot. Per run: ready time as the VMM measured it, the VMM's minor
# faults up to ready, pages populated, and the first `exec true` after it (wall clock).
# Lab:    cargo xtask lab -- sh -c "$(cat benches/scripts/working-set-timing.sh)"
# Native: sh benches/scripts/working-set-timing.sh   (paddock on PATH, as root for cold runs)
set -e
export XDG_STATE_HOME="${XDG_STATE_HOME:-/tmp/paddock-working-set-timing}"
mkdir -p "$XDG_STATE_HOME"
field() { grep -o "\"$1\":[^,}]*" | head -1 | cut -d: -f2; }
# Microseconds of the monotonic clock (busybox's date has no %N; the lab runs as root).
us() { awk '/^now at/ { print int($3 / 1000); exit }' /proc/timer_list; }
for profile in ${PROFILES:-minimal agent}; do
  # The first start builds the template if needed; the first restore records its working set.
  paddock start --name first --profile "$profile" >/dev/null
  paddock rm --force first >/dev/null
  for i in $(seq 1 "${RUNS:-5}"); do
    for cache in warm cold; do
      for mode in on off; do
        if [ "$cache" = cold ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi
        PADDOCK_WORKING_SET=$mode paddock start --name r --profile "$profile" >/dev/null
        info=$(paddock ls --json)
        t0=$(us); paddock exec r -- true; t1=$(us)
        echo "$profile $cache $mode ready_ms=$(echo "$info" | field ready_ms)" \
          "minor_faults=$(echo "$info" | field minor_faults)" \
          "prefetched_pages=$(echo "$info" | field prefetched_pages)" \
          "first_exec_us=$((t1 - t0))"
        paddock rm --force r >/dev/null
      done
    done
  done
done
