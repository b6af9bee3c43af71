// End to end, in a real browser with real WebRTC stacks: peers that know nothing of each other
// meet through Switchboard's matchmaking, negotiate over its signaling socket and exchange media
// and data through a coturn relay whose credentials Switchboard minted. (Rooms, with the real
// SFU: sfu.test.mjs.)
//
// Runs coturn, target/debug/switchboard-local (with DynamoDB Local) and Debian's Chromium, all
// on 127.0.0.1. `node --test tests/e2e/` (scripts/e2e.sh installs what is missing first).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  describePage,
  httpCall,
  pageUrl,
  openPage,
  pageState,
  SCREENSHOTS,
  startChromium,
  startCoturn,
  startStack,
  step,
  stopChromium,
  until,
} from './harness.mjs';

const secrets = {
  turnSecret: randomUUID().replaceAll('-', ''),
  hostKey: `host-${randomUUID()}`,
  operatorKey: `operator-${randomUUID()}`,
};

let coturn;
let stack;
let browser;
const pages = {}; // role → page
const shot = new Set(); // roles already photographed

/** Every open page's own account of what happened, for failure messages. */
async function describeAll() {
  const parts = [];
  for (const page of Object.values(pages)) parts.push(await describePage(page));
  if (stack) parts.push(`[switchboard-local] last lines:\n${stack.tail(15)}`);
  return parts.join('\n');
}

async function screenshot(role) {
  const page = pages[role];
  if (!page || page.isClosed() || shot.has(role)) return;
  shot.add(role);
  await page.screenshot({ path: path.join(SCREENSHOTS, `${role}.png`), fullPage: true }).catch(() => {});
}

const http = (method, route, options) => httpCall(stack.urls.http, method, route, options);
const demoUrl = (file, hash) => pageUrl(stack.urls.http, file, hash);

/** Polls a page's `window.demo.state` until `check(state)` is truthy; returns that value. */
const waitState = (role, what, check) => until(async () => check((await pageState(pages[role])) ?? {}), what);

before(async () => {
  rmSync(SCREENSHOTS, { recursive: true, force: true });
  mkdirSync(SCREENSHOTS, { recursive: true });
  await step('start coturn (--use-auth-secret)', 20000, async () => {
    coturn = await startCoturn({ secret: secrets.turnSecret });
  });
  await step('start switchboard-local', 200000, async () => {
    stack = await startStack({ turnPort: coturn.port, ...secrets });
  });
  await step('start Chromium', 60000, async () => {
    browser = await startChromium();
  });
});

after(async () => {
  for (const role of Object.keys(pages)) await screenshot(role);
  await stopChromium(browser);
  await stack?.stop();
  await coturn?.stop();
  if (coturn) rmSync(coturn.dir, { recursive: true, force: true });
});

// ------------------------------------------------------------------ matchmaking

const match = {
  hostId: randomUUID(),
  roomId: `room-${randomUUID().slice(0, 8)}`,
  viewerId: `viewer-${randomUUID().slice(0, 8)}`,
  hello: `ping-${randomUUID().slice(0, 6)}`,
};

// The browser host reports busy as soon as a viewer arrives, which would hide a broken
// reservation; so first the reservation alone, with a host that only heartbeats (another region).
test('matchmaking: find-match reserves the host it returns', async () => {
  await step('find-match reserves the host it returns (heartbeats saying idle do not undo it)', 15000, async () => {
    const probe = { hostId: randomUUID(), roomId: `probe-${randomUUID().slice(0, 8)}`, region: 'eu-central', status: 'idle' };
    const beat = await http('POST', '/api/host/heartbeat', { body: probe, key: secrets.hostKey });
    assert.equal(beat.status, 200, `heartbeat → ${beat.status} ${JSON.stringify(beat.body)}`);
    const first = await http('POST', '/api/find-match', { body: { region: 'eu-central' } });
    assert.equal(first.status, 200, `first find-match → ${first.status} ${JSON.stringify(first.body)}`);
    assert.equal(first.body.roomId, probe.roomId);
    assert.equal(JSON.stringify(first.body).includes(probe.hostId), false, 'find-match revealed the hostId');
    const again = await http('POST', '/api/host/heartbeat', { body: probe, key: secrets.hostKey });
    assert.equal(again.status, 200);
    const second = await http('POST', '/api/find-match', { body: { region: 'eu-central' } });
    assert.equal(second.status, 404, `second find-match for a reserved host → ${second.status} ${JSON.stringify(second.body)}`);
    // Out of the way for the rest of the run.
    const busy = await http('POST', '/api/host/status', { body: { hostId: probe.hostId, status: 'busy' }, key: secrets.hostKey });
    assert.equal(busy.status, 200, `status busy → ${busy.status} ${JSON.stringify(busy.body)}`);
  }, describeAll);
});

