#!/bin/sh
# Whether a reset's cost follows the pages dirtied rather than the guest's size (issue 12 item
# 4): resets in place with nothing dirtied of a 256 MiB and a 4 GiB guest (minimal profile, one
# lab boot), alternating the two. Per reset: the VMM's `memory` span (finding and dropping the
# written pages), its whole part (every span but `guest answered`) and the CLI's wall clock.
# Lab:    cargo xtask lab -- sh -c "$(cat benches/scripts/reset-size.sh)"
# Native: sh benches/scripts/reset-size.sh   (paddock on PATH)
set -e
export XDG_STATE_HOME="${XDG_STATE_HOME:-/tmp/paddock-reset-size}"
mkdir -p "$XDG_STATE_HOME"
flat() { tr -d ' \n' | tr '{' '\n'; }
span_ms() { flat | grep "\"span\":\"$1\"" | grep -o '"ms":[0-9.]*' | cut -d: -f2; }
vmm_ms() { flat | grep '"span":' | grep -v '"span":"guest' | grep -o '"ms":[0-9.]*' | cut -d: -f2 \
  | awk '{ t += $1 } END { printf "%.1f", t }'; }
wall_ms() { flat | grep -o '"wall_ms":[0-9.]*' | cut -d: -f2; }
for mib in ${SIZES:-256 4096}; do
  paddock start --name "g$mib" --memory "$mib" --profile minimal >/dev/null
  paddock snapshot "g$mib" "$XDG_STATE_HOME/snap-$mib" >/dev/null
  paddock reset "g$mib" >/dev/null
done
for i in $(seq 1 "${RUNS:-10}"); do
  for mib in ${SIZES:-256 4096}; do
    report=$(paddock reset "g$mib" --timings --json)
    echo "guest_mib=$mib memory_ms=$(echo "$report" | span_ms memory)" \
      "vmm_ms=$(echo "$report" | vmm_ms) wall_ms=$(echo "$report" | wall_ms)"
  done
done
for mib in ${SIZES:-256 4096}; do paddock rm --force "g$mib" >/dev/null; done
