#!/bin/sh
# What mapping a snapshot's working set into KVM's tables before the vCPUs run saves a restore
# (`KVM_PRE_FAULT_MEMORY`, issue 12 item 3), in one lab boot: the same snapshot restored with
# and without it (`PADDOCK_PRE_FAULT=off`), alternating so drift in the lab hits both alike.
# Needs a host kernel with it (Linux 6.10+): in the lab, `PADDOCK_LAB_KERNEL=backports`.
# Per run: the CLI's wall clock, the pages pre-faulted, the VMM's minor faults to ready and its
# spans (`paddock restore --timings --json`, then `paddock ls --json`).
# Lab:    PADDOCK_LAB_KERNEL=backports cargo xtask lab -- sh -c "$(cat benches/scripts/pre-fault.sh)"
# Native: sh benches/scripts/pre-fault.sh   (paddock on PATH)
set -e
export XDG_STATE_HOME="${XDG_STATE_HOME:-/tmp/paddock-pre-fault}"
mkdir -p "$XDG_STATE_HOME"
snap="$XDG_STATE_HOME/snap"
rm -rf "$snap"
flat() { tr -d ' \n' | tr '{' '\n'; }
wall_ms() { flat | grep -o '"wall_ms":[0-9.]*' | cut -d: -f2; }
field() { tr -d ' \n' | grep -o "\"$1\":[0-9a-z]*" | head -n1 | cut -d: -f2; }
# "span=ms" for each span (the JSON's keys come sorted: ms first), spaces in names as _.
spans() { tr -d '\n' | grep -o '"ms":[0-9.]*,"span":"[^"]*"' | sed 's/"ms":\([0-9.]*\),"span":"\([^"]*\)"/\2=\1/' | tr ' ' '_' | tr '\n' ' '; }
paddock start --name base --profile "${PROFILE:-minimal}" >/dev/null
paddock snapshot base "$snap" >/dev/null
paddock rm --force base >/dev/null
# The first restore records the working set; not measured.
paddock restore "$snap" --name warmup >/dev/null
paddock rm --force warmup >/dev/null
for i in $(seq 1 "${RUNS:-10}"); do
  for mode in on off; do
    out=$(PADDOCK_PRE_FAULT=$mode paddock restore "$snap" --name r --timings --json)
    listed=$(paddock ls --json)
    echo "mode=$mode wall_ms=$(echo "$out" | wall_ms)" \
      "pre_faulted=$(echo "$listed" | field pre_faulted_pages)" \
      "minor_faults=$(echo "$listed" | field minor_faults) $(echo "$out" | spans)"
    paddock rm --force r >/dev/null
  done
done
