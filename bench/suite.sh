#!/usr/bin/env bash
# The "cairn bench (issue 2/3)" set: every configuration RUNS times,
# interleaved (so that a noisy minute spreads over all of them), against a
# running cluster, then the median of each figure per configuration.
#
#   cairn dev --dir /tmp/cairn-bench &      # in another terminal
#   bench/suite.sh                          # CAIRN=path/to/cairn RUNS=3 OUT=file.jsonl
#
# Needs jq. Every run is appended to $OUT as one JSON line (the output of
# `cairn bench ... -o json` plus the command, the run number and the load
# average when it started); the medians are printed as a Markdown table.
set -euo pipefail

CAIRN=${CAIRN:-cairn}
RUNS=${RUNS:-3}
OUT=${OUT:-bench-suite-$(date -u +%Y%m%dT%H%M%SZ).jsonl}

configs=(
	"write --clients 1 --total 5000 --value-size 128"
	"write --clients 16 --total 50000 --value-size 128"
	"write --clients 64 --total 50000 --value-size 128"
	"write --clients 64 --total 50000 --value-size 128 --client-per-worker"
	"read --clients 64 --total 50000 --value-size 128 --consistency linearizable"
	"read --clients 64 --total 50000 --value-size 128 --consistency stale"
	"read --clients 64 --total 50000 --value-size 128 --consistency stale --client-per-worker"
	"commit --ops-per-commit 1000"
)

for run in $(seq 1 "$RUNS"); do
	for i in "${!configs[@]}"; do
		cfg=${configs[$i]}
		load=$(cut -d' ' -f1 /proc/loadavg)
		echo "run $run/$RUNS: cairn bench $cfg (load $load)" >&2
		# shellcheck disable=SC2086 # cfg is a list of flags
		"$CAIRN" bench $cfg -o json 2>/dev/null |
			jq -c --arg cmd "cairn bench $cfg" --argjson run "$run" --argjson idx "$i" --arg load "$load" \
				'. + {cmd: $cmd, idx: $idx, run: $run, load1: ($load | tonumber)}' >>"$OUT"
	done
done

echo "results: $OUT" >&2
jq -rs '
  def med: sort | .[(length - 1) / 2 | floor];
  def r: . * 10 | round / 10;
  group_by(.idx) |
  ("| command | ops/s | updates/s | p50 ms | p99 ms | p99.9 ms | errors | load1 at start |",
   "|---|---|---|---|---|---|---|---|",
   (.[] | "| `\(.[0].cmd)` | \(map(.ops_per_sec) | med | round) | \(map(.updates_per_sec // null) | if .[0] == null then "-" else (med | round) end) | \(map(.latency_ms.p50) | med | r) | \(map(.latency_ms.p99) | med | r) | \(map(.latency_ms.p999) | med | r) | \(map(.errors) | add) | \(map(.load1) | map(tostring) | join(", ")) |"))
' "$OUT"
