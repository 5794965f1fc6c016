#!/bin/bash
# The PostgreSQL store against the embedded SQLite one, same server binary, same hour
# (BENCHMARKS.md, "PostgreSQL vs SQLite"): interleaved runs, sqlite then postgres, each with a
# fresh server and an empty store (a new database per PostgreSQL run, dropped after).
#
#   MM_BENCH_POSTGRES=postgres://mm@127.0.0.1:PORT/postgres bench/store_compare.sh [SERVER] [PAIRS] > store.jsonl
#   python3 bench/ab_summary.py store.jsonl
#
# SERVER defaults to target/release/mm-server, PAIRS to 3; mm-bench is $MM_BENCH (default
# target/release/mm-bench). MM_BENCH_POSTGRES names a PostgreSQL server whose role may create
# databases (`eval "$(scripts/postgres start)"` starts a throwaway one with fsync off: say so
# beside any figure). One JSON line per run, {"version": "sqlite"|"postgres", "pair": N,
# "args": "...", "result": {...}}; each result carries the server's store commits
# (`store_commits`: count, mean, p50/p99 bucket bounds) read from its /metrics.
set -euo pipefail
server=${1:-target/release/mm-server}
pairs=${2:-3}
bench=${MM_BENCH:-target/release/mm-bench}
pg=${MM_BENCH_POSTGRES:?set MM_BENCH_POSTGRES to a PostgreSQL URL whose role may create databases}
base=${pg%/*}
scenarios=(
  "connect --concurrency 32 --seconds 5"
  "fanout --clients 200 --senders 4 --messages 1000 --bytes 64"
  "fanout --clients 5 --senders 1 --messages 100000 --bytes 64"
)
for sc in "${scenarios[@]}"; do
  for i in $(seq 1 "$pairs"); do
    for store in sqlite postgres; do
      store_args=()
      db=""
      if [ "$store" = postgres ]; then
        db="mm_bench_$$_${i}_$RANDOM"
        psql -X -q -v ON_ERROR_STOP=1 "$pg" -c "CREATE DATABASE $db" >/dev/null
        store_args=(--server-store "$base/$db")
      fi
      # shellcheck disable=SC2086 # the scenario's words are separate arguments
      line=$("$bench" --server-bin "$server" "${store_args[@]}" $sc 2>/dev/null | tail -1)
      if [ -n "$db" ]; then
        psql -X -q "$pg" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
      fi
      echo "{\"version\":\"$store\",\"pair\":$i,\"args\":\"$sc\",\"result\":$line}"
    done
  done
done
