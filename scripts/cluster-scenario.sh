#!/usr/bin/env bash
# The changing-cluster scenario (issue 11, acceptance): `loadgen direct
# --control` at a fixed rate while the cluster goes 3 → 4 nodes, drains one,
# loses one to SIGKILL and gets it back. For each change the verdict gives the
# ring versions before/after, the optimum (the run's users whose owner changed
# between those rings, by shardcast::ring), the users that moved (loadgen's
# --events log), whether the two sets are equal, the failover time of the
# kill (kill → 99 % / 100 % of its users welcomed again), and the loss
# accounting. Exits 1 if an acked message was lost, a flow was reordered
# after dedup, or a change moved anyone but the ring's owner changes.
#
#   ./scripts/cluster-scenario.sh
#
# Steps: redis-server and a tansu broker of its own (memory storage), both
# on free loopback ports; shardcast-ctl (--kafka, the cluster secret);
# nodes n0 n1 n2 (--control, --redis, --kafka, each on a fixed free port so
# that n1 comes back where it was); loadgen direct --control at RATE msg/s
# over USERS users. After WARM s: start n3 (join); GAP s later SIGTERM n0
# (drain); GAP s later SIGKILL n1; GAP s later start n1 again (same id,
# same port). Before each change the script saves GET /api/v1/ring, after it
# polls until the ring shows the change (saved, with the time it appeared).
# Then loadgen-cluster-report judges the run.
#
# Knobs (environment): USERS (300), RATE (400; tansu relays ~1,200 msg/s
# here), WARM (5), GAP (14: more than the nodes' --rebalance-secs + a
# reconnect, so that each change's moves end before the next change),
# TAIL (20: the last change's moves take up to --rebalance-secs, and the
# changes start later than WARM + k GAP by the time each takes), NODE_CORES (1), CONNECT_RATE (500 users/s at the start: gentle
# on a shared machine, see docs/benchmarks.md, "Changing cluster"), HEARTBEAT_MS / REBALANCE_SECS / GRACE_SECS
# (empty: the defaults, 500 / 10 / 1.5), OUT (target/cluster-scenario),
# SKIP_BUILD=1 with NODE_BIN / CTL_BIN / LOADGEN / REPORT_BIN, TANSU_BIN.
# Everything is on loopback, bounded by WARM + 3 GAP + TAIL + loadgen's
# drain, and every process it started is stopped by its pid on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench.sh

USERS=${USERS:-300}
RATE=${RATE:-400}
WARM=${WARM:-5}
GAP=${GAP:-14}
TAIL=${TAIL:-20}
NODE_CORES=${NODE_CORES:-1}
CONNECT_RATE=${CONNECT_RATE:-500}
OUT=${OUT:-target/cluster-scenario}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
need jq
need curl
need python3
need redis-server
need redis-cli
TANSU_BIN=${TANSU_BIN:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}
[ -x "$TANSU_BIN" ] || { echo "${0##*/}: needs tansu (cargo install tansu --features dynostore)" >&2; exit 1; }

