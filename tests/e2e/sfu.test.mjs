// Rooms end to end with the real SFU: createRoom's task is `switchboard-sfu`, started by the local
// ECS endpoint; Chromium pages (the demo's room page, fake camera and microphone) hold a call of
// three through it, once relay-only through coturn and once with direct candidates; they chat,
// leave, join late; the gateway closes the SFU's socket mid-call; an operator ends the room.
//
// Needs target/debug/switchboard-local and target/debug/switchboard-sfu (scripts/e2e.sh builds
// both). SWITCHBOARD_E2E_METRICS=FILE writes the late joiners' time to first frame there (the
// benchmark reads it).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  describePage,
  describeTask,
  reachableAddress,
  freeUdpPort,
  httpCall,
  openPage,
  pageState,
  pageUrl,
  SCREENSHOTS,
  sfuBinary,
  startChromium,
  startCoturn,
  startStack,
  step,
  stopChromium,
  taskEnvironment,
  turnServers,
  until,
} from './harness.mjs';

const secrets = {
  turnSecret: randomUUID().replaceAll('-', ''),
  hostKey: `host-${randomUUID()}`,
  operatorKey: `operator-${randomUUID()}`,
};
const STOP_TIMEOUT_SECONDS = 8;

let coturn;
let stack; // the stack of the current test
let browser;
let pages = {}; // name → page, for the current test
const metrics = { sfu_join_first_frame_ms: [] };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const short = () => randomUUID().slice(0, 6);

/** switchboard-local whose ECS tasks run switchboard-sfu, on a UDP port of their own. */
async function startSfuStack({ args = [], env = {} } = {}) {
  const sfu = sfuBinary();
  const port = await freeUdpPort();
  return startStack({
    turnPort: coturn.port,
    ...secrets,
    args: ['--sfu-command', `exec env SFU_UDP_PORT=${port} '${sfu}'`, '--task-stop-timeout-seconds', `${STOP_TIMEOUT_SECONDS}`, ...args],
    env,
  });
}

async function describeAll() {
  const parts = [];
  for (const page of Object.values(pages)) {
    parts.push(await describePage(page));
    if (page.isClosed()) continue;
    const remotes = await page.evaluate(() => window.demo?.state?.remotes).catch(() => null);
    for (const [id, r] of Object.entries(remotes ?? {})) {
      parts.push(`[${page.role}] from ${id}: ${r.videoTracks} video / ${r.audioTracks} audio tracks, ${r.framesDecoded} frames decoded, ${r.audioPackets} audio packets${r.closed ? ' (closed)' : ''}`);
    }
  }
  if (stack) {
    const lines = stack.lines.filter((l) => !/ sweep /.test(l)).slice(-25);
    parts.push(`[switchboard-local and its SFU] last lines:\n${lines.join('\n')}`);
  }
  return parts.join('\n');
}

/** A page's steps with their time since its first step, for messages about slowness. */
async function timeline(name) {
  const steps = await pages[name].evaluate(() => window.demo.steps);
  const t0 = Date.parse(steps[0]?.at);
  return steps.map((st) => `  +${Date.parse(st.at) - t0} ms ${st.ok ? '' : 'FAIL '}${st.name} ${st.detail.slice(0, 80)}`).join('\n');
}

const http = (method, route, options) => httpCall(stack.urls.http, method, route, options);
const waitState = (name, what, check) => until(async () => check((await pageState(pages[name])) ?? {}), `${name}: ${what}`);

/** A room page for participant `name` in the room of `urlPath`. */
async function join(name, urlPath, { policy = 'all', wait } = {}) {
  const settings = { path: urlPath, ws: stack.urls.ws, source: 'camera', peerId: name, policy, muted: true, autostart: true };
  if (policy === 'relay') settings.ice = JSON.stringify(turnServers(coturn.port, secrets.turnSecret, name));
  if (wait) settings.wait = wait;
  pages[name] = await openPage(browser, name, pageUrl(stack.urls.http, 'room.html', settings));
  return pages[name];
}

