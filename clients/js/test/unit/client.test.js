import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Client, ShardcastError, backoffDelay, Dedup, decode, ProtocolError } from '../../src/index.js';
import { FakeClock, fakeSocketClass, flush } from './fake.js';

const OPTS = { minDelay: 100, maxDelay: 1000, jitter: 50 };

/** A client on a fake socket and clock; `random` is fixed so delays are exact. */
function setup(extra = {}) {
  const clock = new FakeClock();
  const { FakeSocket, sockets } = fakeSocketClass();
  const events = [];
  const client = new Client({
    url: 'ws://node.test/ws',
    userId: 'alice',
    WebSocket: FakeSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: () => 0.5,
    ...OPTS,
    ...extra,
  });
  for (const ev of ['state', 'connecting', 'connected', 'disconnected', 'error', 'message', 'reconnect']) {
    client.on(ev, (arg) => events.push([ev, arg]));
  }
  const last = () => sockets[sockets.length - 1];
  return { client, clock, sockets, events, last, of: (name) => events.filter((e) => e[0] === name).map((e) => e[1]) };
}

test('backoff: t_k = min(maxDelay, minDelay*2^k) + U(0, jitter)', () => {
  const o = { minDelay: 250, maxDelay: 4000, jitter: 100 };
  const got = [0, 1, 2, 3, 4, 5, 60].map((k) => backoffDelay(k, o, () => 0));
  assert.deepEqual(got, [250, 500, 1000, 2000, 4000, 4000, 4000]);
  assert.equal(backoffDelay(2, o, () => 0.5), 1050);
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelay(1, o);
    assert.ok(d >= 500 && d < 600, `${d}`);
  }
});

test('state machine: connecting -> connected -> connecting (on close) -> connected -> disconnected', async () => {
  const { client, clock, last, of } = setup();
  assert.equal(client.state, 'disconnected');
  client.connect();
  assert.equal(client.state, 'connecting');
  await flush();
  assert.equal(last().query.get('userId'), 'alice');
  assert.equal(last().query.get('resume'), null, 'no token on the first connect');
  last().welcome(0, 'T1');
  assert.equal(client.state, 'connected');
  assert.deepEqual(of('connected')[0], { userId: 'alice', node: 'n1', offset: 0, resumed: false });
  last().drop(1006, 'gone');
  assert.equal(client.state, 'connecting');
  const c = of('connecting').at(-1);
  assert.equal(c.code, 1006);
  assert.equal(c.delay, 125, 'k=0 after a welcome: minDelay + 0.5*jitter');
  await clock.advance(125);
  assert.equal(last().query.get('resume'), 'T1', 'reconnects with the newest token');
  last().welcome(0, 'T2');
  assert.equal(of('connected').at(-1).resumed, true);
  client.disconnect();
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(last().closed, { code: 1000, reason: 'disconnect called' });
  assert.deepEqual(of('disconnected'), [{ code: 1000, reason: 'disconnect called' }]);
  assert.deepEqual(
    of('state').map((s) => s.newState),
    ['connecting', 'connected', 'connecting', 'connected', 'disconnected'],
  );
  await clock.advance(60_000);
  assert.equal(client.state, 'disconnected', 'no reconnect after disconnect()');
});

test('backoff grows while attempts fail and resets on a welcome', async () => {
  const { client, clock, last, of, sockets } = setup();
  client.connect();
  await flush();
  const delays = [];
  for (let i = 0; i < 6; i++) {
    last().drop(1006);
    delays.push(of('connecting').at(-1).delay);
    await clock.advance(delays.at(-1));
  }
  assert.deepEqual(delays, [125, 225, 425, 825, 1025, 1025]);
  assert.equal(sockets.length, 7);
  last().welcome();
  last().drop(1006);
  assert.equal(of('connecting').at(-1).delay, 125, 'reset by the welcome');
  client.disconnect();
});

test('a socket that never sends welcome is abandoned after connectTimeout', async () => {
  const { client, clock, sockets, of } = setup({ connectTimeout: 500 });
  client.connect();
  await flush();
  await clock.advance(499);
  assert.equal(sockets.length, 1);
  await clock.advance(1);
  assert.ok(sockets[0].closed);
  assert.equal(of('connecting').at(-1).reason, 'no welcome in time');
  await clock.advance(125);
  assert.equal(sockets.length, 2);
  client.disconnect();
});

