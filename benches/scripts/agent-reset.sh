#!/bin/sh
# Resets in place of an agent sandbox (the agent template, Docker engine up) with nothing
# dirtied: per reset the `memory` span and the CLI's wall clock (`--timings --json`), 10 resets
# after 3 unmeasured ones.
# Lab:    cargo xtask lab -- sh -c "$(cat benches/scripts/agent-reset.sh)"
# Native: sh benches/scripts/agent-reset.sh   (paddock on PATH)
set -e
export XDG_STATE_HOME="${XDG_STATE_HOME:-/tmp/paddock-agent-reset}"
mkdir -p "$XDG_STATE_HOME"
flat() { tr -d ' \n' | tr '{' '\n'; }
span_ms() { flat | grep "\"span\":\"$1\"" | grep -o '"ms":[0-9.]*' | cut -d: -f2; }
wall_ms() { flat | grep -o '"wall_ms":[0-9.]*' | cut -d: -f2; }
paddock start --name a --profile agent >/dev/null
paddock snapshot a "$XDG_STATE_HOME/snap" >/dev/null
for i in 1 2 3; do paddock reset a >/dev/null; done
for i in $(seq 1 10); do
  r=$(paddock reset a --timings --json)
  echo "agent memory_ms=$(echo "$r" | span_ms memory) guest_ms=$(echo "$r" | span_ms guestanswered) wall_ms=$(echo "$r" | wall_ms)"
done
paddock rm --force a >/dev/null
