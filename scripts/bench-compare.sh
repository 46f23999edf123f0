#!/usr/bin/env bash
# Side-by-side benchmarks: the same loadgen scenarios against shardcast and
# against the servers people would pick instead, on this machine, in one run.
#
#   echo:   shardcast /echo  vs  tokio + tokio-tungstenite  vs  Node.js `ws`
#           vs uWebSockets.js (@trufflesuite/uws-js-unofficial from npm, only
#           when its native binary loads)
#   direct: shardcast /ws (--cores NODE_CORES, and --cores 1 at the fixed
#           rates)  vs  tokio + tokio-tungstenite relay (user -> channel map)
#
# For each server and scenario it measures
#   - msg/s and server CPU per message at saturation: closed loop (--rate 0),
#     CONNS connections (USERS users for direct) with WINDOW messages in
#     flight each;
#   - at each fixed rate of RATES (open loop; echo CONNS connections, direct
#     FIXED_USERS users): server CPU µs per message, p50/p99, and loadgen's
#     own CPU µs per message (the load client must cost less than the server
#     it measures, or it sets the latency it reports).
# and prints two markdown tables with absolute figures and ratios to
# shardcast (ratio = peer / shardcast: above 1 means the peer has more msg/s,
# or more CPU per message, or a higher, i.e. worse, p99).
#
# Knobs (environment): DUR (s per run, 10), CONNS (100), USERS (1000),
# FIXED_USERS (400), WINDOW (16), RATES ("2000 5000"; empty: none),
# SATURATION (1; 0 skips the closed-loop runs), SCENARIOS ("echo direct"),
# LG_FIXED_ARGS (extra loadgen flags for the fixed-rate runs, e.g.
# "--cores 1": one loadgen executor costs less per message at these rates),
# NODE_CORES (2), PEER_THREADS (2), NODE_EXTRA (extra shardcast-node flags),
# ALT_NODE_BIN (a second shardcast-node, e.g. main's, measured in the same
# run as "shardcast ALT_LABEL": before/after ratios from one run),
# OUT (target/bench-compare); SKIP_BUILD=1 with NODE_BIN/LOADGEN to use
# binaries built elsewhere. Servers listen on 127.0.0.1 ephemeral ports.
# Everything runs on loopback and every run is bounded by DUR.
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-10}
CONNS=${CONNS:-100}
USERS=${USERS:-1000}
FIXED_USERS=${FIXED_USERS:-400}
WINDOW=${WINDOW:-16}
RATES=${RATES-2000 5000}
SATURATION=${SATURATION:-1}
SCENARIOS=${SCENARIOS:-echo direct}
NODE_EXTRA=${NODE_EXTRA:-}
LG_FIXED_ARGS=${LG_FIXED_ARGS:-}
ALT_NODE_BIN=${ALT_NODE_BIN:-}
ALT_LABEL=${ALT_LABEL:-main}
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
# start_shardcast CORES [BIN]
start_shardcast() {
  # shellcheck disable=SC2086 # NODE_EXTRA is a list of flags
  start shardcast "${2:-$NODE_BIN}" --listen 127.0.0.1:0 \
    --metrics-listen 127.0.0.1:0 --cores "$1" --echo \
    --rate-messages-per-sec 1000000 --rate-messages-burst 1000000 $NODE_EXTRA
}
has() { case " $SCENARIOS " in *" $1 "*) return 0 ;; esac; return 1; }

