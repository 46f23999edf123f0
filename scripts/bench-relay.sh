#!/usr/bin/env bash
# The Kafka relay (issue 10): `loadgen direct` across a static three-node
# cluster against the same users on one node, side by side in one run, then
# the kill run of the cluster.
#
#   ./scripts/bench-relay.sh
#
# Set-up: one redis-server and one tansu broker (memory storage) on free
# loopback ports; a ring file naming three nodes n0..n2 (--cores 1 each,
# spread over the CPUs with --first-cpu); loadgen connects each user to its
# owner (`--ring`), so a pair's two users are on different nodes two times in
# three. The single node is the same binary with the same Redis and no
# --kafka/--ring (--cores 1: one node's worth of CPU).
#
# Runs (each DUR s): fixed rates RATES (open loop) and saturation (closed
# loop, window WINDOW), cluster and single node alternating. Per run: msg/s,
# p50/p99, server CPU µs/msg summed over the nodes (utime+stime from
# /proc/PID/stat over the steady part: SKIP s after the start to 1 s before
# the end, divided by the messages routed meanwhile), tansu's and
# redis-server's CPU µs/msg separately, the relay's mean batch size and the
# share of messages that crossed nodes.
#
# Then the kill run: the cluster at KILL_RATE msg/s for KILL_DUR s, node n1
# SIGKILLed KILL_AFTER s in and restarted (same id, port and ring) 1 s
# later; loadgen's users reconnect with their resume tokens. Exits 1 if
# lost_acked > 0.
#
# Knobs (environment): DUR (10), USERS (300), WINDOW (16), RATES ("2000"),
# SKIP (2), KILL_RATE (1000), KILL_DUR (15), KILL_AFTER (5),
# OUT (target/bench-relay), SKIP_BUILD=1 with NODE_BIN/LOADGEN, TANSU (the
# tansu binary), NODE_ARGS (extra flags of the cluster's nodes),
# FIXED_ONLY=1 (no saturation runs). Everything is on loopback and bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench.sh

DUR=${DUR:-10}
USERS=${USERS:-300}
WINDOW=${WINDOW:-16}
RATES=${RATES:-2000}
SKIP=${SKIP:-2}
KILL_RATE=${KILL_RATE:-1000}
KILL_DUR=${KILL_DUR:-15}
KILL_AFTER=${KILL_AFTER:-5}
OUT=${OUT:-target/bench-relay}
TANSU=${TANSU:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
need jq
need curl
need python3
need redis-server
need redis-cli
[ -x "$TANSU" ] || { echo "${0##*/}: needs tansu (cargo install tansu --features dynostore)" >&2; exit 1; }

build_release
trap cleanup EXIT
start_redis
KAFKA_PORT=$(free_port)
"$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
  --storage-engine memory://tansu/ >"$OUT/tansu.log" 2>&1 &
TANSU_PID=$!
PIDS+=("$TANSU_PID")
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && break
  sleep 0.1
done
say "tansu on 127.0.0.1:$KAFKA_PORT (pid $TANSU_PID), $(machine)"

SHARDCAST_SECRET=$(head -c 24 /dev/urandom | base64)
export SHARDCAST_SECRET
PORTS=("$(free_port)" "$(free_port)" "$(free_port)")
RING="$OUT/ring.json"
jq -n --argjson p "$(printf '%s\n' "${PORTS[@]}" | jq -s .)" \
  '{version: 1, slots: 65536, nodes: [range(3) as $i |
     {id: "n\($i)", weight: 1, zone: "", addr: "ws://127.0.0.1:\($p[$i])/ws"}]}' >"$RING"

NODE_PIDS=("" "" "")
NODE_METRICS=("" "" "")
cluster_node() { # I
  start "n$1" "$NODE_BIN" --listen "127.0.0.1:${PORTS[$1]}" --metrics-listen 127.0.0.1:0 \
    --cores 1 --first-cpu $(($1 % 2)) --node-id "n$1" --redis "$REDIS_URL" \
    --kafka "127.0.0.1:$KAFKA_PORT" --ring "$RING" ${NODE_ARGS:-}
  NODE_PIDS[$1]=$PID
  NODE_METRICS[$1]=$METRICS
}
for i in 0 1 2; do cluster_node "$i"; done
start single "$NODE_BIN" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --cores 1 \
  --node-id single --redis "$REDIS_URL"
SINGLE_PID=$PID SINGLE_ADDR=$ADDR SINGLE_METRICS=$METRICS

metric_sum() { # SERIES METRICS_ADDR...
  local series=$1; shift
  local total=0 m v
  for m in "$@"; do
    v=$(curl -s --max-time 2 "http://$m/metrics" | awk -v s="$series" '$1 == s { print $2 }')
    total=$(awk -v a="$total" -v b="${v:-0}" 'BEGIN { printf "%.0f", a + b }')
  done
  echo "$total"
}
routed() { local t=0 m; for m in "$@"; do t=$((t + $(node_messages "$m"))); done; echo "$t"; }

