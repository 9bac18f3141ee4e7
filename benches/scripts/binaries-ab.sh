#!/bin/sh
# Two builds of paddock against each other in one lab boot: a restore that starts a VMM process,
# a restore that claims a warm VMM, and a fork of 10 claiming warm VMMs (the pool filled before
# each, untimed), alternating between the builds so drift in the lab hits both alike; each build
# has its own state directory, snapshot and pool. Prints one line per run (`--timings --json`'s
# wall clock, request to ready).
# Both builds must be static, as the lab's own paddock is:
#   CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
#     cargo build --release --target x86_64-unknown-linux-gnu -p paddock-vmm --bin paddock
# (once per build, copying target/x86_64-unknown-linux-gnu/release/paddock away each time), then
#   cargo xtask lab --file OLD:/usr/bin/paddock-old --file NEW:/usr/bin/paddock-new -- \
#     sh -c "$(cat benches/scripts/binaries-ab.sh)"
set -e
flat() { tr -d ' \n' | tr '{' '\n'; }
wall_ms() { flat | grep -o '"wall_ms":[0-9.]*' | head -1 | cut -d: -f2; }
for v in old new; do
  export XDG_STATE_HOME=/tmp/ab-$v PADDOCK_BIN=/usr/bin/paddock-$v
  mkdir -p "$XDG_STATE_HOME"
  paddock-$v start --name base --profile "${PROFILE:-minimal}" >/dev/null
  paddock-$v snapshot base "$XDG_STATE_HOME/snap" --stop >/dev/null
  # The first restore records the snapshot's working set.
  paddock-$v restore "$XDG_STATE_HOME/snap" --name w >/dev/null
  paddock-$v rm --force w >/dev/null
done
for i in $(seq 1 "${RUNS:-5}"); do
  for v in old new; do
    export XDG_STATE_HOME=/tmp/ab-$v PADDOCK_BIN=/usr/bin/paddock-$v
    snap=$XDG_STATE_HOME/snap
    out=$(paddock-$v restore "$snap" --name s --timings --json)
    echo "v=$v what=restore_spawned wall_ms=$(echo "$out" | wall_ms)"
    paddock-$v rm --force s >/dev/null
    paddock-$v pool fill 1 >/dev/null
    out=$(paddock-$v restore "$snap" --name p --timings --json)
    echo "v=$v what=restore_pooled wall_ms=$(echo "$out" | wall_ms)"
    paddock-$v rm --force p >/dev/null
    paddock-$v pool fill 10 >/dev/null
    out=$(paddock-$v fork "$snap" --count 10 --prefix f --timings --json)
    echo "v=$v what=fork10_pooled wall_ms=$(echo "$out" | wall_ms)"
    for j in 0 1 2 3 4 5 6 7 8 9; do paddock-$v rm --force "f-$j" >/dev/null; done
    paddock-$v pool drain >/dev/null
  done
done
