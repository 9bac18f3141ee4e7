#!/bin/sh
# What keeping guest-init's link across snapshots saves (issue 12 item 1), in one lab boot: two
# snapshots of the same booted guest, one taken by a VMM that keeps the link (the default) and
# one by a VMM started with PADDOCK_KEEP_GUEST_LINK=off (guest-init then connects again after
# every restore and reset, as before). Per run: the restore's and the reset's `guest answered`
# span and their whole wall clock as the CLI reports them (`--timings --json`), alternating the
# two snapshots so drift in the lab hits both alike.
# Lab:    cargo xtask lab -- sh -c "$(cat benches/scripts/guest-link-timing.sh)"
# Native: sh benches/scripts/guest-link-timing.sh   (paddock on PATH)
set -e
export XDG_STATE_HOME="${XDG_STATE_HOME:-/tmp/paddock-guest-link-timing}"
mkdir -p "$XDG_STATE_HOME"
dir="${SNAPSHOTS:-/tmp/paddock-guest-link-snapshots}"
rm -rf "$dir"
mkdir -p "$dir"
# The answering span of a report, whichever name it has, and the whole wall clock.
# (Reports may be pretty-printed: whitespace goes first.)
flat() { tr -d ' \n' | tr '{' '\n'; }
guest_ms() { flat | grep '"span":"guest' | grep -o '"ms":[0-9.]*' | cut -d: -f2; }
wall_ms() { flat | grep -o '"wall_ms":[0-9.]*' | cut -d: -f2; }
for mode in on off; do
  PADDOCK_KEEP_GUEST_LINK=$mode paddock start --cold-boot --name "base-$mode" \
    --profile "${PROFILE:-minimal}" >/dev/null
  paddock snapshot "base-$mode" "$dir/$mode" >/dev/null
  paddock rm --force "base-$mode" >/dev/null
  # The first restore records the working set; not measured.
  paddock restore "$dir/$mode" --name warmup >/dev/null
  paddock rm --force warmup >/dev/null
done
for i in $(seq 1 "${RUNS:-10}"); do
  for mode in on off; do
    restore=$(paddock restore "$dir/$mode" --name r --timings --json)
    reset=$(paddock reset r --timings --json)
    echo "kept=$mode restore_guest_ms=$(echo "$restore" | guest_ms)" \
      "restore_wall_ms=$(echo "$restore" | wall_ms)" \
      "reset_guest_ms=$(echo "$reset" | guest_ms)" \
      "reset_wall_ms=$(echo "$reset" | wall_ms)" \
      "reset_span=$(echo "$reset" | flat | grep -o '"span":"guest[^"]*"' | cut -d'"' -f4)"
    paddock rm --force r >/dev/null
  done
done