test('reconnect envelope: newest token, retryAfterMs and wsUrl are followed', async () => {
  const { client, clock, last, sockets, of } = setup();
  client.connect();
  await flush();
  last().welcome(3, 'W');
  last().serve({ type: 'reconnect', resumeToken: 'R', retryAfterMs: 700, wsUrl: 'ws://other.test:9/ws' });
  assert.equal(client.resumeToken, 'R');
  assert.deepEqual(of('reconnect'), [{ retryAfterMs: 700, wsUrl: 'ws://other.test:9/ws' }]);
  last().drop(1012, 'node draining');
  assert.equal(of('connecting').at(-1).delay, 725, 'retryAfterMs is T_0 of this attempt');
  await clock.advance(724);
  assert.equal(sockets.length, 1);
  await clock.advance(1);
  assert.equal(new URL(last().url).host, 'other.test:9');
  assert.equal(last().query.get('resume'), 'R');
  last().drop(1006);
  assert.equal(of('connecting').at(-1).delay, 225, 'back to the normal backoff, k=1');
  await clock.advance(225);
  assert.equal(new URL(last().url).host, 'node.test', 'the redirect is used for one attempt');
  client.disconnect();
});

test('a refused token is dropped: the next attempt connects without one', async () => {
  const { client, clock, last, of } = setup({ resumeToken: 'OLD' });
  client.connect();
  await flush();
  assert.equal(last().query.get('resume'), 'OLD', 'a stored token given in the options is used');
  last().serve({ type: 'error', code: 'token_forged', message: 'bad mac' });
  last().drop(1008, 'invalid resume token');
  assert.equal(of('error').at(-1).code, 'token_forged');
  assert.equal(client.resumeToken, null);
  await clock.advance(125);
  assert.equal(last().query.get('resume'), null);
  client.disconnect();
});

test('send resolves on ack, rejects on error with the stable code', async () => {
  const { client, last } = setup();
  client.connect();
  await flush();
  last().welcome();
  const p1 = client.send('bob', { n: 1 });
  const p2 = client.send('bob', 2, { id: 'my-id' });
  const [e1, e2] = last().sent;
  assert.equal(e1.type, 'send');
  assert.equal(e1.to, 'bob');
  assert.deepEqual(e1.data, { n: 1 });
  assert.equal(e2.id, 'my-id');
  last().serve({ type: 'ack', id: e1.id });
  last().serve({ type: 'error', code: 'rate_limited', id: 'my-id', message: 'slow down', retryAfterMs: 1200 });
  assert.deepEqual(await p1, { id: e1.id, node: 'n1' });
  await assert.rejects(p2, (e) => e instanceof ShardcastError && e.code === 'rate_limited' && e.id === 'my-id' && e.retryAfterMs === 1200);
  assert.equal(client.pending, 0);
  await assert.rejects(client.send('not a user', 1), { code: 'bad_argument' });
  await assert.rejects(client.publish('chat.*', 1), { code: 'bad_argument' });
  await assert.rejects(client.join('lob*'), { code: 'bad_argument' });
  client.disconnect();
});

