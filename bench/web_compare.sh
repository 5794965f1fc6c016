#!/bin/bash
# The web client's transport against the native one, same server, same hour (BENCHMARKS.md,
# "Web client: WebSocket vs native"): interleaved runs, native then ws, each with a fresh server.
#
#   bench/web_compare.sh [SERVER] [PAIRS] > web.jsonl; python3 bench/ab_summary.py web.jsonl
#
# SERVER defaults to target/release/mm-server, PAIRS to 3; mm-bench is $MM_BENCH (default
# target/release/mm-bench). One JSON line per run, {"version": "native"|"ws", "pair": N,
# "args": "...", "result": {...}}. Both transports run the same client work per message (the
# same protocol core decodes and acknowledges; the WebSocket one also unwraps frames).
set -euo pipefail
server=${1:-target/release/mm-server}
pairs=${2:-3}
bench=${MM_BENCH:-target/release/mm-bench}
scenarios=(
  "idle --clients ${IDLE_CLIENTS:-10000}"
  "fanout --clients 1000 --senders 4 --messages 1000 --bytes 64"
)
for sc in "${scenarios[@]}"; do
  for i in $(seq 1 "$pairs"); do
    for t in native ws; do
      # shellcheck disable=SC2086 # the scenario's words are separate arguments
      line=$("$bench" --server-bin "$server" --transport "$t" $sc 2>/dev/null | tail -1)
      echo "{\"version\":\"$t\",\"pair\":$i,\"args\":\"$sc\",\"result\":$line}"
    done
  done
done