ECHO_SERVERS=(shardcast)
[ -n "$ALT_NODE_BIN" ] && ECHO_SERVERS+=(alt)
ECHO_SERVERS+=(tokio)
[ "$HAVE_NODE" = 1 ] && ECHO_SERVERS+=(node-ws)
[ "$HAVE_UWS" = 1 ] && ECHO_SERVERS+=(uws)
start_echo() {
  case $1 in
    shardcast) start_shardcast "$NODE_CORES"; URL="ws://$ADDR/echo" ;;
    alt) start_shardcast "$NODE_CORES" "$ALT_NODE_BIN"; URL="ws://$ADDR/echo" ;;
    tokio) start tokio "$TOKIO_ECHO" 127.0.0.1:0 "$PEER_THREADS"; URL="ws://$ADDR/" ;;
    node-ws) start node-ws node benches/baselines/node-ws-echo/server.js 127.0.0.1:0; URL="ws://$ADDR/" ;;
    uws) start uws node benches/baselines/uws-echo/server.js 127.0.0.1:0; URL="ws://$ADDR/" ;;
  esac
}
DIRECT_SERVERS=(shardcast)
DIRECT_FIXED_SERVERS=(shardcast)
[ "$NODE_CORES" != 1 ] && DIRECT_FIXED_SERVERS+=(shardcast-c1)
if [ -n "$ALT_NODE_BIN" ]; then
  DIRECT_SERVERS+=(alt)
  DIRECT_FIXED_SERVERS+=(alt)
  [ "$NODE_CORES" != 1 ] && DIRECT_FIXED_SERVERS+=(alt-c1)
fi
DIRECT_SERVERS+=(tokio)
DIRECT_FIXED_SERVERS+=(tokio)
start_direct() {
  case $1 in
    shardcast) start_shardcast "$NODE_CORES"; URL="ws://$ADDR/ws" ;;
    shardcast-c1) start_shardcast 1; URL="ws://$ADDR/ws" ;;
    alt) start_shardcast "$NODE_CORES" "$ALT_NODE_BIN"; URL="ws://$ADDR/ws" ;;
    alt-c1) start_shardcast 1 "$ALT_NODE_BIN"; URL="ws://$ADDR/ws" ;;
    tokio) start tokio "$TOKIO_DIRECT" 127.0.0.1:0 "$PEER_THREADS"; URL="ws://$ADDR/ws" ;;
  esac
}

label() {
  case $1 in
    shardcast) echo "shardcast --cores $NODE_CORES" ;;
    shardcast-c1) echo "shardcast --cores 1" ;;
    alt) echo "shardcast $ALT_LABEL --cores $NODE_CORES" ;;
    alt-c1) echo "shardcast $ALT_LABEL --cores 1" ;;
    tokio) echo "tokio + tokio-tungstenite" ;;
    node-ws) echo "Node.js ws" ;;
    uws) echo "uWebSockets.js (native)" ;;
  esac
}

# --- runs ---------------------------------------------------------------
# Idle: a node with no connections must cost ~0 CPU (a spinning executor
# would show here).
IDLE_NOTE=""
for b in shardcast ${ALT_NODE_BIN:+alt}; do
  if [ "$b" = alt ]; then start_shardcast "$NODE_CORES" "$ALT_NODE_BIN"; else start_shardcast "$NODE_CORES"; fi
  sleep 1
  c0=$(cpu_seconds "$PID"); sleep "$DUR"; c1=$(cpu_seconds "$PID")
  stop
  IDLE_NOTE="$IDLE_NOTE $(label "$b"): $(awk -v a="$c0" -v b="$c1" -v d="$DUR" 'BEGIN { printf "%.1f ms/s", (b - a) * 1000 / d }');"
done
if [ "$SATURATION" = 1 ]; then
  if has echo; then
    for s in "${ECHO_SERVERS[@]}"; do
      start_echo "$s"
      run "echo-sat-$s" echo "$URL" --connections "$CONNS" --rate 0 --window "$WINDOW"
      stop
    done
  fi
  if has direct; then
    for s in "${DIRECT_SERVERS[@]}"; do
      start_direct "$s"
      run "direct-sat-$s" direct "$URL" --users "$USERS" --rate 0 --window "$WINDOW"
      stop
    done
  fi
fi
for r in $RATES; do
  if has echo; then
    for s in "${ECHO_SERVERS[@]}"; do
      start_echo "$s"
      # shellcheck disable=SC2086 # LG_FIXED_ARGS is a list of flags
      run "echo-r$r-$s" echo "$URL" --connections "$CONNS" --rate "$r" $LG_FIXED_ARGS
      stop
    done
  fi
  if has direct; then
    for s in "${DIRECT_FIXED_SERVERS[@]}"; do
      start_direct "$s"
      # shellcheck disable=SC2086 # LG_FIXED_ARGS is a list of flags
      run "direct-r$r-$s" direct "$URL" --users "$FIXED_USERS" --rate "$r" $LG_FIXED_ARGS
      stop
    done
  fi