test('resend queue: unacked requests are resent in order with the same id after rooms are rejoined', async () => {
  const { client, clock, last, sockets } = setup();
  client.connect();
  await flush();
  last().welcome();
  const joined = client.join('chat.*');
  const j = last().sent[0];
  last().serve({ type: 'ack', id: j.id });
  await joined;
  const a = client.send('bob', 'a');
  const b = client.publish('chat.lobby', 'b');
  const c = client.send('carol', 'c');
  const first = last().sent.slice(1);
  last().serve({ type: 'ack', id: first[1].id }); // only the publish got its ack
  last().drop(1006);
  const d = client.send('bob', 'd'); // while disconnected: queued
  const leaving = client.leave('chat.*');
  await leaving;
  assert.deepEqual(client.rooms, []);
  client.join('ops.alert');
  await clock.advance(125);
  assert.equal(sockets.length, 2);
  assert.deepEqual(last().sent, [], 'nothing goes out before the welcome');
  last().welcome();
  const again = last().sent;
  assert.deepEqual(
    again.map((e) => [e.type, e.id ?? e.room]),
    [
      ['send', first[0].id],
      ['send', first[2].id],
      ['send', again[2].id],
      ['join', again[3].id],
    ],
  );
  assert.equal(again[3].room, 'ops.alert');
  assert.equal(client.stats.resent, 2, 'a and c went out before; d and the join are first sends');
  for (const e of again) last().serve({ type: 'ack', id: e.id });
  assert.deepEqual(
    (await Promise.all([a, b, c, d])).map((r) => r.id),
    [first[0].id, first[1].id, first[2].id, again[2].id],
  );
  // Another reconnect: ops.alert is rejoined with a fresh internal id.
  last().drop(1006);
  await clock.advance(125);
  last().welcome();
  assert.deepEqual(last().sent.map((e) => [e.type, e.room]), [['join', 'ops.alert']]);
  last().serve({ type: 'error', code: 'too_many_subscriptions', id: last().sent[0].id, message: 'x' });
  assert.deepEqual(client.rooms, [], 'a refused rejoin drops the room');
  client.disconnect();
});

test('send times out, is rejected with timeout and is not resent', async () => {
  const { client, clock, last } = setup({ sendTimeout: 1000 });
  client.connect();
  await flush();
  last().welcome();
  const p = client.send('bob', 1);
  const rejected = assert.rejects(p, { code: 'timeout' });
  await clock.advance(1000);
  await rejected;
  last().drop(1006);
  await clock.advance(125);
  last().welcome();
  assert.deepEqual(last().sent, []);
  client.disconnect();
});

test('disconnect() rejects pending requests; close 4001 (replaced) stops reconnecting', async () => {
  const { client, clock, last, of, sockets } = setup();
  client.connect();
  await flush();
  last().welcome();
  const p = client.send('bob', 1);
  client.disconnect();
  await assert.rejects(p, { code: 'disconnected' });
  client.connect();
  await flush();
  last().welcome();
  last().drop(4001, 'replaced by a newer connection');
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(of('disconnected').at(-1), { code: 4001, reason: 'replaced by a newer connection' });
  await clock.advance(60_000);
  assert.equal(sockets.length, 2);
});

test('dedup: direct messages once by id across sessions and by offset within one; room messages by id', async () => {
  const { client, clock, last, of } = setup();
  client.connect();
  await flush();
  last().welcome(0);
  const msg = (from, id, offset) => ({ type: 'msg', from, id, offset, data: id });
  last().serve(msg('bob', 'b1', 1));
  last().serve(msg('bob', 'b2', 2));
  last().serve(msg('bob', 'b2', 2)); // repeat
  last().serve(msg('carol', 'x', 2)); // offset not above the session's highest
  last().serve(msg('carol', 'b2', 3)); // same id, other sender: a different message
  last().serve({ type: 'msg', room: 'chat.a', from: 'bob', id: 'r1', data: 1 });
  last().serve({ type: 'msg', room: 'chat.a', from: 'bob', id: 'r1', data: 1 });
  assert.equal(client.offset, 3);
  // Resume with an older token: the node replays 2..3 and then 4.
  last().drop(1006);
  await clock.advance(125);
  last().welcome(1);
  last().serve(msg('bob', 'b2', 2));
  last().serve(msg('carol', 'b2', 3));
  last().serve(msg('bob', 'b4', 4));
  // The node restarted with an empty store: offsets start over at 1, below
  // the welcome offset of the resumed token; a resent send comes first.
  last().drop(1006);
  await clock.advance(125);
  last().welcome(4);
  last().serve(msg('bob', 'b4', 1)); // bob resent b4 (no ack): dropped by id
  last().serve(msg('bob', 'b5', 2));
  last().serve(msg('bob', 'b6', 3));
  const got = of('message').map((m) => `${m.type}:${m.from}:${m.id}:${m.offset ?? m.room}`);
  assert.deepEqual(got, [
    'direct:bob:b1:1',
    'direct:bob:b2:2',
    'direct:carol:b2:3',
    'room:bob:r1:chat.a',
    'direct:bob:b4:4',
    'direct:bob:b5:2',
    'direct:bob:b6:3',
  ]);
  assert.equal(client.stats.duplicates, 6);
  assert.equal(client.stats.offsetResets, 1);
  assert.equal(client.offset, 3);
  client.disconnect();
});

