#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script):
#   1. formatting and clippy, warnings as errors;
#   2. every unit and integration test of the workspace (the integration
#      tests start the real shardcast-node binary on ephemeral ports);
#   3. the JavaScript client SDK (clients/js): unit tests, and Node.js and
#      headless-Chromium tests against the real node (installs chromium and
#      the npm packages when missing);
#   4. the Autobahn TestSuite against a node's /echo endpoint (skipped with
#      SHARDCAST_SKIP_AUTOBAHN=1, or when ../shared/tools is not beside the repo).
# Needs only a Rust toolchain; it installs whatever else the tests use
# (redis-server, tansu, chromium, the SDK's npm packages).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "test dependencies: redis-server (the Redis store's tests start their own)"
if ! command -v redis-server >/dev/null 2>&1; then
  apt-get install -y redis-server || { apt-get update && apt-get install -y redis-server; }
fi

step "test dependencies: tansu, a Kafka-protocol broker (the relay's tests start their own)"
# Built once (about 11 minutes here), then found in ~/.cargo/bin.
if ! command -v tansu >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
  cargo install --locked tansu --features dynostore || cargo install tansu --features dynostore
fi

step "cargo test --workspace"
cargo test --workspace

step "clients/js: npm ci, build, unit + Node.js + headless Chromium tests against the release node"
if ! command -v chromium >/dev/null 2>&1; then
  apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }
fi
cargo build --release --bin shardcast-node
(cd clients/js && npm ci --no-audit --no-fund && npm run build && npm run size && npm test)
# The same reconnect scenario with the Redis store: nothing acked may be
# lost, the SIGKILLed node's acks included (no relaxation).
REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REDIS_DIR=$(mktemp -d)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$REDIS_DIR" --daemonize yes --pidfile "$REDIS_DIR/redis.pid" >/dev/null
(cd clients/js && SHARDCAST_TEST_NODE_ARGS="--redis redis://127.0.0.1:$REDIS_PORT/0" \
  SHARDCAST_TEST_DURABLE=1 SHARDCAST_TEST_SAME_SECRET=1 npm run test:node)
kill "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null || true

AUTOBAHN=../shared/tools/run-autobahn.sh
if [ "${SHARDCAST_SKIP_AUTOBAHN:-0}" = 1 ] || [ ! -f "$AUTOBAHN" ]; then
  step "autobahn: skipped"
  exit 0
fi
step "autobahn fuzzingclient against /echo (excluding 12.*, 13.*: permessage-deflate)"
cargo build --release --bin shardcast-node
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TARGET="${CARGO_TARGET_DIR:-target}"
"$TARGET/release/shardcast-node" --listen "127.0.0.1:$PORT" --metrics-listen 127.0.0.1:0 \
  --cores 2 --echo >/dev/null 2>"$TARGET/autobahn-node.log" &
NODE=$!
trap 'kill $NODE 2>/dev/null || true' EXIT
bash "$AUTOBAHN" -x '12.*,13.*' -o "$TARGET/autobahn" "ws://127.0.0.1:$PORT/echo"
