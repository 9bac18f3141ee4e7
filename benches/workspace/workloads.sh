#!/bin/bash
# The workspace benchmark's workloads (benches/benches/workspace.rs), run in the guest as root:
#   workloads.sh DIR MIB FILES
# Prints one line per workload: its name and the milliseconds it took in DIR (the shared
# workspace, or a guest tmpfs to compare with). Caches are dropped before each cold figure.
set -e
D=$1; MIB=$2; N=$3
# Run as root over files the share shows as the agent's: git's ownership check would refuse.
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
W="$D/.paddock-bench"
rm -rf "$W"; mkdir -p "$W"; cd "$W"

drop; s=$(date +%s%N)
dd if=/dev/zero of=big bs=1M count="$MIB" conv=fsync status=none
echo "sequential_write $(ms "$s")"
drop; s=$(date +%s%N)
cat big > /dev/null
echo "sequential_read $(ms "$s")"
rm -f big

drop; s=$(date +%s%N)
mkdir files
i=0; while [ $i -lt "$N" ]; do : > "files/f$i"; i=$((i+1)); done
find files -type f -exec stat -c %s {} + > /dev/null
rm -rf files
echo "create_stat_delete $(ms "$s")"

# A tree of N files in 100 directories under git, then `git status`, cold and warm. The tree
# and its repository are made in a scratch tmpfs (its objects packed) and copied into DIR:
# what is measured is `git status` on DIR, not how long git takes to write 10,000 objects
# there (through the share in the lab, that outlasted whole runs).
T=$(mktemp -d /dev/shm/paddock-bench-tree.XXXXXX)
mkdir "$T/tree"; cd "$T/tree"
git init -q .
# No background gc racing the packing below (or the timed commands).
git config gc.auto 0
python3 - "$N" <<'PY'
import os, sys
n = int(sys.argv[1])
for i in range(n):
    d = f"d{i % 100}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i}.txt", "w") as f:
        f.write(f"line {i}\n")
PY
git add -A
git -c user.name=bench -c user.email=bench@paddock commit -qm tree
git repack -adq && git prune-packed
cd "$W"
s=$(date +%s%N)
cp -R "$T/tree" tree
echo "copy_tree_in $(ms "$s")"
rm -rf "$T"
cd tree
drop; s=$(date +%s%N)
git status --porcelain > /dev/null
echo "git_status_cold $(ms "$s")"
s=$(date +%s%N)
git status --porcelain > /dev/null
echo "git_status_warm $(ms "$s")"
cd "$D"; rm -rf "$W"
