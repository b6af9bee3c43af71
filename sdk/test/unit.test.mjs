// The SDK's pure parts, on the built package (sdk/dist): error mapping, the early-candidate
// queue's order, reconnect backoff, the frame guards, and the drift check of the generated types.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  backoffDelay,
  EarlyQueue,
  errorFromResponse,
  frameEvent,
  isForwardedHandshake,
  isOutboundFrame,
  OUTBOUND_FRAME_TYPES,
  parseRetryAfter,
  SerialQueue,
  SwitchboardError,
} from '../dist/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');

test('errors: status, the body message, Retry-After as seconds', () => {
  const e = errorFromResponse('POST /api/find-match', 404, { success: false, message: 'No available hosts in region local' }, null);
  assert.ok(e instanceof SwitchboardError && e instanceof Error);
  assert.equal(e.status, 404);
  assert.equal(e.message, 'No available hosts in region local');
  assert.equal(e.retryAfter, undefined);
  assert.equal(e.retryable, false);
  const busy = errorFromResponse('GET /getRoomId', 503, { message: 'Service temporarily unavailable; retry shortly' }, '1');
  assert.equal(busy.retryAfter, 1);
  assert.equal(busy.retryable, true);
  // No JSON message: the route and status say what failed.
  assert.equal(errorFromResponse('PUT /createRoom', 502, undefined, null).message, 'PUT /createRoom answered 502');
  assert.equal(errorFromResponse('PUT /createRoom', 500, { message: '' }, null).message, 'PUT /createRoom answered 500');
  assert.equal(parseRetryAfter('  60 '), 60);
  assert.equal(parseRetryAfter('soon'), undefined);
  assert.equal(parseRetryAfter(new Date(Date.parse('2030-01-01T00:00:30Z')).toUTCString(), Date.parse('2030-01-01T00:00:00Z')), 30);
});

test('early candidates: handed over in arrival order, bounded, oldest dropped first', () => {
  const q = new EarlyQueue(3);
  for (const c of ['c1', 'c2', 'c3', 'c4']) q.push(c);
  assert.equal(q.dropped, 1);
  assert.deepEqual(q.drain(), ['c2', 'c3', 'c4']);
  assert.equal(q.size, 0);
  assert.deepEqual(q.drain(), []);
});

test('frames of one peer are handled one at a time, in order, even when an earlier one is slow or fails', async () => {
  const serial = new SerialQueue();
  const seen = [];
  const slow = (name, ms) => () => new Promise((r) => setTimeout(() => r(seen.push(name)), ms));
  const offer = serial.run(slow('offer', 30));
  const failing = serial.run(() => {
    seen.push('bad');
    throw new Error('malformed');
  });
  const candidate = serial.run(slow('candidate', 1));
  await offer;
  await assert.rejects(failing, /malformed/);
  await candidate;
  assert.deepEqual(seen, ['offer', 'bad', 'candidate']);
});

test('backoff: doubles from the base, capped, jitter only shortens', () => {
  const none = { baseMs: 100, maxMs: 1000, jitter: 0 };
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, none)), [100, 200, 400, 800, 1000, 1000]);
  assert.equal(backoffDelay(1000, none), 1000);
  assert.equal(backoffDelay(3, { baseMs: 100, maxMs: 1000, jitter: 0.5 }, () => 1), 200);
  assert.equal(backoffDelay(3, { baseMs: 100, maxMs: 1000, jitter: 0.5 }, () => 0), 400);
  for (let i = 1; i < 50; i += 1) {
    const d = backoffDelay(i);
    assert.ok(d > 0 && d <= 10_000, `attempt ${i}: ${d} ms`);
  }
});

test('guards: every outbound frame of the asyncapi examples, and what is not one', () => {
  const frames = {
    identified: { type: 'identified', id: 'viewer-1', roomId: 'room-abc' },
    error: { type: 'error', action: 'identify', status: 400, message: 'Missing valid type property' },
    pong: { type: 'pong' },
    clientDisconnect: { type: 'clientDisconnect', clientId: 'viewer-1' },
    sfuDisconnect: { type: 'sfuDisconnect', sfuId: 'room-abc' },
    handshake: { type: 'producer', sender: 'viewer-1', description: { type: 'offer', sdp: 'v=0' } },
    session: { type: 'session', id: 's1', env: {}, args: [], ttl: null },
  };
  assert.deepEqual(Object.keys(frames).sort(), Object.keys(OUTBOUND_FRAME_TYPES).sort(), 'a frame type without a case here');
  for (const [event, frame] of Object.entries(frames)) {
    assert.equal(frameEvent(frame), event);
    assert.ok(isOutboundFrame(frame));
  }
  assert.ok(isForwardedHandshake({ type: 'consumer', sender: 'room-abc', remotePeerId: 'p', candidate: {} }));
  // A handshake without `sender` was not relayed by Switchboard; fields of the wrong type are refused.
  for (const bad of [{ type: 'producer' }, { type: 'clientDisconnect' }, { type: 'error', status: '400' }, { type: 'nope' }, null, [], 'pong']) {
    assert.equal(frameEvent(bad), null, JSON.stringify(bad));
  }
});

test('generated types: the check passes on the documents and fails when they drift', () => {
  const script = path.join(root, 'sdk/scripts/generate-types.mjs');
  execFileSync(process.execPath, [script, '--check'], { stdio: 'pipe' });
  const docs = mkdtempSync(path.join(tmpdir(), 'switchboard-docs-'));
  try {
    cpSync(path.join(root, 'docs/asyncapi.yaml'), path.join(docs, 'asyncapi.yaml'));
    cpSync(path.join(root, 'docs/openapi.yaml'), path.join(docs, 'openapi.yaml'));
    const asyncapi = readFileSync(path.join(docs, 'asyncapi.yaml'), 'utf8');
    // The contract grows a field on clientDisconnect: the committed types no longer match.
    const changed = asyncapi.replace('required: [type, clientId]\n      properties:\n', 'required: [type, clientId]\n      properties:\n        reason:\n          type: string\n');
    assert.notEqual(changed, asyncapi, 'the test could not change the document');
    writeFileSync(path.join(docs, 'asyncapi.yaml'), changed);
    const drift = spawnSync(process.execPath, [script, '--check', '--docs', docs], { encoding: 'utf8' });
    assert.equal(drift.status, 1, `the check passed on a changed document: ${drift.stdout}${drift.stderr}`);
    assert.match(drift.stderr, /npm run generate/);
  } finally {
    rmSync(docs, { recursive: true, force: true });
  }
});

test('a consumer offer from another remote connection (new ICE ufrag) is told apart from a renegotiation', async () => {
  const { iceUfrag, isNewConnection } = await import('../dist/index.js');
  const sdp = (ufrag) => `v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:${ufrag}\r\na=ice-pwd:x\r\n`;
  assert.equal(iceUfrag(sdp('Ab3d')), 'Ab3d');
  assert.equal(iceUfrag('v=0\r\n'), null);
  assert.equal(isNewConnection(sdp('one'), sdp('two')), true);
  assert.equal(isNewConnection(sdp('one'), sdp('one')), false);
  assert.equal(isNewConnection(undefined, sdp('one')), false, 'no connection yet: nothing to replace');
});
