// The SDK from Node.js against a real shardcast-node: control plane, resume
// with replay and dedup, refused tokens, the node's error codes, timeouts.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';

import { Client, DefaultWebSocket } from '../../src/node.js';
import { DURABLE, NodeUnderTest } from '../harness.js';

const node = new NodeUnderTest();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const FAST = { minDelay: 50, maxDelay: 300, jitter: 20 };
let n = 0;
const uid = (name) => `${name}-${process.pid}-${++n}`;

function next(client, event, pred = () => true, ms = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    const off = client.on(event, (e) => {
      if (!pred(e)) return;
      clearTimeout(t);
      off();
      resolve(e);
    });
  });
}

async function until(cond, ms, what) {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

before(() => node.start());
after(() => node.stop());

test('Node.js 20 has no global WebSocket: the ws package is used', () => {
  if (typeof globalThis.WebSocket === 'function') assert.equal(DefaultWebSocket, globalThis.WebSocket);
  else assert.equal(DefaultWebSocket?.name, 'WebSocket');
});

test('controlUrl: the client asks the control plane before each connect and follows its wsUrl', async () => {
  const asked = [];
  const cp = createServer((req, res) => {
    const u = new URL(req.url, 'http://cp');
    asked.push({ path: u.pathname, userId: u.searchParams.get('userId'), auth: req.headers.authorization });
    if (u.pathname !== '/api/v1/connect') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ wsUrl: node.url, token: `cp-${u.searchParams.get('userId')}`, expiresAt: Date.now() + 60_000 }));
  });
  await new Promise((r) => cp.listen(0, '127.0.0.1', r));
  const controlUrl = `http://127.0.0.1:${cp.address().port}`;
  let tokens = 0;
  const alice = new Client({ controlUrl, userId: uid('alice'), getToken: async () => `jwt-${++tokens}`, ...FAST });
  const bob = new Client({ controlUrl, userId: uid('bob'), ...FAST });
  try {
    const got = [];
    bob.on('message', (m) => got.push(m.data));
    alice.connect();
    bob.connect();
    await Promise.all([next(alice, 'connected'), next(bob, 'connected')]);
    await alice.send(bob.userId, 'via the control plane');
    await until(() => got.length === 1, 5000, 'the message');
    assert.deepEqual(got, ['via the control plane']);
    assert.deepEqual(
      asked.map((a) => [a.path, a.userId, a.auth]).sort(),
      [
        ['/api/v1/connect', alice.userId, 'Bearer jwt-1'],
        ['/api/v1/connect', bob.userId, undefined],
      ].sort(),
    );
    // A drain: both ask the control plane again before reconnecting.
    await node.drain();
    await node.start();
    await Promise.all([next(alice, 'connected'), next(bob, 'connected')]);
    assert.equal(asked.filter((a) => a.userId === alice.userId).length >= 2, true);
    assert.equal(asked.at(-1).path, '/api/v1/connect');
    assert.ok(tokens >= 2, 'getToken is called before every connect');
  } finally {
    alice.disconnect();
    bob.disconnect();
    await new Promise((r) => cp.close(r));
  }
});

test('resume on the same node: the replay repeats what bob had, the SDK drops it, nothing is lost', async () => {
  const alice = new Client({ url: node.url, userId: uid('alice'), ...FAST });
  const bob = new Client({ url: node.url, userId: uid('bob'), ...FAST, minDelay: 400, jitter: 0 });
  try {
    const got = [];
    bob.on('message', (m) => got.push(m.data.seq));
    alice.connect();
    bob.connect();
    await Promise.all([next(alice, 'connected'), next(bob, 'connected')]);
    const firstToken = bob.resumeToken;
    let seq = 0;
    const batch = async (k) => {
      const acks = [];
      for (let i = 0; i < k; i++) acks.push(alice.send(bob.userId, { seq: ++seq }));
      await Promise.all(acks);
    };
    await batch(30);
    await until(() => got.length === 30, 5000, '30 messages');
    assert.equal(bob.offset, 30);
    // Bob's connection drops; alice goes on while he is away.
    const back = next(bob, 'connected');
    bob._ws.close(4000, 'test: drop the connection');
    await sleep(100);
    await batch(20);
    const welcome = await back;
    assert.equal(welcome.resumed, true, 'resumed with the token of the first welcome');
    assert.equal(welcome.offset, 0, `the token ${firstToken} names offset 0`);
    await batch(10);
    await until(() => got.length >= 60, 5000, '60 messages');
    await sleep(100);
    assert.deepEqual(got, Array.from({ length: 60 }, (_, i) => i + 1));
    assert.equal(bob.stats.duplicates, 30, 'the node replayed 1..30 again and the SDK dropped them');
    assert.equal(bob.offset, 60);
  } finally {
    alice.disconnect();
    bob.disconnect();
  }
});