done

# --- tables -------------------------------------------------------------
cpu_us() { # run-name -> server CPU µs per received message
  us_per_msg "$(field "$1" '.cpu.server_seconds // "-"')" "$(field "$1" .messages.received)"
}
lg_us() { # run-name -> loadgen CPU µs per received message
  us_per_msg "$(field "$1" '.cpu.loadgen_seconds // "-"')" "$(field "$1" .messages.received)"
}
sat_row() { # scenario server
  local sc=$1 s=$2 n="$1-sat-$2" b="$1-sat-shardcast" sat rss
  sat=$(field "$n" .throughput.msgs_per_sec)
  rss=$(field "$n" '.server_rss_bytes // 0')
  printf '| %s | %s | %.0f | %s | %s | %s | %s | %s | %s |\n' "$sc" "$(label "$s")" "$sat" \
    "$(ratio "$sat" "$(field "$b" .throughput.msgs_per_sec)")" \
    "$(cpu_us "$n")" "$(ratio "$(cpu_us "$n")" "$(cpu_us "$b")")" \
    "$(ms "$(field "$n" .latency_us.p99)")" "$(field "$n" .messages.lost)" "$((rss / 1048576))"
}
fixed_row() { # scenario rate server
  local sc=$1 r=$2 s=$3 n="$1-r$2-$3" b="$1-r$2-shardcast"
  printf '| %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n' "$sc" "$r" "$(label "$s")" \
    "$(field "$n" .throughput.msgs_per_sec)" \
    "$(cpu_us "$n")" "$(ratio "$(cpu_us "$n")" "$(cpu_us "$b")")" \
    "$(ms "$(field "$n" .latency_us.p50)")" "$(ms "$(field "$n" .latency_us.p99)")" \
    "$(ratio "$(field "$n" .latency_us.p99)" "$(field "$b" .latency_us.p99)")" \
    "$(lg_us "$n")" "$(field "$n" .messages.lost)"
}
{
  echo "Machine: $(machine)"
  echo "Runs: ${DUR}s each; echo ${CONNS} connections; direct ${USERS} users at saturation (window ${WINDOW}), ${FIXED_USERS} at fixed rates (${RATES:-none} msg/s${LG_FIXED_ARGS:+, loadgen $LG_FIXED_ARGS})."
  echo "shardcast: --cores ${NODE_CORES} ${NODE_EXTRA}, rate limits raised${ALT_NODE_BIN:+; shardcast $ALT_LABEL: $ALT_NODE_BIN}; peers: ${PEER_THREADS} threads (node: 1)."
  echo "$UWS_NOTE"
  echo "Idle CPU (no connections, ${DUR}s):$IDLE_NOTE"
  if [ "$SATURATION" = 1 ]; then
    echo
    echo "| scenario | server | msg/s at saturation | ratio | server CPU µs/msg | ratio | p99 ms | lost | server RSS MiB |"
    echo "|---|---|---|---|---|---|---|---|---|"
    if has echo; then for s in "${ECHO_SERVERS[@]}"; do sat_row echo "$s"; done; fi
    if has direct; then for s in "${DIRECT_SERVERS[@]}"; do sat_row direct "$s"; done; fi
  fi
  if [ -n "$RATES" ]; then
    echo
    echo "| scenario | msg/s asked | server | msg/s | server CPU µs/msg | ratio | p50 ms | p99 ms | ratio | loadgen CPU µs/msg | lost |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for r in $RATES; do
      if has echo; then for s in "${ECHO_SERVERS[@]}"; do fixed_row echo "$r" "$s"; done; fi
      if has direct; then for s in "${DIRECT_FIXED_SERVERS[@]}"; do fixed_row direct "$r" "$s"; done; fi
    done
  fi
} | tee "$OUT/table.md"
say "reports and logs in $OUT"