async function closeAll() {
  mkdirSync(SCREENSHOTS, { recursive: true });
  for (const [name, page] of Object.entries(pages)) {
    if (page.isClosed()) continue;
    await page.screenshot({ path: path.join(SCREENSHOTS, `room-${name}.png`), fullPage: true }).catch(() => {});
    await page.close().catch(() => {});
  }
  pages = {};
}

/** createRoom as an operator; the task environment is checked to be the room's. */
async function createRoom() {
  const created = await http('PUT', '/createRoom', { body: {}, key: secrets.operatorKey });
  assert.equal(created.status, 200, `createRoom → ${created.status} ${JSON.stringify(created.body)}`);
  const env = await taskEnvironment(stack.urls.ecs, created.body.taskArn);
  assert.equal(env.ROOM_ID, created.body.roomId, 'the task ROOM_ID is not the created room');
  for (const name of ['SFU_TOKEN', 'SIGNAL_SERVER_URL', 'RTC_CONFIG']) assert.ok(env[name], `task environment lacks ${name}`);
  return { roomId: created.body.roomId, taskArn: created.body.taskArn, createdAt: Date.now() };
}

/** The first participant claims the room (the page asks until its SFU is up); the others find it. */
async function callOf(names, urlPath, room, options) {
  await join(names[0], urlPath, options);
  const state = await waitState(names[0], 'room claimed', (s) => s.roomId && s);
  assert.equal(state.roomId, room.roomId, `${names[0]} is in another room than the created one: ${JSON.stringify(state.claimRoom)}`);
  assert.equal(state.getRoomId[0], 404, 'getRoomId found a room for a fresh urlPath');
  assert.equal(state.claimRoom?.status, 200, `claimRoom → ${JSON.stringify(state.claimRoom)}`);
  await Promise.all(names.slice(1).map((name) => join(name, urlPath, options)));
  for (const name of names.slice(1)) {
    const s = await waitState(name, 'room resolved', (st) => st.roomId && st);
    assert.deepEqual(s.getRoomId, [200], `${name} did not find the claimed room by getRoomId`);
    assert.equal(s.roomId, room.roomId);
  }
}

/**
 * Every page decodes video and receives audio from each of the `others` (rising), each on its own
 * consumer connection with one audio and one video track, and from nobody else.
 */
async function expectMedia(names, { from = names } = {}) {
  for (const name of names) {
    const others = from.filter((o) => o !== name);
    const live = (s) => Object.entries(s.remotes ?? {}).filter(([, r]) => !r.closed).map(([id]) => id);
    const first = await waitState(name, `video and audio from ${others.join(', ')}`, (s) =>
      others.every((o) => s.remotes?.[o]?.framesDecoded > 0 && s.remotes[o].audioPackets > 0) && s,
    );
    assert.deepEqual(live(first).sort(), others.slice().sort(), `${name} has consumer connections for ${live(first)}`);
    for (const o of others) {
      const r = first.remotes[o];
      assert.equal(r.videoTracks, 1, `${name}'s connection from ${o} has ${r.videoTracks} video tracks`);
      assert.equal(r.audioTracks, 1, `${name}'s connection from ${o} has ${r.audioTracks} audio tracks`);
    }
    await waitState(name, `video and audio from ${others.join(', ')} keep coming`, (s) =>
      others.every(
        (o) => s.remotes[o].framesDecoded >= first.remotes[o].framesDecoded + 10 && s.remotes[o].audioPackets >= first.remotes[o].audioPackets + 25,
      ),
    );
  }
}

before(async () => {
  await step('start coturn (--use-auth-secret)', 20000, async () => {
    coturn = await startCoturn({ secret: secrets.turnSecret });
  });
  await step('start Chromium', 60000, async () => {
    browser = await startChromium();
  });
});

