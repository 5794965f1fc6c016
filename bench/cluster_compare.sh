#!/bin/bash
# Several nodes on NATS (BENCHMARKS.md, "Several nodes on NATS"): the same fan-out and paced
# latency runs with the clients on one plain PostgreSQL server (no bus: the baseline), on one
# node with --bus, and spread over 2 and 3 nodes, plus 2 nodes with clients and a third that
# has none (it only applies the stream); interleaved (every variant once per round), each run
# with a fresh database and a fresh nats-server (an empty JetStream store), same binaries.
#
#   bench/cluster_compare.sh [ROUNDS] > cluster.jsonl
#   python3 bench/cluster_summary.py cluster.jsonl
#
# ROUNDS defaults to 3. Binaries: $MM_BENCH (default target/release/mm-bench) and
# $MM_SERVER (default target/release/mm-server). PostgreSQL: $MM_BENCH_POSTGRES (a URL whose
# role may create databases), else a throwaway one from scripts/postgres (fsync off), stopped
# at the end. NATS: $MM_NATS_SERVER (default /usr/sbin/nats-server). Scenarios: $FANOUT and
# $LATENCY (mm-bench scenario words) override the defaults below. One JSON line per run:
# {"version": VARIANT, "pair": ROUND, "args": "...", "result": {...}}.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
bench=${MM_BENCH:-target/release/mm-bench}
server=${MM_SERVER:-target/release/mm-server}
nats_bin=${MM_NATS_SERVER:-/usr/sbin/nats-server}
fanout=${FANOUT:-"fanout --clients 200 --senders 4 --messages 1000 --bytes 64"}
# 50 lines/s in all (4 senders, 12.5 each) to 199 readers: 9,950 deliveries/s.
latency=${LATENCY:-"latency --clients 200 --rate 9950 --seconds 10 --warmup 2"}

started_pg=""
if [ -z "${MM_BENCH_POSTGRES:-}" ]; then
  eval "$(scripts/postgres start)"
  MM_BENCH_POSTGRES=$MM_TEST_POSTGRES
  started_pg=$MM_TEST_POSTGRES_DIR
fi
pg=$MM_BENCH_POSTGRES
base=${pg%/*}
nats_pid=""
nats_dir=""
cleanup() {
  if [ -n "$nats_pid" ]; then kill "$nats_pid" 2>/dev/null || true; wait "$nats_pid" 2>/dev/null || true; fi
  [ -n "$nats_dir" ] && rm -rf "$nats_dir"
  if [ -n "$started_pg" ]; then scripts/postgres stop "$started_pg" >&2 || true; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a fresh nats-server with JetStream; sets nats_pid, nats_dir, nats_url.
start_nats() {
  nats_dir=$(mktemp -d)
  local port
  port=$(free_port)
  "$nats_bin" -a 127.0.0.1 -p "$port" -js -sd "$nats_dir/js" -l "$nats_dir/nats.log" </dev/null >/dev/null 2>&1 &
  nats_pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  nats_url="nats://127.0.0.1:$port"
}

stop_nats() {
  kill "$nats_pid" 2>/dev/null || true
  wait "$nats_pid" 2>/dev/null || true
  rm -rf "$nats_dir"
  nats_pid=""
  nats_dir=""
}

# variant name, then mm-bench arguments besides the store ("" = no bus)
variants=(
  "plain|"
  "1 node|--nodes 1"
  "2 nodes|--nodes 2"
  "3 nodes|--nodes 3"
  "2 nodes + 1 without clients|--nodes 2 --observer-nodes 1"
)
for sc in "$fanout" "$latency"; do
  for i in $(seq 1 "$rounds"); do
    for v in "${variants[@]}"; do
      name=${v%%|*}
      # shellcheck disable=SC2206 # the variant's words are separate arguments
      extra=(${v#*|})
      # the observer variant only for fan-out
      case "$name" in *without*) [ "${sc%% *}" = fanout ] || continue ;; esac
      db="mm_cluster_$$_${i}_$RANDOM"
      psql -X -q -v ON_ERROR_STOP=1 "$pg" -c "CREATE DATABASE $db" >/dev/null
      bus_args=()
      if [ "${#extra[@]}" -gt 0 ]; then
        start_nats
        bus_args=(--bus "$nats_url" --bus-pid "$nats_pid")
      fi
      # shellcheck disable=SC2086 # the scenario's words are separate arguments
      # A run with loss still prints its JSON line (and exits 2): kept. One that printed none
      # failed: the end of its error output goes into the line instead.
      err=$(mktemp)
      line=$("$bench" --server-bin "$server" --server-store "$base/$db" "${extra[@]}" "${bus_args[@]}" $sc 2>"$err" | tail -1 || true)
      case "$line" in
        "{"*) ;;
        *) line=$(python3 -c 'import json, sys; print(json.dumps({"error": open(sys.argv[1]).read()[-2000:], "lost": -1}))' "$err") ;;
      esac
      rm -f "$err"
      [ -n "$nats_pid" ] && stop_nats
      psql -X -q "$pg" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
      echo "{\"version\":\"$name\",\"pair\":$i,\"args\":\"$sc\",\"load1\":$(cut -d' ' -f1 /proc/loadavg),\"result\":$line}"
    done
  done
done
