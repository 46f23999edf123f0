#!/usr/bin/env bash
# The Redis store against the in-memory store, side by side in one run:
# `loadgen direct` through one node (--cores NODE_CORES) with the in-memory
# store, then through one node with --redis, alternating, ROUNDS times.
#
# Measures, for each store:
#   - msgs/s at saturation: closed loop (--rate 0), USERS users, WINDOW
#     messages in flight per flow;
#   - server CPU per message over the steady part of each run: utime+stime
#     of the node (and, separately, of redis-server) from /proc/PID/stat,
#     sampled SKIP s after the node routed its first message and again 1 s
#     before the measured phase ends, divided by the messages the node
#     routed in between (rtc_socket_messages_total from its /metrics);
#     also loadgen's whole-run figure (cpu.server_seconds / received);
#   - p50/p99 and CPU per message at fixed rates (open loop, RATES msg/s).
# and prints a markdown table; ratio = redis / memory.
#
# One redis-server (no persistence, FLUSHALL before each run) on a free
# loopback port; nodes on ephemeral loopback ports; every run is bounded by
# DUR (+ loadgen's drain). Knobs (environment): DUR (10), USERS (400),
# WINDOW (16), RATES ("2000 5000"), ROUNDS (2), SKIP (2), NODE_CORES (2),
# FLUSH_US (the node's --redis-flush-us, default the node's 200),
# OUT (target/bench-store), SKIP_BUILD=1 with NODE_BIN/LOADGEN.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench.sh

DUR=${DUR:-10}
USERS=${USERS:-400}
WINDOW=${WINDOW:-16}
RATES=${RATES:-2000 5000}
ROUNDS=${ROUNDS:-2}
SKIP=${SKIP:-2}
NODE_CORES=${NODE_CORES:-2}
FLUSH_US=${FLUSH_US:-}
OUT=${OUT:-target/bench-store}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
need jq
need curl
need python3
need redis-server
need redis-cli

build_release
trap cleanup EXIT
start_redis

SHARDCAST_SECRET=$(head -c 24 /dev/urandom | base64)
export SHARDCAST_SECRET
start_node() { # memory|redis
  local extra=()
  if [ "$1" = redis ]; then
    extra=(--redis "$REDIS_URL")
    [ -n "$FLUSH_US" ] && extra+=(--redis-flush-us "$FLUSH_US")
  fi
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  start "node-$1" "$NODE_BIN" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    --cores "$NODE_CORES" --rate-messages-per-sec 1000000 --rate-messages-burst 1000000 \
    "${extra[@]}"
}

# run NAME ARGS... : one loadgen direct run against the node just started,
# with the steady-window CPU sampled alongside; writes $OUT/NAME.json (the
# loadgen report), NAME.txt (its summary) and NAME.steady (the samples).
run() {
  local name=$1; shift
  say "$name ($(cut -d' ' -f1-3 /proc/loadavg))"
  "$LOADGEN" direct --target "ws://$ADDR/ws" --users "$USERS" --duration "$DUR" --quiet \
    --server-pid "$PID" --report "$OUT/$name.json" "$@" >"$OUT/$name.txt" &
  local lg=$! t0 m0 n0 r0 t1 m1 n1 r1
  # The measured phase has begun once the node routes messages.
  for _ in $(seq 300); do
    [ "$(node_messages "$METRICS")" -gt 0 ] && break
    sleep 0.05
  done
  sleep "$SKIP"
  t0=$(date +%s.%N); m0=$(node_messages "$METRICS"); n0=$(cpu_seconds "$PID"); r0=$(cpu_seconds "$REDIS_PID")
  sleep "$(awk -v d="$DUR" -v s="$SKIP" 'BEGIN { w = d - s - 1; print (w > 1 ? w : 1) }')"
  t1=$(date +%s.%N); m1=$(node_messages "$METRICS"); n1=$(cpu_seconds "$PID"); r1=$(cpu_seconds "$REDIS_PID")
  wait "$lg"
  awk -v t0="$t0" -v t1="$t1" -v m0="$m0" -v m1="$m1" -v n0="$n0" -v n1="$n1" -v r0="$r0" -v r1="$r1" \
    -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
      m = m1 - m0; printf "{\"seconds\":%.3f,\"messages\":%d,\"msgs_per_sec\":%.1f,", t1 - t0, m, m / (t1 - t0);
      printf "\"node_cpu_s\":%.3f,\"redis_cpu_s\":%.3f,", n1 - n0, r1 - r0;
      printf "\"node_us_per_msg\":%.2f,\"redis_us_per_msg\":%.2f,\"load1\":%s}\n",
        (m > 0 ? (n1 - n0) * 1e6 / m : 0), (m > 0 ? (r1 - r0) * 1e6 / m : 0), load }' >"$OUT/$name.steady"
}
steady() { jq -r "$2" "$OUT/$1.steady"; }

