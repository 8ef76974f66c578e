#!/usr/bin/env bash
# Runs the whole suite under the race detector three times per test while
# a CPU hog keeps every core busy, so a test whose outcome depends on
# scheduling fails here before it fails in CI. Bounded: the hog ends with
# the script, and go test's own -timeout bounds the run.
#
#   STRESS_COUNT   runs of each test (default 3)
#   STRESS_HOGS    busy loops beside the tests (default: one per core)
#   STRESS_TIMEOUT go test -timeout (default 60m)
set -euo pipefail
cd "$(dirname "$0")/.."

count=${STRESS_COUNT:-3}
hogs=${STRESS_HOGS:-$(nproc)}
timeout=${STRESS_TIMEOUT:-60m}

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

for _ in $(seq "$hogs"); do
	# A busy loop in the shell itself: no binary to install, no I/O.
	( while :; do :; done ) &
	pids+=("$!")
done
echo "test-stress: ${hogs} CPU hogs, -race -count=${count}, timeout ${timeout}"
go test -race -count="$count" -timeout "$timeout" ${GO_TEST_ARGS:-} ./...
