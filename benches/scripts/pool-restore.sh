#!/bin/sh
# What warm VMMs save a restore (issue 12 item 2), in one lab boot: the same snapshot restored
# with a warm VMM claimed from the pool and with a VMM process started for it, alternating so
# drift in the lab hits both alike. Per run: the CLI's wall clock from its request to guest-init
# answering and the VMM's spans (`paddock restore --timings --json`). The pool is refilled
# before each pooled restore, outside the measurement. Then the idle warm VMM's memory.
# Lab:    cargo xtask lab -- sh -c "$(cat benches/scripts/pool-restore.sh)"
# Native: sh benches/scripts/pool-restore.sh   (paddock on PATH)
set -e
base="${STATE:-/tmp/paddock-pool-restore}"
rm -rf "$base"
mkdir -p "$base/pooled" "$base/spawned"
snap="$base/snap"
flat() { tr -d ' \n' | tr '{' '\n'; }
wall_ms() { flat | grep -o '"wall_ms":[0-9.]*' | cut -d: -f2; }
# "span=ms" for each span (the JSON's keys come sorted: ms first), spaces in names as _.
spans() { tr -d '\n' | grep -o '"ms":[0-9.]*,"span":"[^"]*"' | sed 's/"ms":\([0-9.]*\),"span":"\([^"]*\)"/\2=\1/' | tr ' ' '_' | tr '\n' ' '; }
XDG_STATE_HOME="$base/spawned" paddock start --name base --profile "${PROFILE:-minimal}" >/dev/null
XDG_STATE_HOME="$base/spawned" paddock snapshot base "$snap" >/dev/null
XDG_STATE_HOME="$base/spawned" paddock rm --force base >/dev/null
# The first restore records the working set; not measured.
XDG_STATE_HOME="$base/spawned" paddock restore "$snap" --name warmup >/dev/null
XDG_STATE_HOME="$base/spawned" paddock rm --force warmup >/dev/null
for i in $(seq 1 "${RUNS:-10}"); do
  for mode in pooled spawned; do
    if [ "$mode" = pooled ]; then
      XDG_STATE_HOME="$base/pooled" paddock pool fill 1 >/dev/null
    fi
    out=$(XDG_STATE_HOME="$base/$mode" paddock restore "$snap" --name r --timings --json)
    echo "mode=$mode wall_ms=$(echo "$out" | wall_ms) $(echo "$out" | spans)"
    XDG_STATE_HOME="$base/$mode" paddock rm --force r >/dev/null
  done
done
XDG_STATE_HOME="$base/pooled" paddock pool fill 1 >/dev/null
sleep 2
XDG_STATE_HOME="$base/pooled" paddock pool show
XDG_STATE_HOME="$base/pooled" paddock pool drain
