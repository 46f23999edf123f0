// The web-chat demo (examples/web-chat) by hand, in headless Chromium: two
// tabs chat directly and in a room, the node is drained and restarted, and
// both tabs reconnect and go on. Screenshots land in test-results/.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { NodeUnderTest } from '../harness.js';
import { PKG, REPO, launch, serve } from './browser.js';

const node = new NodeUnderTest();
const shots = join(PKG, 'test-results');
let browser;
let site;

before(async () => {
  mkdirSync(shots, { recursive: true });
  site = await serve({ '/examples/': join(REPO, 'examples/'), '/clients/js/src/': join(PKG, 'src/') });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await site?.close();
  await node.stop();
});

test('demo page: two tabs chat, the node restarts, both reconnect and chat on', { timeout: 60_000 }, async () => {
  await node.start();
  const tab = async (user) => {
    const page = await browser.context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${site.url}/examples/web-chat/?user=${user}&node=${encodeURIComponent(node.url)}`);
    await page.click('#connect');
    return { page, errors };
  };
  const alice = await tab('alice');
  const bob = await tab('bob');
  const connectedTo = (t, inc) => t.page.waitForFunction(
    (inc) => document.querySelector('#state').dataset.state === 'connected' && document.querySelector('#detail').textContent.includes(inc),
    inc,
    { timeout: 10_000 },
  );
  const logHas = (t, text) => t.page.waitForFunction((text) => document.querySelector('#log').textContent.includes(text), text, { timeout: 10_000 });
  const say = async (t, text) => {
    await t.page.fill('#text', text);
    await t.page.press('#text', 'Enter');
  };
  const publish = async (t, text) => {
    await t.page.fill('#roomtext', text);
    await t.page.press('#roomtext', 'Enter');
  };
  await connectedTo(alice, 'inc-1');
  await connectedTo(bob, 'inc-1');
  await say(alice, 'hello bob');
  await logHas(bob, 'alice: hello bob');
  await say(bob, 'hi alice');
  await logHas(alice, 'bob: hi alice');
  await alice.page.click('#join');
  await bob.page.click('#join');
  await logHas(alice, 'joined chat.lobby');
  await logHas(bob, 'joined chat.lobby');
  await publish(alice, 'hi room');
  await logHas(bob, '[chat.lobby] alice: hi room');
  await alice.page.screenshot({ path: join(shots, 'demo-1-alice.png') });

  await node.drain();
  await logHas(bob, 'connection lost (1012 node draining)');
  await bob.page.screenshot({ path: join(shots, 'demo-2-bob-reconnecting.png') });
  await node.start();
  await connectedTo(alice, 'inc-2');
  await connectedTo(bob, 'inc-2');
  await say(bob, 'still here');
  await logHas(alice, 'bob: still here');
  await publish(alice, 'room survived');
  await logHas(bob, '[chat.lobby] alice: room survived');
  await bob.page.screenshot({ path: join(shots, 'demo-3-bob.png') });
  const bobLog = await bob.page.textContent('#log');
  assert.equal(bobLog.split('alice: hello bob').length, 2, 'once');
  assert.deepEqual([...alice.errors, ...bob.errors], []);
});
