#!/usr/bin/env bash
# Handshake cost of --auth jwt against --auth none, side by side in one run:
# `loadgen connect` (CONNS connections at RATE/s, held DUR s) against one
# node `--cores 2` per mode, ROUNDS times alternating; reports the connect
# latency and the node's CPU per handshake (utime+stime over the run /
# connections). Loopback only, bounded by DUR. SKIP_BUILD=1 to reuse
# target/release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/bench.sh
. scripts/lib/bench.sh
CONNS=${CONNS:-10000}
RATE=${RATE:-5000}
DUR=${DUR:-3}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-target/bench-auth}
mkdir -p "$OUT"
need jq
build_release
PIDS=()
trap cleanup EXIT
SECRET=bench-auth-secret-0123456789abcdef
printf '%s' "$SECRET" >"$OUT/jwt.secret"
echo "| round | auth | established | failed | connect p50 ms | connect p99 ms | node CPU µs/handshake |"
echo "|---|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  for auth in none jwt; do
    PORT=$(free_port)
    SHARDCAST_SECRET=$SECRET "$NODE_BIN" --listen "127.0.0.1:$PORT" --metrics-listen 127.0.0.1:0 \
      --cores 2 --auth "$auth" --handshakes-per-sec 100000 >"$OUT/node.out" 2>"$OUT/node.err" &
    NODE=$!
    PIDS+=("$NODE")
    for _ in $(seq 50); do grep -q listening "$OUT/node.out" && break; sleep 0.1; done
    JWT=()
    [ "$auth" = jwt ] && JWT=(--jwt-secret-file "$OUT/jwt.secret")
    c0=$(cpu_seconds "$NODE")
    "$LOADGEN" connect --target "ws://127.0.0.1:$PORT/ws" --connections "$CONNS" \
      --connect-rate "$RATE" --duration "$DUR" "${JWT[@]}" --quiet --report "$OUT/$auth.json" >/dev/null
    c1=$(cpu_seconds "$NODE")
    kill "$NODE"; wait "$NODE" 2>/dev/null || true
    est=$(jq '.connections.established' "$OUT/$auth.json")
    echo "| $round | $auth | $est | $(jq '.connections.failed' "$OUT/$auth.json") | \
$(ms "$(jq '.connect_latency_us.p50' "$OUT/$auth.json")") | $(ms "$(jq '.connect_latency_us.p99' "$OUT/$auth.json")") | \
$(awk -v a="$c0" -v b="$c1" -v n="$est" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / n * 1e6; else print "-" }') |"
  done
done
machine