after(async () => {
  await closeAll();
  await stopChromium(browser);
  await stack?.stop();
  await coturn?.stop();
  if (process.env.SWITCHBOARD_E2E_METRICS) writeFileSync(process.env.SWITCHBOARD_E2E_METRICS, `${JSON.stringify(metrics)}\n`);
  console.log(`  late joiners' first frame: ${JSON.stringify(metrics.sfu_join_first_frame_ms)} ms`);
});

// ------------------------------------------------------------------ a call of three, relay-only

test('SFU room, relay-only through coturn: three in a call, chat, one leaves, a late joiner', async () => {
  const urlPath = `call/${short()}`;
  const [a, b, c, d] = ['ann', 'bo', 'cy', 'dee'].map((n) => `${n}-${short()}`);
  let room;
  try {
    await step('start switchboard-local with switchboard-sfu as the rooms task', 200000, async () => {
      stack = await startSfuStack();
    });
    await step('createRoom starts switchboard-sfu with the room environment', 15000, async () => {
      room = await createRoom();
    }, describeAll);

    await step('three pages join: getRoomId 404 → claimRoom once the SFU is up → the others find the room', 40000, async () => {
      await callOf([a, b, c], urlPath, room, { policy: 'relay' });
    }, describeAll);

    await step('each decodes video and receives audio from both others, one consumer connection each', 60000, async () => {
      await expectMedia([a, b, c]);
    }, describeAll);

    await step("each page's connection to the SFU is relay ⇄ the SFU's own address", 20000, async () => {
      for (const name of [a, b, c]) {
        const pair = await waitState(name, 'selected pair', (s) => s.pair?.state === 'succeeded' && s.pair);
        assert.equal(pair.local.type, 'relay', `${name}'s local candidate is ${pair.local.type}: ${JSON.stringify(pair)}`);
        assert.equal(pair.local.address, '127.0.0.1', 'the relay candidate is not on the local coturn');
      }
    }, describeAll);

    await step('a chat line from one reaches the other two and not its sender', 20000, async () => {
      const text = `hello-${short()}`;
      await until(() => pages[a].evaluate((t) => window.demo.say(t), text), `${a}: chat channel open`);
      for (const name of [b, c]) await waitState(name, 'chat line arrived', (s) => s.chat?.some((m) => m.who === a && m.text === text));
      await sleep(1500);
      const echoed = (await pageState(pages[a])).chat.filter((m) => m.who !== 'me' && m.text === text);
      assert.deepEqual(echoed, [], `${a} got its own chat line back`);
    }, describeAll);

    await step('one leaves: the others hear clientDisconnect and stop receiving it', 20000, async () => {
      await pages[c].close();
      delete pages[c];
      for (const name of [a, b]) {
        await waitState(name, `clientDisconnect ${c}`, (s) => s.clientDisconnects?.includes(c));
        const s = await waitState(name, `connection from ${c} watched after it left`, (st) => st.remotes[c]?.afterLeaving && st);
        assert.deepEqual(s.remotes[c].afterLeaving, { framesDecoded: 0, audioPackets: 0 }, `${name} still received ${c} after it left`);
      }
    }, describeAll);

    await step('a late joiner decodes both remaining participants within 2 s and is never offered the departed one', 30000, async () => {
      await join(d, urlPath, { policy: 'relay' });
      const s = await waitState(d, 'first frames from both', (st) => [a, b].every((o) => st.remotes?.[o]?.firstFrameMs != null) && st);
      for (const o of [a, b]) metrics.sfu_join_first_frame_ms.push(s.remotes[o].firstFrameMs);
      console.log(`    ${d}: first frame from ${a} after ${s.remotes[a].firstFrameMs} ms, from ${b} after ${s.remotes[b].firstFrameMs} ms`);
      for (const o of [a, b]) {
        assert.ok(s.remotes[o].firstFrameMs <= 2000, `${d} decoded ${o} only ${s.remotes[o].firstFrameMs} ms after joining:\n${await timeline(d)}`);
      }
      await expectMedia([a, b, d]);
      const late = await pageState(pages[d]);
      assert.ok(!late.offeredPeers.includes(c), `${d} was offered ${c}, who had left: ${JSON.stringify(late.offeredPeers)}`);
      for (const name of [a, b]) {
        const st = await pageState(pages[name]);
        assert.deepEqual(st.offersForDeparted, [], `${name} was offered a participant after it left`);
      }
    }, describeAll);

  } finally {
    await closeAll();
    if (room) await http('DELETE', `/rooms/${room.roomId}`, { key: secrets.operatorKey }).catch(() => {});
  }
});

