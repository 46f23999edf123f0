#!/usr/bin/env bash
# Side-by-side benchmarks: the same loadgen scenarios against shardcast and
# against the servers people would pick instead, on this machine, in one run.
#
#   echo:   shardcast /echo  vs  tokio + tokio-tungstenite  vs  Node.js `ws`
#           vs uWebSockets.js (@trufflesuite/uws-js-unofficial from npm, only
#           when its native binary loads)
#   direct: shardcast /ws    vs  tokio + tokio-tungstenite relay (user -> channel map)
#
# For each server and scenario it measures
#   - msg/s at saturation: closed loop (--rate 0), CONNS connections (USERS
#     users for direct) with WINDOW messages in flight each;
#   - p99 at a fixed sub-saturation rate: open loop at FIXED_FRACTION of the
#     *lowest* saturation throughput any server of that scenario reached, so
#     the rate is below saturation for every server.
# and prints a markdown table with absolute figures and ratios to shardcast
# (ratio = peer / shardcast: above 1 means the peer has more msg/s, or a
# higher, i.e. worse, p99).
#
# Knobs (environment): DUR (s per run, 10), CONNS (100), USERS (1000),
# WINDOW (16), FIXED_FRACTION (0.25: loadgen shares the CPUs with the server), NODE_CORES (2), PEER_THREADS (2),
# OUT (target/bench-compare); SKIP_BUILD=1 with NODE_BIN/LOADGEN to use
# binaries built elsewhere. Servers listen on 127.0.0.1 ephemeral ports.
# Everything runs on loopback and every run is bounded by DUR.
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-10}
CONNS=${CONNS:-100}
USERS=${USERS:-1000}
WINDOW=${WINDOW:-16}
FIXED_FRACTION=${FIXED_FRACTION:-0.25}
NODE_CORES=${NODE_CORES:-2}
PEER_THREADS=${PEER_THREADS:-2}
OUT=${OUT:-target/bench-compare}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

. scripts/lib/bench.sh
need cargo
need jq

NODE_BIN=${NODE_BIN:-$PWD/target/release/shardcast-node}
LOADGEN=${LOADGEN:-$PWD/target/release/loadgen}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  say "building shardcast-node and loadgen (release)"
  cargo build --release --bin shardcast-node >&2
  cargo build --release -p loadgen >&2
fi

say "building the tokio baselines (release, own workspaces)"
for b in tokio-echo tokio-direct; do
  (cd "benches/baselines/$b" && CARGO_TARGET_DIR="$PWD/../../../target/baselines" cargo build --release >&2)
done
TOKIO_ECHO=$PWD/target/baselines/release/tokio-echo-baseline
TOKIO_DIRECT=$PWD/target/baselines/release/tokio-direct-baseline

HAVE_NODE=0
if command -v node >/dev/null && command -v npm >/dev/null; then
  say "installing ws from npm"
  if (cd benches/baselines/node-ws-echo && npm install --no-audit --no-fund --silent >&2); then
    HAVE_NODE=1
  fi
fi
# uWebSockets.js: the npm copy that installs here is the
# @trufflesuite/uws-js-unofficial build; its server.js refuses to start
# unless the native binary loads (the package would fall back to pure JS).
HAVE_UWS=0
UWS_NOTE="uWebSockets.js: skipped (npm or its native binary unavailable)"
if [ "$HAVE_NODE" = 1 ] && (cd benches/baselines/uws-echo && npm install --no-audit --no-fund --silent >&2) \
   && node -e "require(require('path').join(require('path').dirname(require.resolve('@trufflesuite/uws-js-unofficial/package.json', {paths: ['benches/baselines/uws-echo']})), 'binaries', 'uws_' + process.platform + '_' + process.arch + '_' + process.versions.modules + '.node'))" 2>/dev/null; then
  HAVE_UWS=1
  UWS_NOTE="uWebSockets.js: @trufflesuite/uws-js-unofficial $(node -p "require(require.resolve('@trufflesuite/uws-js-unofficial/package.json', {paths: ['benches/baselines/uws-echo']})).version"), native binary"
fi

trap cleanup EXIT

# run NAME SCENARIO URL ARGS... : one loadgen run, report in $OUT/NAME.json
run() {
  local name=$1 scenario=$2 url=$3; shift 3
  say "$name"
  "$LOADGEN" "$scenario" --target "$url" --duration "$DUR" --quiet \
    --server-pid "$PID" --report "$OUT/$name.json" "$@" >"$OUT/$name.txt"
}

SHARDCAST_SECRET=$(head -c 24 /dev/urandom | base64)
export SHARDCAST_SECRET
start_shardcast() {
  start shardcast "$NODE_BIN" --listen 127.0.0.1:0 \
    --metrics-listen 127.0.0.1:0 --cores "$NODE_CORES" --echo \
    --rate-messages-per-sec 1000000 --rate-messages-burst 1000000
}

