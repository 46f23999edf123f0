# Shell functions shared by the benchmark scripts (bench-compare.sh,
# bench-store.sh, kill-run.sh). Sourced, never run:
#
#   . "$(dirname "$0")/lib/bench.sh"
#
# Conventions: the caller sets OUT (a directory for logs and reports) and
# may read PID/ADDR/METRICS after `start`; every process started with
# `start` is remembered in PIDS and killed by `cleanup` (trap it on EXIT).

say() { printf '== %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { echo "${0##*/}: needs $1" >&2; exit 1; }; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }

# start NAME CMD... : starts a server that prints "listening ws=ADDR
# [metrics=ADDR]" first (shardcast-node and the baselines do); sets ADDR,
# METRICS (empty if not printed) and PID. Its output goes to
# $OUT/NAME.server.log.
start() {
  local name=$1; shift
  local log="$OUT/$name.server.log"
  : >"$log"
  "$@" >"$log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 100); do
    ADDR=$(sed -n 's/.*listening ws=\([^ ]*\).*/\1/p' "$log" | head -1 || true)
    if [ -n "$ADDR" ]; then
      METRICS=$(sed -n 's/.*listening .*metrics=\([^ ]*\).*/\1/p' "$log" | head -1 || true)
      return 0
    fi
    sleep 0.1
  done
  echo "${0##*/}: $name did not start; see $log" >&2
  exit 1
}
# stop [PID] : SIGTERM and reap (default: the last started).
stop() { local p=${1:-$PID}; kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; }

# field NAME JQ : a field of the loadgen report $OUT/NAME.json.
field() { jq -r "$2" "$OUT/$1.json"; }

# free_port : a TCP port nothing listens on right now (loopback).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# cpu_seconds PID... : utime + stime of the processes so far, summed, from
# /proc/PID/stat (fields 14 and 15, counted after the command name, which
# may contain spaces). The same reading loadgen's --server-pid makes.
cpu_seconds() {
  local hz total=0 p t
  hz=$(getconf CLK_TCK)
  for p in "$@"; do
    t=$(sed 's/.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }') || t=0
    total=$((total + t))
  done
  awk -v t="$total" -v hz="$hz" 'BEGIN { printf "%.3f", t / hz }'
}

# us_per_msg CPU_SECONDS MESSAGES : CPU µs per message ("-" if unknown).
us_per_msg() {
  awk -v c="$1" -v m="$2" 'BEGIN { if (c != "-" && c != "null" && m > 0) printf "%.2f", c * 1e6 / m; else print "-" }'
}

# ratio A B : A / B with two decimals ("-" if B is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# ms US : microseconds as milliseconds, two decimals.
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }

# node_messages METRICS_ADDR : messages the node routed so far
# (rtc_socket_messages_total, every path).
node_messages() {
  curl -s --max-time 2 "http://$1/metrics" \
    | awk '/^rtc_socket_messages_total/ { n += $2 } END { printf "%d", n }'
}

# machine : one line describing this host and its load right now.
machine() {
  echo "$(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(free -g | awk '/^Mem:/ { print $2 }') GiB, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
}

# Builds the release node and loadgen into NODE_BIN/LOADGEN (skipped with
# SKIP_BUILD=1, the binaries then come from elsewhere).
build_release() {
  NODE_BIN=${NODE_BIN:-$PWD/target/release/shardcast-node}
  LOADGEN=${LOADGEN:-$PWD/target/release/loadgen}
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    need cargo
    say "building shardcast-node and loadgen (release)"
    cargo build --release -p shardcast --bin shardcast-node >&2
    cargo build --release -p loadgen >&2
  fi
}

# Starts a redis-server of the run's own (no persistence, under $OUT/redis)
# on a free loopback port and waits until it answers; sets REDIS_PORT,
# REDIS_PID, REDIS_URL and adds it to PIDS for cleanup.
start_redis() {
  REDIS_PORT=$(free_port)
  mkdir -p "$OUT/redis"
  say "redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --dir "$OUT/redis" >"$OUT/redis.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$REDIS_PORT" ping >/dev/null
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
}
