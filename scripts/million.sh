#!/usr/bin/env bash
# The million-connection run on one host, over loopback, bounded in time
# (issue 12, item 3; the procedure is docs/loadgen.md#driving-a-million-connections):
#   1. tuning/check: prints what is short (the run goes on; it is informative);
#   2. as many shardcast-node processes as the open-files limit needs
#      (each --cores 1, spread over the CPUs with --first-cpu, on 127.0.x.y);
#   3. loadgen connect: ramp, hold; the kernel's share sampled meanwhile;
#   4. loadgen direct at that scale;
#   5. every node stopped by its pid (SIGTERM, then SIGKILL after the drain).
#
#   scripts/million.sh [--connections N] [--connect-rate R] [--hold SECS]
#                      [--direct-rate M] [--direct-secs S] [--no-direct]
#                      [--bin-dir DIR] [--out DIR]
#
# Defaults: N=1000000, R=10000/s, hold 60 s, direct 10000 msg/s for 30 s,
# binaries from target/release (cargo build --release --bin shardcast-node -p loadgen),
# reports in target/million/. Knobs: SHARDCAST_SECRET (else a random one).
set -euo pipefail
cd "$(dirname "$0")/.."

N=1000000 RATE=10000 HOLD=60 DRATE=10000 DSECS=30 DIRECT=1
BIN=${CARGO_TARGET_DIR:-target}/release OUT=${CARGO_TARGET_DIR:-target}/million
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) N=$2; shift 2 ;;
    --connect-rate) RATE=$2; shift 2 ;;
    --hold) HOLD=$2; shift 2 ;;
    --direct-rate) DRATE=$2; shift 2 ;;
    --direct-secs) DSECS=$2; shift 2 ;;
    --no-direct) DIRECT=0; shift ;;
    --bin-dir) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "million: unknown argument $1" >&2; exit 2 ;;
  esac
done
NODE_BIN=$BIN/shardcast-node LOADGEN=$BIN/loadgen
for b in "$NODE_BIN" "$LOADGEN"; do
  [ -x "$b" ] || { echo "million: $b missing: cargo build --release --bin shardcast-node -p loadgen" >&2; exit 2; }
done
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "tuning/check (what is short on this host)"
tuning/check >"$OUT/check.txt" && echo "all required settings OK" || true
grep -v -e '^OK' -e '^#' "$OUT/check.txt" | cut -f1-6 || true

# Open files: each node holds at most PER connections (its fd limit minus
# room for listeners and rings); loadgen workers likewise.
NOFILE=$(ulimit -n)
PER=$((NOFILE - 2000))
[ "$PER" -gt 0 ] || { echo "million: ulimit -n $NOFILE is too low" >&2; exit 2; }
NODES=$(((N + PER - 1) / PER))
WORKERS=$(((N + NOFILE - 1257) / (NOFILE - 1256)))
CPUS=$(nproc)
[ "$NODES" -le 2000 ] || { echo "million: $NODES nodes is too many" >&2; exit 2; }
echo "connections $N: $NODES node(s) x <= $PER, $WORKERS loadgen worker(s), ulimit -n $NOFILE, $CPUS CPUs"

export SHARDCAST_SECRET=${SHARDCAST_SECRET:-$(head -c 24 /dev/urandom | base64)}
PIDS=() TARGETS=() SERVER_PIDS=()
stop_nodes() {
  [ ${#PIDS[@]} -gt 0 ] || return 0
  kill -TERM "${PIDS[@]}" 2>/dev/null || true
  for _ in $(seq 1 150); do
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  PIDS=()
}
SAMPLER=""
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
  stop_nodes
}
trap cleanup EXIT

step "starting $NODES node(s)"
for i in $(seq 1 "$NODES"); do
  addr=127.0.$((1 + (i - 1) / 250)).$((1 + (i - 1) % 250))
  "$NODE_BIN" --listen "$addr:8080" --metrics-listen "$addr:9404" --cores 1 \
    --first-cpu $(((i - 1) % CPUS)) --node-id "n$i" --max-connections "$PER" \
    --handshakes-per-sec 100000 >"$OUT/node-$i.out" 2>"$OUT/node-$i.err" &
  PIDS+=($!) SERVER_PIDS+=(--server-pid $!) TARGETS+=(--target "ws://$addr:8080/ws")
done
for i in $(seq 1 "$NODES"); do
  for _ in $(seq 1 100); do
    grep -q '^listening' "$OUT/node-$i.out" 2>/dev/null && break
    kill -0 "${PIDS[i-1]}" 2>/dev/null || { echo "million: node $i exited:" >&2; tail -5 "$OUT/node-$i.err" >&2; exit 1; }
    sleep 0.1
  done
  grep -q '^listening' "$OUT/node-$i.out" || { echo "million: node $i did not start" >&2; exit 1; }
done
echo "nodes up: pids ${PIDS[*]}"

# The kernel's share, every 5 s: slab and TCP sockets/buffer pages.
sample() {
  while :; do
    printf '%s slab_kib=%s sunreclaim_kib=%s %s\n' "$(date +%s)" \
      "$(awk '/^Slab:/{print $2}' /proc/meminfo)" "$(awk '/^SUnreclaim:/{print $2}' /proc/meminfo)" \
      "$(grep '^TCP:' /proc/net/sockstat | tr -s ' ' | cut -d' ' -f2-)"
    sleep 5
  done
}
sample >"$OUT/kernel.log" &
SAMPLER=$!

SOURCES=127.0.0.2-127.0.0.60
BOUND=$((N / RATE + HOLD + 120))
step "loadgen connect: $N connections at $RATE/s, hold ${HOLD}s (bounded: ${BOUND}s)"
timeout --signal=INT --kill-after=10 "$BOUND" "$LOADGEN" connect "${TARGETS[@]}" "${SERVER_PIDS[@]}" \
  --connections "$N" --connect-rate "$RATE" --duration "$HOLD" \
  --workers "$WORKERS" --cores 1 --source-ips "$SOURCES" --quiet \
  --report "$OUT/connect.json" | tee "$OUT/connect.txt"

if [ "$DIRECT" -eq 1 ]; then
  BOUND=$((N / RATE + DSECS + 120))
  step "loadgen direct: $N users, $DRATE msg/s for ${DSECS}s (bounded: ${BOUND}s)"
  timeout --signal=INT --kill-after=10 "$BOUND" "$LOADGEN" direct "${TARGETS[@]}" "${SERVER_PIDS[@]}" \
    --users "$N" --rate "$DRATE" --duration "$DSECS" --connect-rate "$RATE" \
    --workers "$WORKERS" --cores 1 --source-ips "$SOURCES" --quiet \
    --report "$OUT/direct.json" | tee "$OUT/direct.txt"
fi

step "kernel share (peak of the 5 s samples)"
awk -v n="$N" '{for (i = 2; i <= NF; i++) if ($i ~ /^slab_kib=/) { split($i, a, "="); if (NR == 1) b = a[2]; if (a[2] > m) m = a[2] }}
     END { printf "Slab before %.1f MiB, peak %.1f MiB: %.0f B per connection pair\n", b / 1024, m / 1024, (m - b) * 1024 / n }' "$OUT/kernel.log"
tail -1 "$OUT/kernel.log"
step "stopping the nodes by pid"
stop_nodes
echo "reports in $OUT"
