// The golden protocol vectors of the node (src/protocol/vectors/*.json at
// the repository root) against the SDK's decoder, encoders and constants.
// SHARDCAST_VECTORS_DIR points elsewhere; the test skips only when the
// directory does not exist.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  CLOSE_CODES,
  ERROR_CODES,
  ProtocolError,
  decode,
  encodeJoin,
  encodeLeave,
  encodeRefresh,
  encodePublish,
  encodeSend,
  isId,
  isPattern,
  isRoom,
  isUserId,
  parseResumeToken,
} from '../../src/index.js';

const dir = process.env.SHARDCAST_VECTORS_DIR ?? fileURLToPath(new URL('../../../../src/protocol/vectors/', import.meta.url));
const skip = existsSync(dir) ? false : `no protocol vectors at ${dir} (src/protocol/vectors has not landed on this branch)`;
const load = (name) => JSON.parse(readFileSync(`${dir}/${name}`, 'utf8'));

test('server envelopes: every valid one decodes to its fields', { skip }, () => {
  const { valid } = load('server.json');
  assert.ok(valid.length > 0);
  for (const v of valid) {
    const got = decode(v.text);
    const want = v.envelope;
    assert.equal(got.type, want.type, v.name);
    assert.ok(!got.unknown, v.name);
    for (const [k, value] of Object.entries(want)) {
      if (k === 'type') continue;
      assert.deepEqual(got[k], value, `${v.name}: ${k}`);
    }
    if (want.type === 'msg') assert.equal(got.kind, want.room === undefined ? 'direct' : 'room', v.name);
  }
});

test('server envelopes: every invalid one is refused by the strict decoder with its code', { skip }, () => {
  const { invalid } = load('server.json');
  for (const v of invalid) {
    assert.throws(() => decode(v.text, { strict: true }), (e) => e instanceof ProtocolError && e.code === v.code, v.name);
  }
});

test('client envelopes: the encoders write exactly the valid texts', { skip }, () => {
  const { valid } = load('client.json');
  const encode = {
    send: (e) => encodeSend(e.to, e.id, e.data),
    publish: (e) => encodePublish(e.room, e.id, e.data),
    join: (e) => encodeJoin(e.room, e.id),
    leave: (e) => encodeLeave(e.room, e.id),
    refresh: (e) => encodeRefresh(e.token, e.id),
  };
  for (const v of valid) {
    assert.ok(encode[v.envelope.type], `${v.name}: an encoder for ${v.envelope.type}`);
    assert.equal(encode[v.envelope.type](v.envelope), v.text, v.name);
  }
});

test('client envelopes: the SDK refuses the arguments of every invalid one before sending', { skip }, () => {
  const { invalid } = load('client.json');
  const accepted = {
    send: (e) => isUserId(e.to) && isId(e.id),
    publish: (e) => isRoom(e.room) && isId(e.id),
    join: (e) => isPattern(e.room) && (e.id === undefined || isId(e.id)),
    leave: (e) => isPattern(e.room) && (e.id === undefined || isId(e.id)),
  };
  for (const v of invalid) {
    let e;
    try {
      e = JSON.parse(v.text);
    } catch {
      continue; // not JSON: the encoders always write JSON
    }
    const check = e && typeof e === 'object' && !Array.isArray(e) ? accepted[e.type] : undefined;
    if (!check) continue; // not one of the four types: no encoder writes it
    assert.equal(check(e), false, `${v.name}: the SDK would send ${v.text}`);
  }
});

test('codes: error and close code tables match the SDK constants', { skip }, () => {
  const codes = load('codes.json');
  assert.deepEqual([...codes.errors].sort(), [...ERROR_CODES].sort());
  const fromVectors = Object.fromEntries(codes.close.map((c) => [c.name.toUpperCase(), c.code]));
  assert.deepEqual(fromVectors, { ...CLOSE_CODES });
});

test('resume tokens: the SDK reads userId, offset and issuedAt of every valid token', { skip }, () => {
  const tokens = load('token.json');
  for (const v of tokens.valid) {
    assert.deepEqual(parseResumeToken(v.token), { userId: v.userId, offset: v.offset, issuedAt: v.issuedAt });
  }
  for (const v of tokens.refused) {
    if (v.error === 'token_malformed') assert.equal(parseResumeToken(v.token), null, v.name);
  }
});
