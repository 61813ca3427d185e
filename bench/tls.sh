#!/usr/bin/env bash
# TLS against plaintext: `cairn dev` clusters (three processes on
# 127.0.0.1) with and without TLS between members and for clients
# (--tls-client-auth, certificates from deploy/certs.sh), alternating
# ROUNDS times, fresh data dirs, `cairn bench write` and `cairn bench read`
# against each. Prints the machine first; compare medians of the rounds.
#
#   bench/tls.sh [ROUNDS]               # default 3
#   CAIRN=/path/to/cairn bench/tls.sh   # skip the build
#
# Uses the `cairn dev` ports (7101-7103, 7201-7203, 7301-7303).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
tmp=$(mktemp -d)
dev=
trap '[ -n "$dev" ] && kill -INT "$dev" 2>/dev/null; wait; rm -rf "$tmp"' EXIT
bin=${CAIRN:-}
if [[ -z $bin ]]; then bin=$tmp/cairn; go build -o "$bin" ./cmd/cairn; fi
deploy/certs.sh "$tmp/certs" n1=127.0.0.1,localhost client:bench >/dev/null
c=$tmp/certs
serve_tls=(--serve-flag=--tls-ca="$c/ca.pem" --serve-flag=--tls-cert="$c/n1.pem" --serve-flag=--tls-key="$c/n1-key.pem" --serve-flag=--tls-client-auth)
client_tls=(--cacert "$c/ca.pem" --cert "$c/bench.pem" --key "$c/bench-key.pem")

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# nproc $(nproc); RAM $(free -g | awk '/^Mem:/ {print $2}') GiB; CPU$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
for r in $(seq "$rounds"); do
  for mode in plain tls; do
    s=(); cl=()
    if [ "$mode" = tls ]; then s=("${serve_tls[@]}"); cl=("${client_tls[@]}"); fi
    d=$tmp/dev-$mode-$r
    "$bin" dev --dir "$d" "${s[@]}" > "$tmp/dev.log" 2>&1 &
    dev=$!
    for _ in $(seq 600); do
      "$bin" "${cl[@]}" --timeout 1s put bench/warm x >/dev/null 2>&1 && break
      sleep 0.1
    done
    echo "== round $r: $mode ($(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg))"
    "$bin" "${cl[@]}" bench write --total 40000 --clients 16 2>&1 | grep -E "throughput|latency" | sed 's/^/  write/'
    "$bin" "${cl[@]}" bench read --keys 10000 --total 100000 --clients 64 2>&1 | grep -E "throughput|latency" | sed 's/^/  read /'
    kill -INT "$dev"; wait "$dev" || true; dev=
    rm -rf "$d"
  done
done
