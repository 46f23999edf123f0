// Starts, drains, kills and restarts a real shardcast-node for the Node.js
// and browser integration tests.
//
//   SHARDCAST_NODE_BIN        the binary (default: ../../target/release/shardcast-node,
//                             or $CARGO_TARGET_DIR/release/shardcast-node)
//   SHARDCAST_TEST_NODE_ARGS  extra node flags, space separated (e.g. a Redis store)
//   SHARDCAST_TEST_DURABLE=1  the node's store outlives the process: the tests
//                             then assert that nothing acked is ever lost
//   SHARDCAST_TEST_SAME_SECRET=1  every incarnation gets the same SHARDCAST_SECRET
//                             (default with DURABLE; see README "Tests")

import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const repo = fileURLToPath(new URL('../../../', import.meta.url));

export const NODE_BIN =
  process.env.SHARDCAST_NODE_BIN ?? `${process.env.CARGO_TARGET_DIR ?? `${repo}target`}/release/shardcast-node`;
export const DURABLE = process.env.SHARDCAST_TEST_DURABLE === '1';
export const SAME_SECRET = process.env.SHARDCAST_TEST_SAME_SECRET
  ? process.env.SHARDCAST_TEST_SAME_SECRET === '1'
  : DURABLE;
const EXTRA = (process.env.SHARDCAST_TEST_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);

export function requireBinary() {
  if (!existsSync(NODE_BIN)) {
    throw new Error(`${NODE_BIN} is missing: run "cargo build --release --bin shardcast-node" (or set SHARDCAST_NODE_BIN)`);
  }
}

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * One node on a fixed port, restartable. Incarnation n runs with
 * `--node-id inc-n`, so `welcome.node` (and the SDK's `ack.node`) tells
 * which process a client talked to.
 */
export class NodeUnderTest {
  constructor({ port, extraArgs = [] } = {}) {
    this.port = port;
    this.extraArgs = extraArgs;
    this.incarnation = 0;
    this.proc = null;
    this.secret = randomBytes(24).toString('hex');
    this.log = [];
    /** Keep one secret across restarts (resume tokens stay valid). */
    this.sameSecret = SAME_SECRET;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async start() {
    requireBinary();
    if (!this.port) this.port = await freePort();
    if (!this.sameSecret) this.secret = randomBytes(24).toString('hex');
    this.incarnation += 1;
    const args = [
      '--listen', `127.0.0.1:${this.port}`,
      '--metrics-listen', '127.0.0.1:0',
      '--cores', '1',
      '--node-id', `inc-${this.incarnation}`,
      '--drain-timeout-secs', '5',
      ...this.extraArgs,
      ...EXTRA,
    ];
    // The port of the previous incarnation may take a moment to be free.
    for (let attempt = 0; ; attempt++) {
      const proc = spawn(NODE_BIN, args, {
        env: { ...process.env, SHARDCAST_SECRET: this.secret, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
      proc.stderr.on('data', (d) => this.log.push(`[inc-${this.incarnation}] ${d}`));
      const line = await new Promise((resolve) => {
        let buf = '';
        proc.stdout.on('data', (d) => {
          buf += d;
          if (buf.includes('\n')) resolve(buf.split('\n')[0]);
        });
        exited.then(() => resolve(null));
      });
      if (line && line.includes(`ws=127.0.0.1:${this.port}`)) {
        this.proc = proc;
        this.exited = exited;
        this.startedAt = Date.now();
        return line;
      }
      if (attempt >= 40) throw new Error(`node did not start: ${line}\n${this.log.join('')}`);
      await sleep(100);
    }
  }

  /** SIGTERM: drain; resolves with the exit status. */
  async drain(within = 10_000) {
    const { proc, exited } = this;
    this.proc = null;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), within);
    const status = await exited;
    clearTimeout(t);
    return status;
  }

  /** SIGSTOP: the process stays, its sockets stop being served. Resolves once every thread is stopped. */
  async freeze() {
    const { pid } = this.proc;
    this.proc.kill('SIGSTOP');
    const t0 = Date.now();
    for (;;) {
      const states = readdirSync(`/proc/${pid}/task`).map((t) => {
        try {
          return readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
        } catch {
          return 'T'; // the thread is gone
        }
      });
      if (states.every((st) => st === 'T' || st === 't')) return;
      if (Date.now() - t0 > 2000) throw new Error(`node ${pid} not stopped: ${states}`);
      await sleep(5);
    }
  }

  /** SIGKILL (works on a stopped process too). */
  async kill() {
    const { proc, exited } = this;
    this.proc = null;
    proc.kill('SIGKILL');
    return exited;
  }

  async stop() {
    if (this.proc) await this.kill();
  }
}
