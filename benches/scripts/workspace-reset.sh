#!/bin/sh
# What a workspace share costs a reset (issue 11 item 4): resets in place of minimal sandboxes
# with no share, with a share whose mount the reset target does not hold (reset to the template
# the sandbox started from: the share is mounted anew) and with a share the target snapshot
# holds (the mount is carried on: the relay reconnects and the server re-establishes its nodes),
# live and copy-on-write; one lab boot, alternating. Per reset: the guest's span, the
# workspace span (`workspace mounted` / `workspace carried on`) and the CLI's wall clock.
# Lab:    cargo xtask lab -- sh -c "$(cat benches/scripts/workspace-reset.sh)"
# Native: sh benches/scripts/workspace-reset.sh   (paddock on PATH)
set -e
export XDG_STATE_HOME="${XDG_STATE_HOME:-/tmp/paddock-workspace-reset}"
mkdir -p "$XDG_STATE_HOME/dir"
for i in $(seq 1 100); do echo "file $i" > "$XDG_STATE_HOME/dir/f$i"; done
flat() { tr -d ' \n' | tr '{' '\n'; }
span_ms() { flat | grep "\"span\":\"$1" | grep -o '"ms":[0-9.]*' | cut -d: -f2; }
wall_ms() { flat | grep -o '"wall_ms":[0-9.]*' | cut -d: -f2; }
dir="$XDG_STATE_HOME/dir"
paddock start --name none --profile minimal >/dev/null
paddock start --name anew --profile minimal --workspace "$dir" >/dev/null
paddock start --name carried --profile minimal --workspace "$dir" >/dev/null
paddock start --name cow --profile minimal --workspace "$dir" --workspace-mode cow >/dev/null
for name in carried cow; do
  paddock exec -w "$dir" "$name" -- sh -c 'cat f1 f2 f3 >/dev/null; ls >/dev/null' >/dev/null
  paddock snapshot "$name" "$XDG_STATE_HOME/snap-$name" >/dev/null
  paddock reset "$name" >/dev/null
done
for i in $(seq 1 "${RUNS:-7}"); do
  for name in none anew carried cow; do
    report=$(paddock reset "$name" --timings --json)
    echo "sandbox=$name guest_ms=$(echo "$report" | span_ms guest)" \
      "workspace_ms=$(echo "$report" | span_ms workspace) wall_ms=$(echo "$report" | wall_ms)"
  done
done
for name in none anew carried cow; do paddock rm --force "$name" >/dev/null; done
