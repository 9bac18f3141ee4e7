#!/bin/sh
# `git status` on a live share (issue 11): the host's changes watched and pushed to the guest
# (the default: names, attributes and listings cached for 30 s beneath watched directories)
# against polled (`PADDOCK_WORKSPACE_WATCH=off` for the sandbox's server: everything asked again
# after a second, as before the watch), and against the guest's own tmpfs; one lab boot, agent
# template, 1 vCPU, one sandbox at a time. The tree (FILES files, 100 a directory) is made on the host; git's own
# directory is in the guest's /tmp, so git writes nothing through the share. Per place: `git
# add` + commit (every file read through the share, cold), RUNS warm `git status`, one cold
# (the guest's caches dropped first); each timed in the guest, in ms.
# Lab:    cargo xtask lab -- sh -c "$(cat benches/scripts/workspace-git-status.sh)"
# Native: sh benches/scripts/workspace-git-status.sh   (paddock on PATH, hardware KVM)
set -e
export XDG_STATE_HOME="${XDG_STATE_HOME:-/tmp/paddock-git-status}"
# On failure: what the sandboxes logged.
trap 'st=$?; if [ $st -ne 0 ]; then for f in "$XDG_STATE_HOME"/paddock/sandboxes/*/*; do
  [ -f "$f" ] && case "$f" in *.log|*console*) echo "--- $f"; tail -n 60 "$f";; esac; done; fi' EXIT
files="${FILES:-2000}"
runs="${RUNS:-5}"
dir="$XDG_STATE_HOME/tree"
rm -rf "$dir"
mkdir -p "$dir"
i=0
while [ "$i" -lt "$files" ]; do
  sub="$dir/d$((i / 100))"
  if [ $((i % 100)) -eq 0 ]; then mkdir -p "$sub"; fi
  echo "file $i" > "$sub/f$i.txt"
  i=$((i + 1))
done
workload='
set -e
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0="*"
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
W=$1; G=/tmp/git-$2; RUNS=$3
g() { git --git-dir="$G" --work-tree="$W" "$@"; }
rm -rf "$G"; git init -q --bare "$G"
g config gc.auto 0; g config user.email bench@paddock; g config user.name bench
s=$(date +%s%N); g add -A; g commit -qm tree; echo "$2 add_commit $(ms "$s")"
r=0; while [ $r -lt "$RUNS" ]; do
  s=$(date +%s%N); g status --porcelain > /dev/null; echo "$2 warm $(ms "$s")"; r=$((r + 1))
done
sync; echo 3 > /proc/sys/vm/drop_caches
s=$(date +%s%N); g status --porcelain > /dev/null; echo "$2 cold $(ms "$s")"
'
# One sandbox at a time: two agent guests side by side in the lab have triple-faulted.
run() { # NAME PLACE LABEL
  echo "$workload" | paddock exec "$1" -- bash -s -- "$2" "$3" "$runs"
}
PADDOCK_WORKSPACE_WATCH=off paddock start --name polled --workspace "$dir" > /dev/null
run polled "$dir" share-polled
paddock exec polled -- sh -c "mkdir -p /tmp/tree && cp -a '$dir/.' /tmp/tree/"
run polled /tmp/tree tmpfs
paddock rm --force polled > /dev/null
paddock start --name watched --workspace "$dir" > /dev/null
run watched "$dir" share-watched
# A change on the host reaches the watched share's cached view at once.
echo changed > "$dir/d0/f0.txt"
paddock exec watched -- sh -c "cat '$dir/d0/f0.txt'"
paddock rm --force watched > /dev/null
