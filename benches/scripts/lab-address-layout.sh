#!/bin/sh
# What the lab's emulator charges a process for running code at new addresses (issue 12): the
# same snapshot restored through a warm VMM and through a VMM process started for it, with the
# lab kernel's address-space randomization on (as everywhere) and off, alternating within one
# lab boot. The lab's qemu 7.2 TCG keys its translated code by virtual address for x86 guests,
# so every new process (a warm VMM, its egress proxy, the CLI) translates every code path it
# runs anew at its own randomized addresses; with randomization off they find the code already
# translated. A measurement of the lab, never a setting for users: the script refuses to run
# outside the lab. Per run: the CLI's wall clock and the VMM's spans (`--timings --json`).
# Each pooled restore claims a warm VMM started under its own setting.
# Lab: cargo xtask lab -- sh -c "$(cat benches/scripts/lab-address-layout.sh)"
set -e
if [ -z "${PADDOCK_LAB_DONE:-}" ]; then
  echo "lab-address-layout.sh changes kernel.randomize_va_space: it runs only in the lab" >&2
  exit 2
fi
knob=/proc/sys/kernel/randomize_va_space
was=$(cat "$knob")
trap 'echo "$was" > "$knob"' EXIT
base="${STATE:-/tmp/paddock-address-layout}"
rm -rf "$base"
mkdir -p "$base/pooled" "$base/spawned"
snap="$base/snap"
flat() { tr -d ' \n' | tr '{' '\n'; }
wall_ms() { flat | grep -o '"wall_ms":[0-9.]*' | cut -d: -f2; }
span_ms() { flat | grep "\"span\":\"$1\"" | grep -o '"ms":[0-9.]*' | cut -d: -f2 | head -1; }
XDG_STATE_HOME="$base/spawned" paddock start --name base --profile "${PROFILE:-minimal}" >/dev/null
XDG_STATE_HOME="$base/spawned" paddock snapshot base "$snap" >/dev/null
XDG_STATE_HOME="$base/spawned" paddock rm --force base >/dev/null
# The first restore records the working set; not measured.
XDG_STATE_HOME="$base/spawned" paddock restore "$snap" --name warmup >/dev/null
XDG_STATE_HOME="$base/spawned" paddock rm --force warmup >/dev/null
for i in $(seq 1 "${RUNS:-5}"); do
  for layout in 2 0; do
    echo "$layout" > "$knob"
    for mode in pooled spawned; do
      if [ "$mode" = pooled ]; then
        # The warm VMM the last claim started in the background has the other layout.
        XDG_STATE_HOME="$base/pooled" paddock pool drain >/dev/null
        XDG_STATE_HOME="$base/pooled" paddock pool fill 1 >/dev/null
      fi
      out=$(XDG_STATE_HOME="$base/$mode" paddock restore "$snap" --name r --timings --json)
      echo "randomize_va_space=$layout mode=$mode wall_ms=$(echo "$out" | wall_ms)" \
        "devices_ms=$(echo "$out" | span_ms devices)" \
        "vcpus_running_ms=$(echo "$out" | span_ms vCPUsrunning)" \
        "guest_answered_ms=$(echo "$out" | span_ms guestanswered)"
      XDG_STATE_HOME="$base/$mode" paddock rm --force r >/dev/null
    done
  done
done
XDG_STATE_HOME="$base/pooled" paddock pool drain >/dev/null
