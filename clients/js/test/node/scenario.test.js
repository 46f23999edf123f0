// The reconnect scenario from Node.js against a real shardcast-node.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { Client } from '../../src/node.js';
import { DURABLE, NodeUnderTest, SAME_SECRET } from '../harness.js';
import { checkScenario, runScenario } from '../scenario.js';

const node = new NodeUnderTest();
after(() => node.stop());

test(`drain, SIGKILL and restarts: every message once, in order (durable=${DURABLE}, sameSecret=${SAME_SECRET})`, { timeout: 90_000 }, async () => {
  await node.start();
  const result = await runScenario({
    Client,
    url: node.url,
    tag: `node${process.pid}`,
    control: {
      drain: () => node.drain(),
      restart: () => node.start(),
      freeze: async () => node.freeze(),
      kill: () => node.kill(),
    },
  });
  const { failures, relaxed, summary } = checkScenario(result, { durable: DURABLE, sameSecret: SAME_SECRET });
  console.log(JSON.stringify(summary));
  for (const r of relaxed) console.log(`relaxed: ${r}`);
  assert.deepEqual(failures, [], `${failures.join('\n')}\n${node.log.join('')}`);
});
