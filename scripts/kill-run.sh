#!/usr/bin/env bash
# The kill run (issue 9, acceptance): users exchanging direct messages
# through node A, A killed with SIGKILL mid-run, the users moved to node B,
# both nodes on one Redis; loadgen reports how many of the messages the
# server had acked were never delivered (lost_acked: must be 0) apart from
# those sent and never acked (lost_unacked: a client would resend them).
#
#   ./scripts/kill-run.sh
#
# Steps: one redis-server (no persistence) on a free loopback port; nodes A
# and B (same SHARDCAST_SECRET, same --redis URL, --node-id a / b, their own
# ephemeral ports, --cores NODE_CORES); `loadgen direct --target A
# --failover-target B` at USERS users and RATE msg/s for DUR s; `kill -9 A`
# KILL_AFTER s after A routed its first message; loadgen's users see their
# connections end, reconnect to B with their last resume token, and B replays
# from Redis. Exits 1 if lost_acked > 0.
#
# Knobs (environment): USERS (400), RATE (2000), DUR (15), KILL_AFTER (5),
# NODE_CORES (2), OUT (target/kill-run), SKIP_BUILD=1 with NODE_BIN/LOADGEN;
# STORE=memory runs the same with the in-memory store (a control: what A
# had acked but not yet delivered dies with it, so lost_acked may be > 0).
# Everything is on loopback and bounded by DUR + loadgen's drain.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench.sh

USERS=${USERS:-400}
RATE=${RATE:-2000}
DUR=${DUR:-15}
KILL_AFTER=${KILL_AFTER:-5}
NODE_CORES=${NODE_CORES:-2}
STORE=${STORE:-redis}
OUT=${OUT:-target/kill-run}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
need jq
need curl
need python3
need redis-server
need redis-cli
need ss

build_release
trap cleanup EXIT
start_redis

SHARDCAST_SECRET=$(head -c 24 /dev/urandom | base64)
export SHARDCAST_SECRET
STORE_ARGS=(--redis "$REDIS_URL")
[ "$STORE" = memory ] && STORE_ARGS=()
node() { # ID
  start "node-$1" "$NODE_BIN" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    --cores "$NODE_CORES" --node-id "$1" "${STORE_ARGS[@]}"
}
node a; A_PID=$PID A_ADDR=$ADDR A_METRICS=$METRICS
node b; B_PID=$PID B_ADDR=$ADDR B_METRICS=$METRICS
say "node a $A_ADDR (pid $A_PID), node b $B_ADDR (pid $B_PID), $(machine)"

CMD=("$LOADGEN" direct --target "ws://$A_ADDR/ws" --failover-target "ws://$B_ADDR/ws"
  --users "$USERS" --rate "$RATE" --duration "$DUR" --quiet
  --server-pid "$B_PID" --report "$OUT/kill.json")
echo "${CMD[*]}" >"$OUT/command.txt"
"${CMD[@]}" >"$OUT/kill.txt" &
LG=$!
for _ in $(seq 300); do
  [ "$(node_messages "$A_METRICS")" -gt 0 ] && break
  sleep 0.05
done
sleep "$KILL_AFTER"
A_ROUTED=$(node_messages "$A_METRICS")
A_PORT=${A_ADDR##*:}
T_KILL=$(date +%s%N)
kill -9 "$A_PID"
# How long A's client sockets outlive the kill (sends into them are lost,
# never acked): poll until no established connection to A's port is left.
for _ in $(seq 2000); do
  [ "$(ss -Htn state established "( sport = :$A_PORT )" | wc -l)" = 0 ] && break
  sleep 0.005
done
A_GONE_MS=$(( ($(date +%s%N) - T_KILL) / 1000000 ))
say "killed node a (kill -9) after ${KILL_AFTER}s; it had routed $A_ROUTED messages; its connections were gone ${A_GONE_MS} ms after the kill"
wait "$A_PID" 2>/dev/null || true
wait "$LG"
B_ROUTED=$(node_messages "$B_METRICS")
B_RESUMED=$(curl -s --max-time 2 "http://$B_METRICS/metrics" | awk '/^rtc_socket_reconnects_total/ { print $2 }')

cat "$OUT/kill.txt"
{
  echo "Machine: $(machine)"
  echo "Store: $STORE; nodes: $NODE_BIN --cores $NODE_CORES --node-id a|b ${STORE_ARGS[*]}"
  echo "Command: ${CMD[*]}"
  echo "node a killed ${KILL_AFTER}s after its first message (routed $A_ROUTED; its connections gone ${A_GONE_MS} ms after the kill); node b routed $B_ROUTED, resumed $B_RESUMED sessions from tokens."
  jq -r '"sent \(.messages.sent), acked \(.messages.acked), received \(.messages.received), lost \(.messages.lost) = lost_acked \(.messages.lost_acked) + lost_unacked \(.messages.lost_unacked), duplicated \(.messages.duplicated), reordered \(.messages.reordered), skipped \(.messages.skipped); connections dropped \(.connections.dropped), reconnects \(.connections.reconnects), reconnect attempts failed \(.connections.reconnect_failed); recovery p50 \(.recovery_latency_us.p50) µs, p99 \(.recovery_latency_us.p99) µs; errors \(.errors)"' "$OUT/kill.json"
} | tee "$OUT/result.md"
LOST_ACKED=$(jq -r .messages.lost_acked "$OUT/kill.json")
if [ "$LOST_ACKED" != 0 ]; then
  echo "kill-run: $LOST_ACKED acked messages were lost" >&2
  exit 1
fi
say "0 lost among acked messages; report in $OUT/kill.json"
