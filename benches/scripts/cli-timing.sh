#!/bin/sh
# Restore and reset timings through the CLI, with the VMM's own breakdown from vmm.log.
# Lab:    cargo xtask lab -- sh -c "$(cat benches/scripts/cli-timing.sh)"
# Native: sh benches/scripts/cli-timing.sh   (paddock on PATH, default artifacts built)
set -e
export XDG_STATE_HOME="${XDG_STATE_HOME:-/tmp/paddock-timing}" PADDOCK_LOG=paddock_vmm=debug
snap="$XDG_STATE_HOME/snap"
mkdir -p "$XDG_STATE_HOME"
paddock start --name timing >/dev/null
paddock snapshot timing "$snap"
paddock reset timing --to "$snap"
for i in 1 2 3 4 5; do paddock reset timing; done
for i in 1 2 3; do
  paddock exec timing -- sh -c "head -c 16777216 /dev/urandom > /tmp/junk"
  paddock reset timing
done
for i in 1 2 3; do paddock restore "$snap" --name "timing-r$i" >/dev/null; done
for f in "$XDG_STATE_HOME"/paddock/sandboxes/*/vmm.log; do
  echo "== $f"
  grep -E "restore:|reset|resumed" "$f" | sed 's/\x1b\[[0-9;]*m//g'
done
for name in timing timing-r1 timing-r2 timing-r3; do paddock rm --force "$name"; done
