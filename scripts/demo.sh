#!/usr/bin/env bash
# make demo: the whole gateway on loopback without Docker or vendor keys.
#   extproc   gRPC 127.0.0.1:50051, admin 127.0.0.1:9003
#   fakellm   127.0.0.1:8080 (OpenAI, Anthropic and Gemini shaped answers)
#   envoyemu  127.0.0.1:9002, the Envoy emulator running envoy/envoy-mock.yaml
# Ctrl-C stops all three. Ports can be moved with DEMO_*_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."

GRPC_PORT=${DEMO_GRPC_PORT:-50051}
ADMIN_PORT=${DEMO_ADMIN_PORT:-9003}
FAKE_PORT=${DEMO_FAKE_PORT:-8080}
FRONT_PORT=${DEMO_FRONT_PORT:-9002}
BIN=${BIN:-bin}

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# Every guard on, over in-process backends (configs/demo.yml); cost
# records go to $DEMO_COST_RECORDS.
export DEMO_COST_RECORDS=${DEMO_COST_RECORDS:-$BIN/demo-cost-records.jsonl}
mkdir -p "$(dirname "$DEMO_COST_RECORDS")"
GRPC_ADDR=127.0.0.1:$GRPC_PORT ADMIN_ADDR=127.0.0.1:$ADMIN_PORT LOG_FORMAT=text \
	LLM_PROXY_CONFIG=${LLM_PROXY_CONFIG:-configs/base.yml,configs/demo.yml} \
	"$BIN/extproc" &
pids+=($!)
FAKELLM_ADDR=127.0.0.1:$FAKE_PORT LOG_FORMAT=text "$BIN/fakellm" 2>/dev/null &
pids+=($!)
"$BIN/envoyemu" -bootstrap envoy/envoy-mock.yaml -listen "127.0.0.1:$FRONT_PORT" \
	-cluster "ext_proc=127.0.0.1:$GRPC_PORT" -cluster "extproc_admin=127.0.0.1:$ADMIN_PORT" \
	-cluster "openai=127.0.0.1:$FAKE_PORT" -cluster "anthropic=127.0.0.1:$FAKE_PORT" \
	-cluster "gemini=127.0.0.1:$FAKE_PORT" &
pids+=($!)

for _ in $(seq 50); do
	if curl -fsS "127.0.0.1:$FRONT_PORT/health" >/dev/null 2>&1; then break; fi
	sleep 0.1
done
cat <<MSG

  gateway  http://127.0.0.1:$FRONT_PORT   (try: curl -s 127.0.0.1:$FRONT_PORT/health)
  console  http://127.0.0.1:$ADMIN_PORT/
  metrics  http://127.0.0.1:$ADMIN_PORT/metrics
  rules    configs/base.yml + configs/demo.yml: 5 requests/min per user, circuit
           opens after 3 failures, \$0.05/day per user; cost records in $DEMO_COST_RECORDS
  Envoy access-log lines print on stdout; the server's request log on stderr.
  Ctrl-C to stop.

MSG
wait -n "${pids[@]}"