test('matchmaking: find-match, signaling, relay-only media and data through coturn', async () => {
  await step('host page registers (heartbeat) and identifies as host', 20000, async () => {
    pages.host = await openPage(
      browser,
      'host',
      demoUrl('host.html', {
        hostKey: secrets.hostKey,
        hostId: match.hostId,
        roomId: match.roomId,
        region: 'local',
        source: 'canvas',
        policy: 'relay',
        ws: stack.urls.ws,
        autostart: true,
      }),
    );
    await waitState('host', 'host ready', (s) => s.ready);
  }, describeAll);

  await step('viewer find-match (region local) returns the host with TURN credentials', 15000, async () => {
    pages.viewer = await openPage(
      browser,
      'viewer',
      demoUrl('viewer.html', { region: 'local', policy: 'relay', peerId: match.viewerId, hello: match.hello, autostart: true }),
    );
    const found = await waitState('viewer', 'find-match answered', (s) => s.findMatch);
    assert.equal(found.status, 200, `find-match → ${found.status} ${JSON.stringify(found.body)}`);
    assert.equal(found.body.roomId, match.roomId, 'find-match returned another room');
    assert.equal(found.body.signalingUrl, stack.urls.ws, 'signalingUrl is not the local WebSocket API');
    const turn = found.body.iceServers.filter((s) => [].concat(s.urls).some((u) => u.startsWith('turn:')));
    assert.ok(turn.length > 0, `no TURN entry in iceServers: ${JSON.stringify(found.body.iceServers)}`);
    for (const server of turn) {
      const expiry = Number(server.username.split(':')[0]);
      assert.ok(expiry > Date.now() / 1000, `TURN username ${server.username} does not start with a future expiry`);
      assert.ok(server.credential, 'TURN entry without credential');
    }
  }, describeAll);

  await step('viewer offer reaches the host and its answer comes back', 15000, async () => {
    await waitState('host', 'host sees the viewer', (s) => s.viewers?.includes(match.viewerId));
    await until(
      async () => (await pages.viewer.evaluate(() => window.demo.steps.some((s) => s.name === 'host: answer received'))),
      'viewer received the answer',
    );
  }, describeAll);

  await step('host reports busy through status', 10000, async () => {
    await until(
      async () => pages.host.evaluate(() => window.demo.steps.some((s) => s.name === 'status busy' && s.ok)),
      'status busy accepted',
    );
  }, describeAll);

  await step("viewer's selected candidate pair is a relay pair (getStats)", 30000, async () => {
    const pair = await waitState('viewer', 'selected pair', (s) => s.pair?.state === 'succeeded' && s.pair);
    assert.equal(pair.local.type, 'relay', `viewer's local candidate is ${pair.local.type}, not relay: ${JSON.stringify(pair)}`);
    assert.equal(pair.local.address, '127.0.0.1', 'the relay candidate is not on the local coturn');
    console.log(`    pair: ${JSON.stringify(pair.local)} ⇄ ${JSON.stringify(pair.remote)}`);
  }, describeAll);

  await step("host's video frames are decoded by the viewer (framesDecoded grows)", 30000, async () => {
    const first = await waitState('viewer', 'first frames decoded', (s) => s.framesDecoded > 0 && s.framesDecoded);
    await waitState('viewer', 'more frames decoded', (s) => s.framesDecoded >= first + 10);
  }, describeAll);

  await step('a data-channel message makes the round trip viewer → host → viewer', 15000, async () => {
    await waitState('host', 'host got the message', (s) => s.chat?.some((m) => m.who === match.viewerId && m.text === match.hello));
    await waitState('viewer', 'viewer got the reply', (s) => s.chat?.some((m) => m.who === 'host' && m.text === `host got: ${match.hello}`));
  }, describeAll);

  await step("a second viewer's find-match gets 404 while the host is busy", 15000, async () => {
    pages.viewer2 = await openPage(browser, 'viewer2', demoUrl('viewer.html', { region: 'local', policy: 'relay', autostart: true }));
    const found = await waitState('viewer2', 'find-match answered', (s) => s.findMatch);
    assert.equal(found.status, 404, `second find-match → ${found.status} ${JSON.stringify(found.body)}`);
    assert.equal(found.body.success, false);
  }, describeAll);
});

// ------------------------------------------------------------------ leaving

test('leaving: clientDisconnect to the host, which is matchable again', async () => {
  await step('closing the viewer tab delivers clientDisconnect to the host', 15000, async () => {
    assert.ok(pages.viewer && !pages.viewer.isClosed(), 'no viewer page (matchmaking flow did not get that far)');
    await screenshot('viewer');
    await pages.viewer.close();
    await waitState('host', 'clientDisconnect at the host', (s) => s.clientDisconnects?.includes(match.viewerId));
  }, describeAll);

  await step('the host reports idle and is matchable again', 15000, async () => {
    await until(
      async () => pages.host.evaluate(() => window.demo.steps.some((s) => s.name === 'status idle' && s.ok)),
      'status idle accepted',
    );
    const again = await http('POST', '/api/find-match', { body: { region: 'local' } });
    assert.equal(again.status, 200, `find-match after the viewer left → ${again.status} ${JSON.stringify(again.body)}`);
    assert.equal(again.body.roomId, match.roomId);
  }, describeAll);
});