# --- echo -------------------------------------------------------------
ECHO_SERVERS=(shardcast tokio)
[ "$HAVE_NODE" = 1 ] && ECHO_SERVERS+=(node-ws)
[ "$HAVE_UWS" = 1 ] && ECHO_SERVERS+=(uws)
start_echo() {
  case $1 in
    shardcast) start_shardcast; URL="ws://$ADDR/echo" ;;
    tokio) start tokio "$TOKIO_ECHO" 127.0.0.1:0 "$PEER_THREADS"; URL="ws://$ADDR/" ;;
    node-ws) start node-ws node benches/baselines/node-ws-echo/server.js 127.0.0.1:0; URL="ws://$ADDR/" ;;
    uws) start uws node benches/baselines/uws-echo/server.js 127.0.0.1:0; URL="ws://$ADDR/" ;;
  esac
}
for s in "${ECHO_SERVERS[@]}"; do
  start_echo "$s"
  run "echo-sat-$s" echo "$URL" --connections "$CONNS" --rate 0 --window "$WINDOW"
  stop
done
ECHO_MIN=$(for s in "${ECHO_SERVERS[@]}"; do field "echo-sat-$s" .throughput.msgs_per_sec; done | sort -g | head -1)
ECHO_FIXED=$(awk -v m="$ECHO_MIN" -v f="$FIXED_FRACTION" 'BEGIN { printf "%d", m * f }')
for s in "${ECHO_SERVERS[@]}"; do
  start_echo "$s"
  run "echo-fixed-$s" echo "$URL" --connections "$CONNS" --rate "$ECHO_FIXED"
  stop
done

# --- direct -------------------------------------------------------------
DIRECT_SERVERS=(shardcast tokio)
start_direct() {
  case $1 in
    shardcast) start_shardcast; URL="ws://$ADDR/ws" ;;
    tokio) start tokio "$TOKIO_DIRECT" 127.0.0.1:0 "$PEER_THREADS"; URL="ws://$ADDR/ws" ;;
  esac
}
for s in "${DIRECT_SERVERS[@]}"; do
  start_direct "$s"
  run "direct-sat-$s" direct "$URL" --users "$USERS" --rate 0 --window "$WINDOW"
  stop
done
DIRECT_MIN=$(for s in "${DIRECT_SERVERS[@]}"; do field "direct-sat-$s" .throughput.msgs_per_sec; done | sort -g | head -1)
DIRECT_FIXED=$(awk -v m="$DIRECT_MIN" -v f="$FIXED_FRACTION" 'BEGIN { printf "%d", m * f }')
for s in "${DIRECT_SERVERS[@]}"; do
  start_direct "$s"
  run "direct-fixed-$s" direct "$URL" --users "$USERS" --rate "$DIRECT_FIXED"
  stop
done

# --- table --------------------------------------------------------------
row() { # scenario server
  local sc=$1 s=$2
  local sat fixed p99 lost base_sat base_p99 cpu rss msgs cpu_us
  sat=$(field "$sc-sat-$s" .throughput.msgs_per_sec)
  p99=$(field "$sc-fixed-$s" .latency_us.p99)
  lost=$(( $(field "$sc-sat-$s" .messages.lost) + $(field "$sc-fixed-$s" .messages.lost) ))
  cpu=$(field "$sc-sat-$s" '.cpu.server_seconds // "-"')
  rss=$(field "$sc-sat-$s" '.server_rss_bytes // 0')
  msgs=$(field "$sc-sat-$s" .messages.received)
  cpu_us=$(us_per_msg "$cpu" "$msgs")
  base_sat=$(field "$sc-sat-shardcast" .throughput.msgs_per_sec)
  base_p99=$(field "$sc-fixed-shardcast" .latency_us.p99)
  printf '| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n' "$sc" "$s" "$sat" "$(ratio "$sat" "$base_sat")" \
    "$(ms "$p99")" "$(ratio "$p99" "$base_p99")" "$lost" "$cpu" "$cpu_us" "$((rss / 1048576))"
}
{
  echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(uname -sr), $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "Runs: ${DUR}s each; echo ${CONNS} connections, direct ${USERS} users; saturation = closed loop, window ${WINDOW};"
  echo "fixed rate = ${FIXED_FRACTION} x lowest saturation: echo ${ECHO_FIXED} msg/s, direct ${DIRECT_FIXED} msg/s."
  echo "shardcast: --cores ${NODE_CORES}, rate limits raised; peers: ${PEER_THREADS} threads (node: 1)."
  echo "$UWS_NOTE"
  echo
  echo "| scenario | server | msg/s at saturation | ratio | p99 ms at fixed rate | ratio | lost | server CPU s (sat) | server CPU µs/msg (sat) | server RSS MiB (sat) |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for s in "${ECHO_SERVERS[@]}"; do row echo "$s"; done
  for s in "${DIRECT_SERVERS[@]}"; do row direct "$s"; done
} | tee "$OUT/table.md"
say "reports and logs in $OUT"
