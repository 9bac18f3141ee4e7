#!/bin/sh
# Resets in place with nothing dirtied, the written pages copied back (the default) against
# dropped (`PADDOCK_RESET_COPY_BACK=off`, as before): two sandboxes of one snapshot (minimal
# profile, 1 vCPU, 256 MiB, or SIZE MiB), reset alternately; per reset the `memory` span, the
# `guest answered` span and the wall clock the CLI saw (`--timings --json`).
# Lab:    cargo xtask lab -- sh -c "$(cat benches/scripts/reset-copy-back.sh)"
# Native: sh benches/scripts/reset-copy-back.sh   (paddock on PATH)
set -e
export XDG_STATE_HOME="${XDG_STATE_HOME:-/tmp/paddock-reset-copy-back}"
mkdir -p "$XDG_STATE_HOME"
flat() { tr -d ' \n' | tr '{' '\n'; }
span_ms() { flat | grep "\"span\":\"$1\"" | grep -o '"ms":[0-9.]*' | cut -d: -f2; }
wall_ms() { flat | grep -o '"wall_ms":[0-9.]*' | cut -d: -f2; }
paddock start --name boot --memory "${SIZE:-256}" --profile minimal >/dev/null
paddock snapshot boot "$XDG_STATE_HOME/snap" --stop >/dev/null
paddock restore "$XDG_STATE_HOME/snap" --name copy >/dev/null
PADDOCK_RESET_COPY_BACK=off paddock restore "$XDG_STATE_HOME/snap" --name drop >/dev/null
for i in 1 2 3; do paddock reset copy >/dev/null; paddock reset drop >/dev/null; done
for i in $(seq 1 "${RUNS:-10}"); do
  for s in copy drop; do
    report=$(paddock reset "$s" --timings --json)
    echo "pages=$s memory_ms=$(echo "$report" | span_ms memory)" \
      "guest_ms=$(echo "$report" | span_ms 'guest answered')" \
      "wall_ms=$(echo "$report" | wall_ms)"
  done
done
paddock rm --force copy drop boot >/dev/null
