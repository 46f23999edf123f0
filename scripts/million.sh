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
#                      [--direct-rate M] [--direct-secs S] [--direct-drain-secs D]
#                      [--no-direct] [--no-connect]
#                      [--connect-timeout SECS]
#                      [--ping-interval-secs P] [--idle-timeout-secs I] [--node-arg ARG]...
#                      [--loadgen-arg ARG]...
#                      [--port PORT] [--node-bin FILE] [--loadgen-bin FILE]
#                      [--bin-dir DIR] [--out DIR] [--apply-tuning]
#
# Defaults: N=1000000, R=5000/s, hold 60 s, direct 2000 msg/s for 30 s
# with 60 s for what is in flight (10,000 msg/s at a million is more than
# two shared vCPUs carry: docs/benchmarks.md),
# nodes pinging after 300 s of silence and closing after 900 s (at 30/90 s a
# million connections cost 33,000 pings a second, which two shared vCPUs
# busy with the ramp do not answer in time: docs/tuning.md), nodes on port
# 8080 (metrics on PORT+1), binaries from target/release (cargo build
# --release --bin shardcast-node -p loadgen), reports in target/million/.
# From 100,000 connections on, the run holds /tmp/HEAVY (the machine-wide
# heavy-run lock; refused while someone else holds it) and removes it at the
# end, also on failure. --apply-tuning (as root): `tuning/check --apply`
# first, and every sysctl it changed is written back at the end. Knobs:
# SHARDCAST_SECRET (else a random one).
set -euo pipefail
cd "$(dirname "$0")/.."

N=1000000 RATE=5000 HOLD=60 DRATE=2000 DSECS=30 DRAIN=60 DIRECT=1 CONNECT=1 PING=300 IDLE=900 PORT=8080 CTIMEOUT=10
BIN=${CARGO_TARGET_DIR:-target}/release OUT=${CARGO_TARGET_DIR:-target}/million
NODE_BIN="" LOADGEN="" APPLY=0 NODE_ARGS=() LOADGEN_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) N=$2; shift 2 ;;
    --connect-rate) RATE=$2; shift 2 ;;
    --hold) HOLD=$2; shift 2 ;;
    --direct-rate) DRATE=$2; shift 2 ;;
    --direct-secs) DSECS=$2; shift 2 ;;
    --direct-drain-secs) DRAIN=$2; shift 2 ;;
    --no-direct) DIRECT=0; shift ;;
    --no-connect) CONNECT=0; shift ;;
    --connect-timeout) CTIMEOUT=$2; shift 2 ;;
    --ping-interval-secs) PING=$2; shift 2 ;;
    --idle-timeout-secs) IDLE=$2; shift 2 ;;
    --node-arg) NODE_ARGS+=("$2"); shift 2 ;;
    --loadgen-arg) LOADGEN_ARGS+=("$2"); shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --node-bin) NODE_BIN=$2; shift 2 ;;
    --loadgen-bin) LOADGEN=$2; shift 2 ;;
    --bin-dir) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --apply-tuning) APPLY=1; shift ;;
    -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "million: unknown argument $1" >&2; exit 2 ;;
  esac