// ------------------------------------------------------------------ direct candidates

test('SFU room, direct candidates: three in a call; DELETE /rooms ends it, the SFU exits 0 on SIGTERM', async () => {
  const urlPath = `direct/${short()}`;
  const names = ['eve', 'fay', 'gus'].map((n) => `${n}-${short()}`);
  let room;
  try {
    if (!stack) {
      await step('start switchboard-local with switchboard-sfu as the rooms task', 200000, async () => {
        stack = await startSfuStack();
      });
    }
    await step('createRoom', 15000, async () => {
      room = await createRoom();
    }, describeAll);
    await step('three pages join (no ICE servers)', 40000, async () => {
      await callOf(names, urlPath, room, { policy: 'all' });
    }, describeAll);
    await step('each decodes video and receives audio from both others', 60000, async () => {
      await expectMedia(names);
    }, describeAll);
    await step("each page's connection to the SFU is direct, to the SFU task's own address", 20000, async () => {
      const env = await taskEnvironment(stack.urls.ecs, room.taskArn);
      const address = await reachableAddress(stack.urls.ecs, await describeTask(stack.urls.ecs, room.taskArn));
      assert.ok(env.ROOM_ID && address, 'no task address');
      for (const name of names) {
        const pair = await waitState(name, 'selected pair', (s) => s.pair?.state === 'succeeded' && s.pair);
        assert.notEqual(pair.local.type, 'relay', `${name} relays: ${JSON.stringify(pair)}`);
        assert.equal(pair.remote.address, address, `${name} is not connected to the SFU's address: ${JSON.stringify(pair)}`);
      }
    }, describeAll);
    await step('DELETE /rooms/{id}: the clients hear sfuDisconnect, the SFU exits 0 on SIGTERM before the stop timeout', 30000, async () => {
      const ended = await http('DELETE', `/rooms/${room.roomId}`, { key: secrets.operatorKey });
      assert.equal(ended.status, 200, `DELETE /rooms → ${ended.status} ${JSON.stringify(ended.body)}`);
      for (const name of names) await waitState(name, 'sfuDisconnect', (s) => s.sfuDisconnect === room.roomId);
      const task = await until(async () => {
        const t = await describeTask(stack.urls.ecs, room.taskArn);
        return t.lastStatus === 'STOPPED' && t;
      }, 'the SFU task stopped');
      const took = task.stoppedAt - task.stoppingAt;
      assert.equal(task.containers[0].exitCode, 0, `the SFU exited with ${task.containers[0].exitCode} (${task.stoppedReason})`);
      assert.ok(took < STOP_TIMEOUT_SECONDS, `the SFU took ${took.toFixed(1)} s to exit after SIGTERM`);
      console.log(`    the SFU exited 0, ${took.toFixed(2)} s after SIGTERM`);
      const claim = await http('PATCH', '/claimRoom', { body: { urlPath: `${urlPath}-after` } });
      assert.equal(claim.status, 404, `claimRoom after the room ended → ${claim.status} ${JSON.stringify(claim.body)}`);
    }, describeAll);
  } finally {
    await closeAll();
    await stack?.stop();
    stack = null;
  }
});

// ------------------------------------------------------------------ the gateway closes the SFU's socket