test('a refused resume token: error event with its code, then a plain connect', async () => {
  const c = new Client({ url: node.url, userId: uid('carol'), resumeToken: 'not-a-token', ...FAST });
  try {
    const err = next(c, 'error');
    const closed = next(c, 'connecting', (e) => e.code !== 0);
    const connected = next(c, 'connected');
    c.connect();
    assert.equal((await err).code, 'token_malformed');
    assert.equal((await closed).code, 1008);
    const w = await connected;
    assert.equal(w.resumed, false);
    assert.ok(c.resumeToken, 'a fresh token from the welcome');
  } finally {
    c.disconnect();
  }
});

test('the node\'s error codes reject the promise: too_many_subscriptions on the 65th join', async () => {
  const c = new Client({ url: node.url, userId: uid('dave'), ...FAST });
  try {
    c.connect();
    await next(c, 'connected');
    await Promise.all(Array.from({ length: 64 }, (_, i) => c.join(`r${i}`)));
    await assert.rejects(c.join('r64'), { code: 'too_many_subscriptions' });
    assert.equal(c.rooms.length, 64);
  } finally {
    c.disconnect();
  }
});

test('a send without ack is rejected with timeout (node frozen), and disconnect() stops everything', async () => {
  const c = new Client({ url: node.url, userId: uid('erin'), ...FAST });
  try {
    c.connect();
    await next(c, 'connected');
    await node.freeze();
    await assert.rejects(c.send('nobody', 1, { timeout: 300 }), { code: 'timeout' });
    assert.equal(c.pending, 0);
  } finally {
    c.disconnect();
    await node.kill();
    await node.start();
  }
  assert.equal(c.state, 'disconnected');
});

// With the in-memory store and the same SHARDCAST_SECRET across a restart, a
// token names an offset the new store never reached. The node then replays
// everything the new store buffered (offsets 1, 2, ...), not what comes after
// the token's offset (this test found the node doing the latter).
test('server: a token from the previous process does not hide what the store buffered since', async () => {
  const same = new NodeUnderTest();
  same.sameSecret = true;
  await same.start();
  const alice = new Client({ url: same.url, userId: uid('alice'), ...FAST });
  const bob = new Client({ url: same.url, userId: uid('bob'), ...FAST });
  try {
    const got = [];
    bob.on('message', (m) => got.push(m.data));
    alice.connect();
    bob.connect();
    await Promise.all([next(alice, 'connected'), next(bob, 'connected')]);
    for (const d of ['one', 'two', 'three']) await alice.send(bob.userId, d);
    await until(() => got.length === 3, 5000, 'three messages');
    const drained = next(bob, 'reconnect');
    await same.drain();
    await drained;
    bob.disconnect(); // bob stays away; he keeps the reconnect token (offset 3)
    await same.start();
    await next(alice, 'connected');
    for (const d of ['four', 'five']) await alice.send(bob.userId, d); // buffered at offsets 1, 2
    const back = next(bob, 'connected');
    bob.connect();
    const w = await back;
    assert.equal(w.resumed, true);
    // In memory the new store never reached offset 3: everything it holds
    // is replayed. A durable store (Redis) still has offsets 1..3, so the
    // token's offset holds and four, five come after it.
    assert.equal(w.offset, DURABLE ? 3 : 0, 'the replay starts where the store\'s history allows');
    await sleep(300);
    assert.deepEqual(got, ['one', 'two', 'three', 'four', 'five']);
  } finally {
    alice.disconnect();
    bob.disconnect();
    await same.stop();
  }
});

/** An HS256 JWT over `claims` with `secret` (what an app's backend mints). */
function hs256(claims, secret) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

test('--auth jwt: getToken refreshes the JWT on the open connection, which outlives its first token', { timeout: 30_000 }, async () => {
  const node = new NodeUnderTest({ extraArgs: ['--auth', 'jwt', '--jwt-leeway-secs', '0'] });
  await node.start();
  const now = () => Math.floor(Date.now() / 1000);
  const aliceId = uid('alice');
  const bobId = uid('bob');
  let minted = 0;
  const alice = new Client({
    url: node.url,
    userId: aliceId,
    // Three seconds each: without a refresh the node closes with 4003.
    getToken: () => {
      minted += 1;
      return hs256({ sub: aliceId, exp: now() + 3 }, node.secret);
    },
    ...FAST,
  });
  const bob = new Client({ url: node.url, userId: bobId, getToken: () => hs256({ sub: bobId, exp: now() + 60 }, node.secret), ...FAST });
  const closes = [];
  alice.on('connecting', (e) => { if (e.code) closes.push(e.code); }); // code 0: the first connect
  try {
    const got = [];
    bob.on('message', (m) => got.push(m.data));
    alice.connect();
    bob.connect();
    await Promise.all([next(alice, 'connected'), next(bob, 'connected')]);
    await sleep(5000);
    await alice.send(bobId, 'after the first token expired');
    await until(() => got.length === 1, 5000, 'the message');
    assert.deepEqual(closes, [], 'never reconnected (no 4003)');
    assert.equal(alice.stats.connects, 1);
    assert.ok(minted >= 3, `refreshed (${minted} tokens minted)`);
  } finally {
    alice.disconnect();
    bob.disconnect();
    await node.stop();
  }
});