test('the id window forgets the oldest ids beyond its size', () => {
  const d = new Dedup(2);
  d.welcome(0);
  assert.ok(d.acceptDirect('a', '1', 1));
  assert.ok(d.acceptDirect('a', '2', 2));
  assert.ok(d.acceptDirect('a', '3', 3));
  d.welcome(0); // a new session
  assert.ok(!d.acceptDirect('a', '3', 3));
  assert.ok(d.acceptDirect('a', '1', 1), 'evicted: the window must cover the node buffer');
});

test('bad frames from the node raise error events and keep the connection', async () => {
  const { client, last, of } = setup();
  client.connect();
  await flush();
  last().welcome();
  last().serve('not json');
  last().serve({ type: 'msg', from: 'bob', id: 'x' }); // direct without offset
  last().serve({ type: 'future', whatever: 1 }); // unknown types are ignored
  assert.deepEqual(of('error').map((e) => e.code), ['protocol', 'protocol']);
  assert.equal(client.state, 'connected');
  assert.throws(() => decode('[]'), ProtocolError);
  client.disconnect();
});

test('getToken is called before each connect and passed as token=', async () => {
  let calls = 0;
  const { client, clock, last } = setup({ getToken: async () => `jwt${++calls}` });
  client.connect();
  await flush();
  assert.equal(last().query.get('token'), 'jwt1');
  last().drop(1006);
  await clock.advance(125);
  assert.equal(last().query.get('token'), 'jwt2');
  client.disconnect();
});

test('controlUrl: asks the control plane first, uses its wsUrl, token and resumeToken; retries when it fails', async () => {
  const asked = [];
  let fail = true;
  const fetch = async (url, init) => {
    asked.push([url, init.headers.authorization]);
    if (fail) return { ok: false, status: 503, json: async () => ({}) };
    return { ok: true, status: 200, json: async () => ({ wsUrl: 'ws://n7.test/ws', token: 'CT', resumeToken: 'CR', expiresAt: 1, nodeId: 'n7', ringVersion: 12 }) };
  };
  const { client, clock, last, sockets, of } = setup({ url: undefined, controlUrl: 'http://cp.test/base', token: 'U', fetch });
  client.connect();
  await flush();
  assert.equal(sockets.length, 0);
  assert.equal(of('error')[0].code, 'connect_failed');
  fail = false;
  await clock.advance(125);
  assert.deepEqual(asked.map((a) => a[0]), [
    'http://cp.test/base/api/v1/connect?userId=alice',
    'http://cp.test/base/api/v1/connect?userId=alice',
  ]);
  assert.equal(asked[0][1], 'Bearer U');
  assert.equal(new URL(last().url).host, 'n7.test');
  assert.equal(last().query.get('token'), 'CT');
  assert.equal(last().query.get('resume'), 'CR', 'the control plane token when the client has none');
  assert.equal(last().query.get('ring'), '12', 'the ring version that chose the node');
  last().welcome(0, 'MINE');
  last().drop(1006);
  await clock.advance(125);
  assert.equal(last().query.get('resume'), 'MINE', 'the client\'s newer token wins');
  assert.equal(
    asked.at(-1)[0],
    'http://cp.test/base/api/v1/connect?userId=alice&unreachable=n7',
    'a connection that ended without a reconnect reports its node',
  );
  last().welcome(1, 'MINE2');
  last().drop(1006);
  await clock.advance(125);
  assert.equal(new URL(asked.at(-1)[0]).searchParams.get('unreachable'), 'n7', 'each loss is reported');
  client.disconnect();
});

test('options are checked', () => {
  const { FakeSocket } = fakeSocketClass();
  assert.throws(() => new Client({ url: 'ws://x/ws', userId: 'bad user', WebSocket: FakeSocket }), TypeError);
  assert.throws(() => new Client({ userId: 'a', WebSocket: FakeSocket }), TypeError);
  assert.throws(() => new Client({ url: 'ws://x', controlUrl: 'http://y', userId: 'a', WebSocket: FakeSocket }), TypeError);
  assert.throws(() => new Client({ url: 'ws://x', userId: 'a', WebSocket: FakeSocket, minDelay: -1 }), TypeError);
});

