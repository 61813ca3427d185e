#!/usr/bin/env bash
# chaos.sh: the exactly-once acceptance run at full size.
#
# Builds cairn, clickcount and the chaos harness (this package's TestChaos)
# into a temp dir, then runs the harness once: three `cairn serve`
# processes on free 127.0.0.1 ports, a generated input, the operator as a
# child process SIGKILLed and restarted at seeded progress points, the
# leader (found through the client's Status: role and pid) SIGKILLed and
# restarted on its data dir, and at the end an exact check of every
# clicks/<key> against the input plus the operator's client stats
# (retries > 0). The orchestration lives in Go (chaos_test.go,
# harness_test.go) so that `go test ./...` runs the same code at a
# smaller size.
#
# Environment (defaults in brackets):
#   LINES [1000000]  KEYS [10000]  BATCH [1000]  SEED [from the clock]
#   OPERATOR_KILLS [3]  LEADER_KILLS [2]  RAFT_TIMEOUT [500ms]
#   FAULTS  planted cairn bugs to switch on (builds cairn with -tags
#           faultybuild), e.g. FAULTS=skip-dedup: the run must then FAIL
#   KEEP=1  keep the temp dir (input, data dirs, logs, report) even on success
#
# Exit status: the harness's (0: exactly once held).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/clickcount-chaos.XXXXXX")"
status=1
cleanup() {
	if [[ "${KEEP:-0}" == 1 || $status -ne 0 ]]; then
		echo "chaos.sh: run files kept in $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT

tags=()
if [[ -n "${FAULTS:-}" ]]; then
	tags=(-tags faultybuild)
fi

echo "chaos.sh: building into $tmp"
cd "$root"
go build "${tags[@]}" -o "$tmp/cairn" ./cmd/cairn
go build -o "$tmp/clickcount" ./examples/clickcount
go test -c -o "$tmp/chaos.test" ./examples/clickcount

args=(
	-test.run '^TestChaos$' -test.v -test.count 1 -test.timeout 60m
	-chaos.cairn "$tmp/cairn" -chaos.clickcount "$tmp/clickcount"
	-chaos.lines "${LINES:-1000000}" -chaos.keys "${KEYS:-10000}" -chaos.batch "${BATCH:-1000}"
	-chaos.seed "${SEED:-0}"
	-chaos.operator-kills "${OPERATOR_KILLS:-3}" -chaos.leader-kills "${LEADER_KILLS:-2}"
	-chaos.raft-timeout "${RAFT_TIMEOUT:-500ms}" -chaos.timeout 45m
	-chaos.workdir "$tmp/run" -chaos.report "$tmp/report.json"
)
if [[ -n "${FAULTS:-}" ]]; then
	args+=(-chaos.faults "$FAULTS")
fi

echo "chaos.sh: ${LINES:-1000000} lines over ${KEYS:-10000} keys, batch ${BATCH:-1000}"
start=$(date +%s)
set +e
(cd "$here" && "$tmp/chaos.test" "${args[@]}")
status=$?
set -e
echo "chaos.sh: harness exited $status after $(($(date +%s) - start))s"
if [[ -f "$tmp/report.json" ]]; then
	echo "chaos.sh: report:"
	cat "$tmp/report.json"
fi
exit $status
