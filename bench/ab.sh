#!/bin/bash
# Interleaved A/B runs of mm-bench against two mm-server binaries (BENCHMARKS.md: this machine
# drifts, so changes are compared by pairs run in the same hour, never against an older table).
#
#   bench/ab.sh OLD_SERVER NEW_SERVER [PAIRS] > ab.jsonl
#
# For each scenario, PAIRS (default 5) pairs of runs, old then new, each with a fresh server,
# all driven by the same mm-bench ($MM_BENCH, default target/release/mm-bench). Prints one JSON
# line per run, {"version": "old"|"new", "pair": N, "args": "...", "result": {...}};
# bench/ab_summary.py turns them into medians and ranges.
set -euo pipefail
old=${1:?usage: bench/ab.sh OLD_SERVER NEW_SERVER [PAIRS]}
new=${2:?usage: bench/ab.sh OLD_SERVER NEW_SERVER [PAIRS]}
pairs=${3:-5}
bench=${MM_BENCH:-target/release/mm-bench}
scenarios=(
  "fanout --clients 1000 --senders 4 --messages 1000 --bytes 64"
  "fanout --clients 5000 --senders 4 --messages 200 --bytes 64"
  "connect --concurrency 32 --seconds 5"
  "latency --clients 1000 --rate 100000 --seconds 10 --warmup 2"
  "idle --clients 10000"
)
for sc in "${scenarios[@]}"; do
  for i in $(seq 1 "$pairs"); do
    for v in old new; do
      server=$old
      [ "$v" = new ] && server=$new
      # shellcheck disable=SC2086 # the scenario's words are separate arguments
      line=$("$bench" --server-bin "$server" $sc 2>/dev/null | tail -1)
      echo "{\"version\":\"$v\",\"pair\":$i,\"args\":\"$sc\",\"result\":$line}"
    done
  done
done