STORES=(memory redis)
for round in $(seq "$ROUNDS"); do
  for s in "${STORES[@]}"; do
    start_node "$s"
    run "sat-$s-$round" --rate 0 --window "$WINDOW"
    stop
  done
done
for rate in $RATES; do
  for s in "${STORES[@]}"; do
    start_node "$s"
    run "fixed$rate-$s" --rate "$rate"
    stop
  done
done

# --- tables -------------------------------------------------------------
lost() { echo $(( $(field "$1" .messages.lost) )); }
{
  echo "Machine: $(machine)"
  echo "Node: --cores $NODE_CORES, rate limits raised; redis: $(redis-server --version | awk '{ print $3 }'), no persistence, one per run set${FLUSH_US:+; --redis-flush-us $FLUSH_US}."
  echo "loadgen direct, $USERS users, ${DUR}s per run; saturation = closed loop, window $WINDOW; steady window = ${SKIP}s after the first message to 1 s before the end."
  echo
  echo "| run | store | msg/s (loadgen) | msg/s (steady) | node CPU µs/msg (steady) | redis-server CPU µs/msg (steady) | node CPU µs/msg (whole run) | p50 ms | p99 ms | lost | load avg |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  # row LABEL STORE RUN: one table row from run RUN's report and samples.
  row() {
    local n=$3
    printf '| %s | %s | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" \
      "$(field "$n" .throughput.msgs_per_sec)" "$(steady "$n" .msgs_per_sec)" \
      "$(steady "$n" .node_us_per_msg)" "$(steady "$n" .redis_us_per_msg)" \
      "$(us_per_msg "$(field "$n" '.cpu.server_seconds // "-"')" "$(field "$n" .messages.received)")" \
      "$(ms "$(field "$n" .latency_us.p50)")" "$(ms "$(field "$n" .latency_us.p99)")" "$(lost "$n")" "$(steady "$n" .load1)"
  }
  for round in $(seq "$ROUNDS"); do
    for s in "${STORES[@]}"; do row "saturation #$round" "$s" "sat-$s-$round"; done
  done
  for rate in $RATES; do
    for s in "${STORES[@]}"; do row "$rate msg/s" "$s" "fixed$rate-$s"; done
  done
  echo
  echo "Ratios redis / memory at saturation (per round): node CPU µs/msg (steady), msg/s (loadgen):"
  for round in $(seq "$ROUNDS"); do
    echo "- round $round: CPU $(ratio "$(steady "sat-redis-$round" .node_us_per_msg)" "$(steady "sat-memory-$round" .node_us_per_msg)")×," \
      "msg/s $(ratio "$(field "sat-redis-$round" .throughput.msgs_per_sec)" "$(field "sat-memory-$round" .throughput.msgs_per_sec)")×;" \
      "node + redis-server CPU $(ratio "$(awk -v a="$(steady "sat-redis-$round" .node_us_per_msg)" -v b="$(steady "sat-redis-$round" .redis_us_per_msg)" 'BEGIN { print a + b }')" "$(steady "sat-memory-$round" .node_us_per_msg)")×"
  done
} | tee "$OUT/table.md"
say "reports and logs in $OUT"