test('an id-less too_many_subscriptions/rate_limited refuses the oldest unanswered join (the node omits the id)', async () => {
  const { client, last, of } = setup();
  client.connect();
  await flush();
  last().welcome();
  const j1 = client.join('a');
  const j2 = client.join('b');
  const j3 = client.join('c');
  const [e1, , e3] = last().sent;
  last().serve({ type: 'ack', id: e1.id });
  last().serve({ type: 'error', code: 'too_many_subscriptions', message: 'at most 64 subscriptions' });
  last().serve({ type: 'ack', id: e3.id });
  await j1;
  await assert.rejects(j2, { code: 'too_many_subscriptions' });
  await j3;
  assert.deepEqual(client.rooms, ['a', 'c']);
  last().serve({ type: 'error', code: 'rate_limited', message: 'x' }); // nothing in flight: an error event
  assert.equal(of('error').at(-1).code, 'rate_limited');
  client.disconnect();
});

/** An unsigned JWT-shaped token expiring at `exp` (unix s): the SDK only reads `exp`. */
function jwtWithExp(exp, n) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'alice', exp, n })}.sig`;
}

test('jwtExpiry reads exp, and is null for anything else', async () => {
  const { jwtExpiry } = await import('../../src/index.js');
  assert.equal(jwtExpiry(jwtWithExp(1234, 1)), 1234);
  for (const bad of [null, '', 'a.b', 'x.!!!.y', `${Buffer.from('{}').toString('base64url')}.${Buffer.from('{"exp":"soon"}').toString('base64url')}.s`]) {
    assert.equal(jwtExpiry(bad), null, String(bad));
  }
});

test('getToken refreshes the JWT on the open connection before it expires', async () => {
  let calls = 0;
  let clock;
  const getToken = async () => {
    calls += 1;
    // Each token lives 100 s from the clock's now.
    return jwtWithExp(Math.floor(clock.now / 1000) + 100, calls);
  };
  const s = setup({ getToken, now: () => clock.now });
  clock = s.clock;
  const { client, last } = s;
  client.connect();
  await flush();
  assert.equal(calls, 1);
  last().welcome(0, 'T1');
  // 80 % of 100 s is 80 s, which is more than 30 s before exp: the refresh
  // goes at 70 s (exp - 30 s).
  await clock.advance(69_000);
  assert.equal(last().sent.filter((e) => e.type === 'refresh').length, 0);
  await clock.advance(1_000);
  await flush();
  const refresh = last().sent.find((e) => e.type === 'refresh');
  assert.ok(refresh, 'a refresh was sent');
  assert.equal(calls, 2);
  assert.equal(JSON.parse(Buffer.from(refresh.token.split('.')[1], 'base64url')).n, 2);
  last().serve({ type: 'ack', id: refresh.id });
  // The next one is scheduled from the new token's exp (170 s): at 140 s.
  await clock.advance(69_000);
  assert.equal(last().sent.filter((e) => e.type === 'refresh').length, 1);
  await clock.advance(1_000);
  await flush();
  assert.equal(last().sent.filter((e) => e.type === 'refresh').length, 2);
  client.disconnect();
});

test('a refused refresh is an error event; the connection is not dropped by the client', async () => {
  let clock;
  const s = setup({ getToken: async () => jwtWithExp(Math.floor(clock.now / 1000) + 10, 0), now: () => clock.now });
  clock = s.clock;
  const { client, last, of } = s;
  client.connect();
  await flush();
  last().welcome(0, 'T1');
  await clock.advance(8_000);
  await flush();
  const refresh = last().sent.find((e) => e.type === 'refresh');
  assert.ok(refresh, 'refresh at 80 % of a 10 s token');
  last().serve({ type: 'error', code: 'refresh_refused', id: refresh.id, message: 'bad token' });
  assert.equal(of('error').at(-1).code, 'refresh_refused');
  assert.equal(client.state, 'connected');
  client.disconnect();
});
