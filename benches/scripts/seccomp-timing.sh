#!/bin/sh
# What the seccomp filters (and the VMM's supervisor, capability drop and parked vCPU start)
# cost on the restore path: `paddock restore` of one snapshot, alternately with and without
# filters, in one lab boot (ready times as paddock prints them).
# Lab:    cargo xtask lab -- sh -c "$(cat benches/scripts/seccomp-timing.sh)"
# Native: sh benches/scripts/seccomp-timing.sh   (paddock on PATH, default artifacts built)
set -e
export XDG_STATE_HOME="${XDG_STATE_HOME:-/tmp/paddock-seccomp-timing}"
snap="$XDG_STATE_HOME/snap"
mkdir -p "$XDG_STATE_HOME"
paddock start --name base >/dev/null
paddock snapshot base "$snap" --stop >/dev/null
for i in 1 2 3 4 5 6; do
  for mode in filtered unfiltered; do
    flag=; [ "$mode" = unfiltered ] && flag=--no-seccomp
    paddock restore "$snap" --name "r-$mode-$i" $flag 2>&1 >/dev/null \
      | sed -n "s/.*restored and ready in \([0-9.]*\) ms.*/$mode \1/p"
    paddock rm --force "r-$mode-$i" >/dev/null
  done
done
paddock rm --force base >/dev/null 2>&1 || true