test("SFU room: the gateway closes the SFU's socket; it identifies again, media keeps flowing, a newcomer still joins", async () => {
  // Every socket lives MAX seconds. The SFU connects first; the clients join JOIN_AT seconds
  // later, so the SFU's socket is closed while theirs are open, with time to look after it
  // before theirs close too (the SDK reconnects those: sdk.test.mjs).
  const MAX = 90;
  const JOIN_AT = 35;
  const GRACE = 5;
  const urlPath = `reconnect/${short()}`;
  const [a, b, c] = ['hal', 'ida', 'jo'].map((n) => `${n}-${short()}`);
  let room;
  let reidentified = Promise.reject(new Error('not watched'));
  reidentified.catch(() => {});
  try {
    await step(`start switchboard-local with --ws-max-connection-seconds ${MAX}`, 200000, async () => {
      stack = await startSfuStack({ args: ['--ws-max-connection-seconds', `${MAX}`], env: { SWITCHBOARD_RECONNECT_GRACE_SECONDS: `${GRACE}` } });
    });
    await step('createRoom', 15000, async () => {
      room = await createRoom();
    }, describeAll);
    await step('two pages join a little later and hear each other', 90000, async () => {
      await sleep(Math.max(0, room.createdAt + JOIN_AT * 1000 - Date.now()));
      await callOf([a, b], urlPath, room, { policy: 'all' });
      await expectMedia([a, b]);
    }, describeAll);
    const closedAt = room.createdAt + MAX * 1000;
    await step("across the close of the SFU's socket, no gap in video longer than 1 s", 60000, async () => {
      assert.ok(Date.now() < closedAt - 2000, `too late to watch: the SFU's socket closes in ${closedAt - Date.now()} ms`);
      for (const name of [a, b]) await pages[name].evaluate(() => window.demo.markGaps());
      // The SFU's own log line when it identifies on a new socket (ANSI colours between the words).
      reidentified = stack.waitForLine(/identified.*again(\x1b\[[0-9;]*m)*=(\x1b\[[0-9;]*m)*true/, 60000);
      reidentified.catch(() => {});
      await sleep(closedAt + 6000 - Date.now());
      for (const [name, other] of [[a, b], [b, a]]) {
        const s = await pageState(pages[name]);
        assert.ok(s.remotes[other].maxGapMs <= 1000, `${name} saw no video from ${other} for ${s.remotes[other].maxGapMs} ms`);
        assert.equal(s.sfuDisconnect, undefined, `${name} was told the SFU left`);
        assert.deepEqual(s.clientDisconnects, [], `${name} heard clientDisconnect`);
        console.log(`    ${name}: longest gap in ${other}'s video ${s.remotes[other].maxGapMs} ms`);
      }
    }, describeAll);
    await step('a newcomer after that still joins: everyone decodes everyone', 30000, async () => {
      await join(c, urlPath);
      const s = await waitState(c, 'room resolved', (st) => st.roomId && st);
      assert.equal(s.roomId, room.roomId, 'the newcomer found another room');
      await expectMedia([a, b, c]);
    }, describeAll);
    await step('past the reconnect grace the room is still there: the SFU identified again', 15000, async () => {
      await sleep(Math.max(0, closedAt + (GRACE + 2) * 1000 - Date.now()));
      for (const name of [a, b, c]) {
        const s = await pageState(pages[name]);
        assert.equal(s.sfuDisconnect, undefined, `${name} was told the SFU left`);
      }
      await reidentified.catch((e) => assert.fail(`the SFU did not say it identified again (was its socket closed?): ${e.message.split('\n')[0]}`));
      const found = await http('GET', `/getRoomId?urlPath=${encodeURIComponent(urlPath)}`);
      assert.equal(found.status, 200, `getRoomId after the grace → ${found.status} ${JSON.stringify(found.body)}`);
    }, describeAll);
  } finally {
    await closeAll();
  }
});