# run NAME KIND ARGS... : one loadgen direct run (KIND cluster|single);
# writes NAME.json and NAME.steady (key=value lines).
run() {
  local name=$1 kind=$2; shift 2
  local target pids metrics ring=()
  if [ "$kind" = cluster ]; then
    target="ws://127.0.0.1:${PORTS[0]}/ws" pids=("${NODE_PIDS[@]}") metrics=("${NODE_METRICS[@]}")
    ring=(--ring "$RING")
  else
    target="ws://$SINGLE_ADDR/ws" pids=("$SINGLE_PID") metrics=("$SINGLE_METRICS")
  fi
  local cmd=("$LOADGEN" direct --target "$target" "${ring[@]}" --users "$USERS"
    --duration "$DUR" --quiet --run-id "$name" --report "$OUT/$name.json" "$@")
  echo "${cmd[*]}" >>"$OUT/commands.txt"
  "${cmd[@]}" >"$OUT/$name.txt" &
  local lg=$!
  sleep "$SKIP"
  local c0 t0 r0 k0 b0 n0 x0
  c0=$(cpu_seconds "${pids[@]}") t0=$(cpu_seconds "$TANSU_PID") r0=$(cpu_seconds "$REDIS_PID")
  n0=$(routed "${metrics[@]}")
  x0=$(metric_sum 'rtc_socket_messages_total{path="relay"}' "${metrics[@]}")
  k0=$(metric_sum rtc_relay_batch_size_count "${metrics[@]}")
  b0=$(metric_sum rtc_relay_batch_size_sum "${metrics[@]}")
  local t_start
  t_start=$(date +%s.%N)
  sleep $((DUR - SKIP - 1))
  local c1 t1 r1 k1 b1 n1 x1 secs
  c1=$(cpu_seconds "${pids[@]}") t1=$(cpu_seconds "$TANSU_PID") r1=$(cpu_seconds "$REDIS_PID")
  n1=$(routed "${metrics[@]}")
  x1=$(metric_sum 'rtc_socket_messages_total{path="relay"}' "${metrics[@]}")
  k1=$(metric_sum rtc_relay_batch_size_count "${metrics[@]}")
  b1=$(metric_sum rtc_relay_batch_size_sum "${metrics[@]}")
  secs=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  wait "$lg" || true
  local n=$((n1 - n0))
  {
    echo "msgs_per_sec=$(awk -v n=$n -v s="$secs" 'BEGIN { printf "%.0f", n / s }')"
    echo "node_us=$(us_per_msg "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" "$n")"
    echo "tansu_us=$(us_per_msg "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$n")"
    echo "redis_us=$(us_per_msg "$(awk -v a="$r0" -v b="$r1" 'BEGIN { print b - a }')" "$n")"
    echo "relayed=$(ratio $((x1 - x0)) "$n")"
    echo "batch=$(ratio $((b1 - b0)) $((k1 - k0)))"
    echo "load1=$(cut -d' ' -f1 /proc/loadavg)"
  } >"$OUT/$name.steady"
}
steady() { sed -n "s/^$2=//p" "$OUT/$1.steady"; }

RUNS=()
for rate in $RATES; do
  for kind in cluster single; do
    say "$kind, $rate msg/s"
    run "fixed$rate-$kind" "$kind" --rate "$rate"
    RUNS+=("fixed$rate-$kind")
  done
done
[ "${FIXED_ONLY:-0}" = 1 ] && KINDS_SAT="" || KINDS_SAT="cluster single"
for kind in $KINDS_SAT; do
  say "$kind, saturation"
  run "sat-$kind" "$kind" --rate 0 --window "$WINDOW"
  RUNS+=("sat-$kind")
done

if [ "${FIXED_ONLY:-0}" != 1 ]; then
say "kill run: cluster at $KILL_RATE msg/s for ${KILL_DUR}s, n1 SIGKILLed after ${KILL_AFTER}s, restarted 1 s later"
KILL_CMD=("$LOADGEN" direct --target "ws://127.0.0.1:${PORTS[0]}/ws" --ring "$RING"
  --users "$USERS" --rate "$KILL_RATE" --duration "$KILL_DUR" --quiet --run-id kill
  --report "$OUT/kill.json")
echo "${KILL_CMD[*]}" >>"$OUT/commands.txt"
"${KILL_CMD[@]}" >"$OUT/kill.txt" &
LG=$!
sleep "$KILL_AFTER"
kill -9 "${NODE_PIDS[1]}"
sleep 1
cluster_node 1
wait "$LG" || true
fi

{
  echo "loadgen direct, $USERS users, ${DUR}s per run; cluster = 3 nodes × --cores 1 + Redis + tansu, users on their owners (--ring); single = 1 node --cores 1 + Redis; steady window = ${SKIP}s after the start to 1 s before the end; CPU summed over the nodes."
  echo
  echo "| run | msg/s (loadgen) | msg/s (steady) | node CPU µs/msg | tansu CPU µs/msg | redis CPU µs/msg | p50 ms | p99 ms | relayed share | relay batch (mean) | lost | load avg |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  for n in "${RUNS[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" \
      "$(field "$n" .throughput.msgs_per_sec)" "$(steady "$n" msgs_per_sec)" \
      "$(steady "$n" node_us)" "$(steady "$n" tansu_us)" "$(steady "$n" redis_us)" \
      "$(ms "$(field "$n" .latency_us.p50)")" "$(ms "$(field "$n" .latency_us.p99)")" \
      "$(steady "$n" relayed)" "$(steady "$n" batch)" "$(field "$n" .messages.lost)" "$(steady "$n" load1)"
  done
  echo
  if [ -f "$OUT/kill.json" ]; then echo "Kill run: sent $(field kill .messages.sent), received $(field kill .messages.received), lost_acked $(field kill '.messages.lost_acked // "-"'), lost_unacked $(field kill '.messages.lost_unacked // "-"'), duplicates $(field kill .messages.duplicated), reordered $(field kill .messages.reordered), reconnects $(field kill '.connections.reconnects // "-"')."; fi
} | tee "$OUT/table.md"
[ ! -f "$OUT/kill.json" ] || [ "$(field kill '.messages.lost_acked // 0')" = 0 ]
