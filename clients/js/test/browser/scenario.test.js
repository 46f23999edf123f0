// The reconnect scenario in headless Chromium: the page imports the built,
// minified bundle and uses the browser's own WebSocket against a real node.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { join } from 'node:path';

import { DURABLE, NodeUnderTest, SAME_SECRET } from '../harness.js';
import { checkScenario } from '../scenario.js';
import { PKG, launch, serve } from './browser.js';

const node = new NodeUnderTest();
let browser;
let site;

before(async () => {
  site = await serve(
    { '/dist/': join(PKG, 'dist/'), '/test/': join(PKG, 'test/') },
    { '/': '<!doctype html><meta charset="utf-8"><title>shardcast-client test</title><body>test page</body>' },
  );
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await site?.close();
  await node.stop();
});

test(`Chromium: drain, SIGKILL and restarts: every message once, in order (durable=${DURABLE}, sameSecret=${SAME_SECRET})`, { timeout: 120_000 }, async () => {
  await node.start();
  const page = await browser.context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  const ops = {
    drain: () => node.drain(),
    restart: async () => {
      await node.start();
      return node.incarnation;
    },
    freeze: () => node.freeze(),
    kill: () => node.kill(),
  };
  await page.exposeFunction('nodeControl', (op) => ops[op]());
  await page.goto(`${site.url}/`);
  const { result, ua, native } = await page.evaluate(
    async ({ url, tag }) => {
      const { Client } = await import('/dist/shardcast-client.min.js');
      const { runScenario } = await import('/test/scenario.js');
      const control = {
        drain: () => window.nodeControl('drain'),
        restart: () => window.nodeControl('restart'),
        freeze: () => window.nodeControl('freeze'),
        kill: () => window.nodeControl('kill'),
      };
      const native = String(WebSocket).includes('[native code]');
      return { result: await runScenario({ Client, url, tag, control }), ua: navigator.userAgent, native };
    },
    { url: node.url, tag: `chromium${process.pid}` },
  );
  assert.ok(/Chrome\//.test(ua), ua);
  assert.ok(native, 'the page uses the browser\'s own WebSocket');
  const { failures, relaxed, summary } = checkScenario(result, { durable: DURABLE, sameSecret: SAME_SECRET });
  console.log(ua);
  console.log(JSON.stringify(summary));
  for (const r of relaxed) console.log(`relaxed: ${r}`);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(failures, [], `${failures.join('\n')}\n${node.log.join('')}`);
  await page.close();
});
