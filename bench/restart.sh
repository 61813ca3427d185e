#!/usr/bin/env bash
# Restart to ready: load one node with state (default 1 GiB of 1 KiB
# values), stop it, start it again on its data, and time process start to a
# stale read of the last value (and to /readyz, and to a linearizable read).
# Prints the machine first, so the figure can be pasted with its context.
#
#   bench/restart.sh                          # 1 GiB, SIGTERM, 3 restarts
#   bench/restart.sh --size 200MiB --kill     # any `cairn bench restart` flag
#   CAIRN=/path/to/cairn bench/restart.sh     # skip the build
#
# Needs about 3x --size of free disk under $TMPDIR (or --dir): the values
# are in the raft log and in Pebble.
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
echo "# cairn bench restart $*"
"$bin" bench restart "$@"