done
for v in N RATE HOLD DRATE DSECS DRAIN PING IDLE PORT CTIMEOUT; do
  [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || { echo "million: ${v} must be a positive integer, got '${!v}'" >&2; exit 2; }
done
[ "$PORT" -lt 65535 ] || { echo "million: --port must be below 65535" >&2; exit 2; }
NODE_BIN=${NODE_BIN:-$BIN/shardcast-node} LOADGEN=${LOADGEN:-$BIN/loadgen}
for b in "$NODE_BIN" "$LOADGEN"; do
  [ -x "$b" ] || { echo "million: $b missing: cargo build --release --workspace --bins" >&2; exit 2; }
done
mkdir -p "$OUT"
step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

RESTORE=()
restore_tuning() {
  local line name old
  for line in "${RESTORE[@]}"; do
    IFS=$'\t' read -r name old <<<"$line"
    [ "$old" = "(empty)" ] && old=""
    printf '%s\n' "$old" >"/proc/sys/${name//.//}" 2>/dev/null || echo "million: could not restore $name to $old" >&2
  done
  [ ${#RESTORE[@]} -eq 0 ] || echo "restored ${#RESTORE[@]} sysctl(s)"
  RESTORE=()
}
PIDS=() TARGETS=() SERVER_PIDS=() ADDRS=()
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
SAMPLER="" LOADGEN_PID="" HEAVY=0
cleanup() {
  [ -n "$LOADGEN_PID" ] && kill -INT "$LOADGEN_PID" 2>/dev/null && sleep 2 && kill -KILL "$LOADGEN_PID" 2>/dev/null || true
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
  stop_nodes
  restore_tuning
  [ "$HEAVY" -eq 1 ] && rm -f /tmp/HEAVY
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$N" -ge 100000 ]; then
  if [ -e /tmp/HEAVY ]; then
    echo "million: /tmp/HEAVY exists: another heavy run is going on ($(cat /tmp/HEAVY 2>/dev/null))" >&2
    exit 3
  fi
  echo "scripts/million.sh pid $$, $N connections, since $(date -u +%H:%M:%S)" >/tmp/HEAVY
  HEAVY=1
fi

if [ "$APPLY" -eq 1 ]; then
  step "tuning/check --apply (written back at the end)"
  tuning/check --apply >"$OUT/apply.txt" || true
  while IFS=$'\t' read -r verdict _kind name old _new; do
    [ "$verdict" = SET ] && RESTORE+=("$name"$'\t'"$old")
  done <"$OUT/apply.txt"
  grep -e '^SET' -e '^CLAMPED' -e '^FAILED' -e '^MANUAL' "$OUT/apply.txt" | cut -f1-5 || true
fi
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
# Source addresses: every (source, node) pair offers the local port range.
read -r LO HI </proc/sys/net/ipv4/ip_local_port_range
PORTS=$((HI - LO + 1))
SOURCES=$((N / NODES / (PORTS * 9 / 10) + 1))
[ "$SOURCES" -ge 59 ] || SOURCES=59
[ "$SOURCES" -le 250 ] || { echo "million: $SOURCES source addresses needed" >&2; exit 2; }
SOURCE_IPS=127.0.0.2-127.0.0.$((1 + SOURCES))
echo "connections $N: $NODES node(s) x <= $PER, $WORKERS loadgen worker(s), ulimit -n $NOFILE, $CPUS CPUs, sources $SOURCE_IPS"
echo "nodes: --ping-interval-secs $PING --idle-timeout-secs $IDLE ${NODE_ARGS[*]:-}, port $PORT"

export SHARDCAST_SECRET=${SHARDCAST_SECRET:-$(head -c 24 /dev/urandom | base64)}

step "starting $NODES node(s)"
for i in $(seq 1 "$NODES"); do
  addr=127.0.$((1 + (i - 1) / 250)).$((1 + (i - 1) % 250))
  "$NODE_BIN" --listen "$addr:$PORT" --metrics-listen "$addr:$((PORT + 1))" --cores 1 \
    --first-cpu $(((i - 1) % CPUS)) --node-id "n$i" --max-connections "$PER" \
    --handshakes-per-sec 100000 --ping-interval-secs "$PING" --idle-timeout-secs "$IDLE" ${NODE_ARGS[@]+"${NODE_ARGS[@]}"} \
    >"$OUT/node-$i.out" 2>"$OUT/node-$i.err" &
  PIDS+=($!) SERVER_PIDS+=(--server-pid $!) TARGETS+=(--target "ws://$addr:$PORT/ws") ADDRS+=("$addr")
done
for i in $(seq 1 "$NODES"); do
  for _ in $(seq 1 300); do
    grep -q '^listening' "$OUT/node-$i.out" 2>/dev/null && break
    kill -0 "${PIDS[i-1]}" 2>/dev/null || { echo "million: node $i exited:" >&2; tail -5 "$OUT/node-$i.err" >&2; exit 1; }
    sleep 0.1
  done
  grep -q '^listening' "$OUT/node-$i.out" || { echo "million: node $i did not start" >&2; exit 1; }
done
echo "nodes up: pids ${PIDS[*]}"

# The kernel's share, every 5 s: slab, TCP sockets and their buffer pages,
# and the nodes' open and parked connections (summed over their metrics).
sample() {
  while :; do
    printf '%s slab_kib=%s sunreclaim_kib=%s avail_kib=%s %s %s\n' "$(date +%s)" \
      "$(awk '/^Slab:/{print $2}' /proc/meminfo)" "$(awk '/^SUnreclaim:/{print $2}' /proc/meminfo)" \
      "$(awk '/^MemAvailable:/{print $2}' /proc/meminfo)" \
      "$(grep '^TCP:' /proc/net/sockstat | tr -s ' ' | cut -d' ' -f2-)" \
      "$(for a in "${ADDRS[@]}"; do curl -s --max-time 2 "http://$a:$((PORT + 1))/metrics" || true; done |
         awk '/^rtc_socket_active_connections /{a += $2} /^rtc_socket_parked_connections /{p += $2}
              END {printf "active=%d parked=%d", a, p}')"
    sleep 5
  done
}
sample >"$OUT/kernel.log" &
SAMPLER=$!

# What the nodes' metrics say, summed over the nodes (a close reason the
# loadgen report cannot see, e.g. handshakes refused).
node_metrics() {
  for a in "${ADDRS[@]}"; do
    curl -s --max-time 5 "http://$a:$((PORT + 1))/metrics" || true
  done | awk '!/^#/ && /^rtc_socket_(active_connections|parked_connections|handshakes_rejected_total|drops_total)/ {
      s[$1] += $2 } END { for (k in s) printf "  %s %d\n", k, s[k] }' | sort
}

# Runs loadgen in the background (so a signal reaches the trap at once),
# bounded by `timeout`.
run_loadgen() {
  local bound=$1; shift
  timeout --signal=INT --kill-after=15 "$bound" "$LOADGEN" "$@" &
  LOADGEN_PID=$!
  local rc=0
  wait "$LOADGEN_PID" || rc=$?
  LOADGEN_PID=""
  return "$rc"
}

# The report's key figures (the whole report is the JSON file).
summary() {
  python3 - "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
c, m, l, k, mem = r["connections"], r["messages"], r["latency_us"], r["connect_latency_us"], r["memory"]
print(f"established {c['established']}/{c['target']}, failed {c['failed']}, dropped {c['dropped']}, peak open {c['peak_open']}")
print(f"connect latency us: p50 {k.get('p50')} p90 {k.get('p90')} p99 {k.get('p99')} max {k.get('max')}")
print(f"memory per connection: nodes {mem.get('server_per_connection_bytes')} B, loadgen {mem.get('loadgen_per_connection_bytes')} B"
      f" (node peak {(mem.get('server_peak_bytes') or 0) / 2**20:.0f} MiB, loadgen peak {(mem.get('loadgen_peak_bytes') or 0) / 2**20:.0f} MiB)")
print(f"cpu seconds: nodes {r['cpu'].get('server_seconds')}, loadgen {r['cpu'].get('loadgen_seconds')}")
if r["scenario"] != "connect":
    print(f"messages: sent {m['sent']}, received {m['received']}, lost {m['lost']}, duplicated {m['duplicated']}, reordered {m['reordered']}")
    print(f"latency us: p50 {l.get('p50')} p90 {l.get('p90')} p99 {l.get('p99')} p999 {l.get('p999')} max {l.get('max')}")
if r["errors"]:
    print("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items())))
EOF
}

FAILED=0
if [ "$CONNECT" -eq 1 ]; then
  BOUND=$((N / RATE + HOLD + CTIMEOUT + 180))
  step "loadgen connect: $N connections at $RATE/s, hold ${HOLD}s (bounded: ${BOUND}s)"
  run_loadgen "$BOUND" connect "${TARGETS[@]}" "${SERVER_PIDS[@]}" \
    --connections "$N" --connect-rate "$RATE" --duration "$HOLD" --connect-timeout "$CTIMEOUT" \
    --workers "$WORKERS" --cores 1 --source-ips "$SOURCE_IPS" --quiet ${LOADGEN_ARGS[@]+"${LOADGEN_ARGS[@]}"} \
    --report "$OUT/connect.json" >"$OUT/connect.txt" || FAILED=1
  summary "$OUT/connect.json" | tee "$OUT/connect-summary.txt" || FAILED=1
  echo "node metrics after the hold:"
  node_metrics | tee "$OUT/connect-metrics.txt"
fi

if [ "$DIRECT" -eq 1 ]; then
  BOUND=$((N / RATE + DSECS + DRAIN + CTIMEOUT + 180))
  step "loadgen direct: $N users, $DRATE msg/s for ${DSECS}s (bounded: ${BOUND}s)"
  run_loadgen "$BOUND" direct "${TARGETS[@]}" "${SERVER_PIDS[@]}" \
    --users "$N" --rate "$DRATE" --duration "$DSECS" --drain-timeout "$DRAIN" \
    --connect-rate "$RATE" --connect-timeout "$CTIMEOUT" \
    --workers "$WORKERS" --cores 1 --source-ips "$SOURCE_IPS" --quiet ${LOADGEN_ARGS[@]+"${LOADGEN_ARGS[@]}"} \
    --report "$OUT/direct.json" >"$OUT/direct.txt" || FAILED=1
  summary "$OUT/direct.json" | tee "$OUT/direct-summary.txt" || FAILED=1
  echo "node metrics after the direct run:"
  node_metrics | tee "$OUT/direct-metrics.txt"
fi

step "kernel share (peak of the 5 s samples) and the most connections the nodes held"
awk '{for (i = 2; i <= NF; i++) if ($i ~ /^active=/) { split($i, a, "="); if (a[2] > m) { m = a[2]; l = $0 } }}
     END { printf "most open on the nodes: %d (%s)\n", m, l }' "$OUT/kernel.log"
awk -v n="$N" '{for (i = 2; i <= NF; i++) if ($i ~ /^slab_kib=/) { split($i, a, "="); if (NR == 1) b = a[2]; if (a[2] > m) m = a[2] }}
     END { printf "Slab before %.1f MiB, peak %.1f MiB: %.0f B per connection pair\n", b / 1024, m / 1024, (m - b) * 1024 / n }' "$OUT/kernel.log"
echo "last sample: $(tail -1 "$OUT/kernel.log")"
step "stopping the nodes by pid"
stop_nodes
echo "reports in $OUT"
exit "$FAILED"
