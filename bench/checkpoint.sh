#!/usr/bin/env bash
# Checkpoints at scale: creation latency at 10 MiB, 100 MiB and 1 GiB of
# state (1 KiB random values, batched writes) on a three-node cluster of
# `cairn serve` processes; the write throughput lost while checkpoints are
# taken under a concurrent write load; a follower's catch-up through
# checkpoints after 5% of the keys were overwritten and the log truncated
# past it (twice: with only its own files, then holding the leader's), and
# a fresh node's full transfer. Prints the machine first, so the figures
# can be pasted with their context (docs/benchmarks-checkpoints.md).
#
#   bench/checkpoint.sh                                   # the documented run
#   bench/checkpoint.sh --sizes 10MiB,100MiB --write-duration 20s   # quicker
#   bench/checkpoint.sh -o json                           # for scripts
#   CAIRN=/path/to/cairn bench/checkpoint.sh              # skip the build
#
# Needs about 8x the largest size of free disk under $TMPDIR (or --dir):
# three replicas, each with the values in the raft log and in Pebble.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CAIRN:-}
if [[ -z $bin ]]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	bin=$tmp/cairn
	go build -o "$bin" ./cmd/cairn
fi

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# nproc $(nproc); RAM $(free -g | awk '/^Mem:/ {print $2}') GiB; CPU$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
echo "# load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# cairn bench checkpoint $*"
"$bin" bench checkpoint "$@"
echo "# load average after $(cut -d' ' -f1-3 /proc/loadavg)"
