#!/usr/bin/env bash
# Side-by-side benchmark of cairn and etcd on this machine.
#
#   bench/compare.sh            full run; rewrites the table in docs/benchmarks.md
#   bench/compare.sh --quick    smoke run (tiny totals, one round); prints only
#   bench/compare.sh --no-doc   full run without touching the document
#
# Other flags go to bench/compare (go run ./bench/compare -h): --rounds N,
# --scale F, --only REGEXP, --keep, --workdir DIR, --cairn-flag=--flag=value,
# --no-wal (drop the cairn --log-store=wal column), --checkpoint and --restart
# (add cairn-only rows from cairn bench checkpoint / restart; minutes each),
# --variant NAME=BIN[@FLAGS] (compare cairn builds instead of etcd vs cairn).
#
# What it needs it builds: etcd, etcdctl and etcd's benchmark tool from the
# Go module proxy (bench/etcd pins the version; etcd's go.mod replace
# directives rule out `go install`), cairn, and the load generator. Binaries
# are cached in bench/.cache/bin (gitignored). Needs Go, and the module proxy
# on the first run only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cache="$root/bench/.cache/bin"
mkdir -p "$cache"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

quick=0 doc=1 args=()
for a in "$@"; do
  case "$a" in
    --quick) quick=1; args+=("$a") ;;
    --no-doc) doc=0 ;;
    *) args+=("$a") ;;
  esac
done

say() { echo "compare.sh: $*" >&2; }

etcd_version=$(sed -n 's/^\tgo.etcd.io\/etcd\/server\/v3 \(v[^ ]*\)$/\1/p' bench/etcd/go.mod)
if [ ! -x "$cache/etcd" ] || [ ! -x "$cache/benchmark" ] || [ ! -x "$cache/etcdctl" ] ||
   [ "$(cat "$cache/etcd.version" 2>/dev/null)" != "$etcd_version" ]; then
  say "building etcd $etcd_version, etcdctl and benchmark from the module proxy (once; cached in bench/.cache)"
  (cd bench/etcd &&
    go build -o "$cache/etcd" go.etcd.io/etcd/server/v3 &&
    go build -o "$cache/etcdctl" go.etcd.io/etcd/etcdctl/v3 &&
    go build -o "$cache/benchmark" go.etcd.io/etcd/v3/tools/benchmark)
  echo "$etcd_version" > "$cache/etcd.version"
fi

# What cairn is built from, noted now: the working tree is shared and may
# move on (commits, edits) while the benchmark runs.
cairn_version=$(git rev-parse --short HEAD 2>/dev/null || echo "(unknown commit)")
dirty=$(git status --porcelain -- '*.go' go.mod go.sum ':!bench' ':!jepsen' ':!linearizability' ':!examples' 2>/dev/null |
  awk '{print $NF}' | cut -d/ -f1 | sort -u | paste -sd, - || true)
if [ -n "$dirty" ]; then
  cairn_version="$cairn_version+uncommitted changes in ${dirty//,/, }"
fi
say "building cairn ($cairn_version), bench/loadgen and bench/compare"
go build -o "$cache/cairn" ./cmd/cairn
go build -o "$cache/loadgen" ./bench/loadgen
go build -o "$cache/compare" ./bench/compare

cmdline="bench/compare.sh${*:+ $*}"
extra=()
if [ "$quick" = 0 ] && [ "$doc" = 1 ]; then
  extra+=(--doc docs/benchmarks.md)
fi
exec "$cache/compare" --etcd-bin "$cache" --cairn "$cache/cairn" --loadgen "$cache/loadgen" \
  --command "$cmdline" --cairn-version "$cairn_version" "${extra[@]}" "${args[@]}"
