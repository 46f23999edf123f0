// The reconnect scenario from Node.js against a real shardcast-node.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { Client } from '../../src/node.js';
import { DURABLE, NodeUnderTest, SAME_SECRET } from '../harness.js';
import { checkScenario, runScenario } from '../scenario.js';

const nodes = [];
after(() => Promise.all(nodes.map((n) => n.stop())));

async function scenario(sameSecret) {
  const node = new NodeUnderTest();
  node.sameSecret = sameSecret;
  nodes.push(node);
  await node.start();
  const result = await runScenario({
    Client,
    url: node.url,
    tag: `node${process.pid}${sameSecret ? 's' : 'f'}`,
    control: {
      drain: () => node.drain(),
      restart: () => node.start(),
      freeze: () => node.freeze(),
      kill: () => node.kill(),
    },
  });
  const { failures, relaxed, summary } = checkScenario(result, { durable: DURABLE, sameSecret });
  console.log(JSON.stringify(summary));
  for (const r of relaxed) console.log(`relaxed: ${r}`);
  await node.stop();
  assert.deepEqual(failures, [], `${failures.join('\n')}\n${node.log.join('')}`);
  return { relaxed, summary };
}

test(`drain, SIGKILL and restarts: every message once, in order (durable=${DURABLE}, sameSecret=${SAME_SECRET})`, { timeout: 90_000 }, async () => {
  await scenario(SAME_SECRET);
});

// With one secret across restarts the clients resume with tokens of the
// previous process. With the in-memory store those tokens name offsets the
// new store never reached; the node then replays everything the new store
// buffered, so nothing acked by a running process may be missing here either.
test('the same scenario with one secret across restarts (tokens survive; the store does not)', { skip: SAME_SECRET && 'the first test ran this configuration', timeout: 90_000 }, async () => {
  const { relaxed } = await scenario(true);
  assert.ok(relaxed.every((r) => r.includes('lost in the SIGKILL')), relaxed.join('\n'));
});
