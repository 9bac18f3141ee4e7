#!/bin/sh
# Where a reset's and a restore's `guest answered` time goes, seen from the lab's own KVM: its
# trace events (exits by reason, page faults, interrupts, userspace exits) recorded over one
# `paddock reset` with nothing dirtied and one `paddock restore` of the same snapshot (minimal
# profile, 1 vCPU, 256 MiB; `PROFILE=agent`: the agent template, engine up), then summarised:
# exits by reason, and the longest stretches between two events (the guest running, or the
# host working, without an exit).
# Lab:    cargo xtask lab -- sh -c "$(cat benches/scripts/guest-exits.sh)"
# Native: sh benches/scripts/guest-exits.sh   (as root, paddock on PATH, tracefs available)
set -e
export XDG_STATE_HOME="${XDG_STATE_HOME:-/tmp/paddock-guest-exits}"
mkdir -p "$XDG_STATE_HOME"
T=/sys/kernel/tracing
[ -d "$T/events" ] || mount -t tracefs nodev "$T"
EVENTS="kvm_exit kvm_entry kvm_mmio kvm_page_fault kvm_inj_virq kvm_apic_accept_irq kvm_userspace_exit kvm_pio kvm_msr kvm_set_irq kvm_msi_set_irq"

summarise() {
  grep -v '^#' "$T/trace" > /tmp/trace.txt || true
  echo "--- $1: $(wc -l < /tmp/trace.txt) events; exits by reason:"
  grep 'kvm_exit:' /tmp/trace.txt | sed 's/.*reason \([A-Za-z_0-9]*\).*/\1/' | sort | uniq -c | sort -rn || true
  echo "--- $1: nested page faults by error code (info1: 7 a write to a read-only page, 4-6 not mapped, e MMIO):"
  grep 'reason npf' /tmp/trace.txt | grep -o 'info1 0x[0-9a-f]*' | sort | uniq -c | sort -rn || true
  echo "--- $1: other events:"
  grep -o 'kvm_[a-z_]*:' /tmp/trace.txt | sort | uniq -c | sort -rn || true
  echo "--- $1: first and last event, seconds:"
  head -1 /tmp/trace.txt | grep -o ' [0-9]*\.[0-9]*: ' || true
  tail -1 /tmp/trace.txt | grep -o ' [0-9]*\.[0-9]*: ' || true
  echo "--- $1: the 12 longest gaps between two events (ms, then the event that ends the gap):"
  awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) { t = substr($i, 1, length($i) - 1); break }
         if (p != "") printf "%.3f %s\n", (t - p) * 1000, $0; p = t }' /tmp/trace.txt \
    | sort -rn | head -12 | cut -c1-200
  if [ -n "$FULL" ]; then cut -c1-160 /tmp/trace.txt; fi
}

trace_on() {
  echo 0 > "$T/tracing_on"
  echo > "$T/trace"
  echo 32768 > "$T/buffer_size_kb"
  for e in $EVENTS; do [ -e "$T/events/kvm/$e/enable" ] && echo 1 > "$T/events/kvm/$e/enable"; done
  echo 1 > "$T/tracing_on"
}

trace_off() { echo 0 > "$T/tracing_on"; }

if [ "${PROFILE:-minimal}" = agent ]; then
  paddock start --name g --profile agent >/dev/null
else
  paddock start --name g --memory 256 --profile minimal >/dev/null
fi
paddock snapshot g "$XDG_STATE_HOME/snap" >/dev/null
# The first resets after a snapshot settle the guest's page mappings; measure a later one.
for i in 1 2 3; do paddock reset g >/dev/null; done
trace_on
paddock reset g --timings
trace_off
summarise reset
trace_on
sleep 0.05
trace_off
summarise "idle guest, 50 ms"
paddock rm --force g >/dev/null
paddock restore "$XDG_STATE_HOME/snap" --name r1 >/dev/null
paddock rm --force r1 >/dev/null
trace_on
paddock restore "$XDG_STATE_HOME/snap" --name r2 --timings >/dev/null
trace_off
summarise restore
paddock rm --force r2 >/dev/null