build_release
CTL_BIN=${CTL_BIN:-$PWD/target/release/shardcast-ctl}
REPORT_BIN=${REPORT_BIN:-$PWD/target/release/loadgen-cluster-report}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p shardcast --bin shardcast-ctl >&2
fi
# Stop what we started, by pid: SIGTERM, then SIGKILL for whatever is
# still there after 5 s (a draining node exits by itself once its clients
# are gone).
stop_all() {
  cleanup
  for _ in $(seq 50); do
    local alive=0 p
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap stop_all EXIT
start_redis

TANSU_PORT=$(free_port)
say "tansu on 127.0.0.1:$TANSU_PORT"
RUST_LOG=error "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT" \
  --storage-engine memory://tansu/ >"$OUT/tansu.log" 2>&1 &
TANSU_PID=$!
PIDS+=("$TANSU_PID")
for _ in $(seq 200); do
  (exec 3<>"/dev/tcp/127.0.0.1/$TANSU_PORT") 2>/dev/null && break
  sleep 0.1
done
KAFKA=127.0.0.1:$TANSU_PORT

SHARDCAST_SECRET=$(head -c 24 /dev/urandom | base64)
export SHARDCAST_SECRET
export RUST_LOG=${RUST_LOG:-warn}
CTL_ARGS=(--listen 127.0.0.1:0 --kafka "$KAFKA")
[ -n "${GRACE_SECS:-}" ] && CTL_ARGS+=(--heartbeat-grace-secs "$GRACE_SECS")
# The control plane logs each ring change at info ("ring changed", node,
# reason): the record of every version, scripted or not.
RUST_LOG=${CTL_LOG:-info} "$CTL_BIN" "${CTL_ARGS[@]}" >"$OUT/ctl.server.log" 2>&1 &
CTL_PID=$!
PIDS+=("$CTL_PID")
CTL=
for _ in $(seq 100); do
  CTL=$(sed -n 's/.*listening http=\([^ ]*\).*/\1/p' "$OUT/ctl.server.log" | head -1 || true)
  [ -n "$CTL" ] && break
  sleep 0.1
done
[ -n "$CTL" ] || { echo "${0##*/}: shardcast-ctl did not start; see $OUT/ctl.server.log" >&2; exit 1; }
CTL=http://$CTL
say "shardcast-ctl at $CTL"

NODE_ARGS=(--cores "$NODE_CORES" --control "$CTL" --redis "$REDIS_URL" --kafka "$KAFKA")
[ -n "${HEARTBEAT_MS:-}" ] && NODE_ARGS+=(--heartbeat-ms "$HEARTBEAT_MS")
[ -n "${REBALANCE_SECS:-}" ] && NODE_ARGS+=(--rebalance-secs "$REBALANCE_SECS")
declare -A PORT NODE_PID
for i in 0 1 2 3; do PORT[n$i]=$(free_port); done
node() { # ID [LOG-SUFFIX]
  start "$1${2:-}" "$NODE_BIN" --listen "127.0.0.1:${PORT[$1]}" --metrics-listen 127.0.0.1:0 \
    --node-id "$1" "${NODE_ARGS[@]}"
  NODE_PID[$1]=$PID
}
ring() { curl -s --max-time 2 "$CTL/api/v1/ring"; }
# wait_ring JQ-CONDITION FILE : polls the ring (every 10 ms, at most 30 s)
# until the condition holds; saves it to FILE and sets RING_AT (unix ms).
wait_ring() {
  for _ in $(seq 3000); do
    if ring >"$2.tmp" 2>/dev/null && jq -e "$1" "$2.tmp" >/dev/null 2>&1; then
      RING_AT=$(date +%s%3N)
      mv "$2.tmp" "$2"
      return 0
    fi
    sleep 0.01
  done
  echo "${0##*/}: the ring never satisfied $1; see $OUT" >&2
  exit 1
}
has() { echo "any(.nodes[]; .id == \"$1\")"; }

for i in 0 1 2; do node "n$i"; done
wait_ring '(.nodes | length) == 3' "$OUT/ring-0.json"
say "n0 n1 n2 in ring version $(jq .version "$OUT/ring-0.json"); $(machine)"
# Every node routes by the 3-node ring before the first user connects.
sleep 1

DUR=$((WARM + 3 * GAP + TAIL))
CMD=("$LOADGEN" direct --control "$CTL" --events "$OUT/events.jsonl"
  --users "$USERS" --rate "$RATE" --duration "$DUR" --connect-rate "$CONNECT_RATE" --cores 1 --quiet
  --report "$OUT/run.json")
echo "${CMD[*]}" >"$OUT/command.txt"
"${CMD[@]}" >"$OUT/run.txt" &
LG=$!
PIDS+=("$LG")

: >"$OUT/changes.jsonl"
K=0
# change EVENT NODE JQ-CONDITION ACTION... : saves the ring, runs ACTION,
# waits for the ring to show the change, appends the change record.
change() {
  local event=$1 node=$2 cond=$3
  shift 3
  K=$((K + 1))
  ring >"$OUT/ring-$K-before.json"
  local at
  at=$(date +%s%3N)
  "$@"
  wait_ring "$cond" "$OUT/ring-$K-after.json"
  jq -c -n --arg e "$event" --arg n "$node" --argjson at "$at" --argjson r "$RING_AT" \
    --slurpfile b "$OUT/ring-$K-before.json" --slurpfile a "$OUT/ring-$K-after.json" \
    '{event: $e, node: $n, atMs: $at, ringAtMs: $r, ringBefore: $b[0], ringAfter: $a[0]}' \
    >>"$OUT/changes.jsonl"
  say "$event $node at $at: ring $(jq .version "$OUT/ring-$K-before.json") → $(jq .version "$OUT/ring-$K-after.json") after $((RING_AT - at)) ms"
}
signal() { kill "-$1" "${NODE_PID[$2]}"; }

sleep "$WARM"
change join n3 "$(has n3)" node n3
sleep "$GAP"
change drain n0 "$(has n0) | not" signal TERM n0
sleep "$GAP"
change kill n1 "$(has n1) | not" signal KILL n1
sleep "$GAP"
change restart n1 "$(has n1)" node n1 .restarted
wait "$LG"
ring >"$OUT/ring-final.json"

cat "$OUT/run.txt"
set +e
"$REPORT_BIN" --changes "$OUT/changes.jsonl" --events "$OUT/events.jsonl" \
  --report "$OUT/run.json" --initial-ring "$OUT/ring-0.json" --final-ring "$OUT/ring-final.json" \
  --out "$OUT/verdict.json" \
  | tee "$OUT/result.txt"
STATUS=${PIPESTATUS[0]}
set -e
{
  echo "Machine: $(machine)"
  echo "Nodes: $NODE_BIN --cores $NODE_CORES ${NODE_ARGS[*]}"
  echo "Control plane: $CTL_BIN ${CTL_ARGS[*]}"
  echo "Command: ${CMD[*]}"
} >>"$OUT/result.txt"
if [ "$STATUS" != 0 ]; then
  echo "cluster-scenario: FAILED (see $OUT/result.txt, $OUT/verdict.json)" >&2
  exit 1
fi
say "every change moved exactly the ring's owner changes; 0 acked messages lost; $OUT/verdict.json"
