#!/usr/bin/env bash
# Profiles a running shardcast-node under a loadgen scenario:
#   1. a flamegraph SVG of the node's CPU time (perf record -e cpu-clock,
#      the software clock: it works in VMs without hardware counters), drawn
#      with inferno (cargo install inferno);
#   2. perf stat counts per message: io_uring_enter, membarrier, sendto,
#      recvfrom, epoll/futex calls and context switches of the node, divided
#      by the messages loadgen delivered;
#   3. the node's CPU per message (utime+stime from /proc/PID/stat).
#
# Usage: scripts/profile.sh [direct|echo] — knobs in the environment:
#   RATE (5000 msg/s; 0 = closed loop), USERS (400), DUR (10 s of load;
#   recorded over the middle RECORD seconds, default DUR-4), CORES (2),
#   NODE_ARGS (extra node flags, e.g. "--redis redis://127.0.0.1:6379/0"),
#   CALLGRAPH (dwarf | fp; dwarf by default: the release profile keeps line
#   tables, not frame pointers), FREQ (999 Hz), OUT (target/profile/NAME);
#   SKIP_BUILD=1 with NODE_BIN/LOADGEN profiles binaries built elsewhere
#   (e.g. main's, for a before/after pair).
# Everything runs on loopback and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIO=${1:-direct}
RATE=${RATE:-5000}
USERS=${USERS:-400}
DUR=${DUR:-10}
RECORD=${RECORD:-$((DUR > 6 ? DUR - 4 : DUR))}
CORES=${CORES:-2}
CALLGRAPH=${CALLGRAPH:-dwarf}
NODE_ARGS=${NODE_ARGS:-}
FREQ=${FREQ:-999}
NAME=${NAME:-$SCENARIO-r$RATE-c$CORES}
OUT=${OUT:-target/profile/$NAME}
mkdir -p "$OUT"

need() { command -v "$1" >/dev/null || { echo "profile.sh: needs $1 ($2)" >&2; exit 1; }; }
need perf "apt-get install -y linux-perf"
need jq "apt-get install -y jq"
need inferno-collapse-perf "cargo install inferno"
need inferno-flamegraph "cargo install inferno"

TARGET=${CARGO_TARGET_DIR:-target}
NODE_BIN=${NODE_BIN:-$TARGET/release/shardcast-node}
LOADGEN=${LOADGEN:-$TARGET/release/loadgen}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --bin shardcast-node >&2
  cargo build --release -p loadgen >&2
fi

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(port)
# shellcheck disable=SC2086 # NODE_ARGS is a list of flags
"$NODE_BIN" --listen "127.0.0.1:$PORT" --metrics-listen 127.0.0.1:0 --cores "$CORES" \
  --echo --handshakes-per-sec 100000 $NODE_ARGS >"$OUT/node.out" 2>"$OUT/node.err" &
NODE=$!
trap 'kill $NODE 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening "$OUT/node.out" && break; sleep 0.1; done

case "$SCENARIO" in
  direct) LG=(direct --target "ws://127.0.0.1:$PORT/ws" --users "$USERS" --rate "$RATE") ;;
  echo) LG=(echo --target "ws://127.0.0.1:$PORT/echo" --connections "$USERS" --rate "$RATE") ;;
  *) echo "profile.sh: scenario is direct or echo" >&2; exit 2 ;;
esac
"$LOADGEN" "${LG[@]}" --duration "$DUR" --report "$OUT/loadgen.json" >"$OUT/loadgen.txt" 2>&1 &
LOADGEN_PID=$!

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
sleep 2 # ramp-up: connections and the first messages
T0=$(ticks "$NODE")
perf record -e cpu-clock -F "$FREQ" --call-graph "$CALLGRAPH" -p "$NODE" -o "$OUT/perf.data" \
  -- sleep "$RECORD" 2>"$OUT/perf-record.err" &
PERF=$!
EVENTS=context-switches
for s in io_uring_enter membarrier sendto recvfrom epoll_wait futex; do
  # grep -c reads all of perf's output (grep -q would SIGPIPE it under pipefail).
  if [ "$(perf list "syscalls:sys_enter_$s" 2>/dev/null | grep -c "sys_enter_$s")" -gt 0 ]; then
    EVENTS="$EVENTS,syscalls:sys_enter_$s"
  fi
done
perf stat -e "$EVENTS" -p "$NODE" -x, -o "$OUT/perf-stat.csv" -- sleep "$RECORD" 2>/dev/null || true
wait "$PERF" || true
T1=$(ticks "$NODE")
wait "$LOADGEN_PID" || true

perf script -i "$OUT/perf.data" 2>/dev/null | inferno-collapse-perf >"$OUT/stacks.folded"
inferno-flamegraph --title "shardcast-node: $SCENARIO at $RATE msg/s, $CORES cores" \
  <"$OUT/stacks.folded" >"$OUT/flamegraph.svg"

RECEIVED=$(jq '.messages.received' "$OUT/loadgen.json")
SECS=$(jq '.duration_s' "$OUT/loadgen.json")
# Messages delivered while perf stat ran, assuming a steady rate.
MSGS=$(python3 -c "print(max(1, round($RECEIVED / $SECS * $RECORD)))")
{
  echo "scenario=$SCENARIO rate=$RATE users=$USERS cores=$CORES recorded=${RECORD}s messages~$MSGS"
  python3 -c "print(f'node cpu per message: {($T1 - $T0) / $HZ / $MSGS * 1e6:.1f} us')"
  echo "per message (perf stat over the same window):"
  awk -F, -v m="$MSGS" '$1 ~ /^[0-9.]+$/ {printf "  %-36s %8.3f\n", $3, $1 / m}' "$OUT/perf-stat.csv"
  echo "loadgen: $(jq -c '{received: .messages.received, lost: .messages.lost, p50_us: .latency_us.p50, p99_us: .latency_us.p99}' "$OUT/loadgen.json")"
  echo "flamegraph: $OUT/flamegraph.svg (folded stacks: $OUT/stacks.folded)"
} | tee "$OUT/summary.txt"
