// Host, on the SDK's HostSession: heartbeat every 20 s, identify as the room's host, answer each
// viewer's offer with video and a data channel, report busy while anyone watches and idle when
// the last leaves.
import { HostSession, Switchboard } from '../sdk/index.js';
import { $, apiBase, chatLine, defaultWsUrl, demo, fact, localVideo, loggedFetch, params, randomId, setStatus, showSignaling, step, watchStats } from './common.js';

const HEARTBEAT_MS = 20000;
const p = params();

$('#hostKey').value = p.hostKey || '';
$('#hostId').value = p.hostId || crypto.randomUUID();
$('#roomId').value = p.roomId || randomId('room');
$('#region').value = p.region || 'local';
$('#source').value = p.source || 'camera';
$('#policy').value = p.policy || 'all';
$('#ws').value = defaultWsUrl(p);

let host = null;
let stream = null;
const stopStats = new Map(); // viewer id → stop its stats
demo.state.viewers = [];

function viewerList() {
  demo.state.viewers = [...host.viewers.keys()];
  fact('viewers', demo.state.viewers.length ? demo.state.viewers.join(', ') : 'none');
}

async function start(e) {
  e?.preventDefault();
  const s = {
    hostKey: $('#hostKey').value.trim(),
    hostId: $('#hostId').value.trim(),
    roomId: $('#roomId').value.trim(),
    region: $('#region').value,
    policy: $('#policy').value,
  };
  $('#start').disabled = true;
  $('#stop').disabled = false;
  try {
    if (!s.hostId || !s.roomId) throw new Error('hostId and roomId are required');
    stream = await localVideo($('#source').value);
    $('#local').srcObject = stream;
    fact('roomId', s.roomId);
    fact('region', s.region);
    fact('host status', 'idle');
    const switchboard = new Switchboard({
      apiUrl: apiBase(p),
      hostKey: s.hostKey,
      // `status busy` / `status idle` / `heartbeat`, as the steps the page shows.
      fetch: loggedFetch((method, path) => (path.endsWith('/status') ? `status ${host?.status}` : path.split('/').pop())),
    });
    host = new HostSession({
      switchboard,
      hostId: s.hostId,
      roomId: s.roomId,
      region: s.region,
      peerId: p.peerId || randomId('host'),
      heartbeatMs: HEARTBEAT_MS,
      iceTransportPolicy: s.policy,
      ...(p.ws ? { signalingUrl: p.ws } : {}),
    });
    demo.host = host;
    host.on('heartbeat', (beat) => {
      fact('last heartbeat', `${new Date().toISOString().slice(11, 19)} → 200`);
      fact('iceServers', beat.iceServers.map((x) => [].concat(x.urls).join(' ')).join('; ') || 'none');
      fact('signalingUrl', beat.signalingUrl);
    });
    host.on('viewer', ({ id, pc }) => {
      step(`viewer ${id} arrived`, true, `${host.iceServers.length} ICE server(s) from the heartbeat`);
      viewerList();
      stopStats.set(id, watchStats(pc, `viewer ${id}`));
      setStatus(`hosting room ${s.roomId}: busy, ${host.viewers.size} viewer(s)`, 'ok');
    });
    host.on('channel', ({ id, channel }) => {
      channel.addEventListener('open', () => step(`viewer ${id}: data channel open`, true, channel.label));
      channel.addEventListener('close', () => step(`viewer ${id}: data channel closed`, true));
    });
    host.on('message', ({ id, data, channel }) => {
      chatLine(id, data);
      // Answer so the viewer sees its message make the round trip.
      channel.send(`host got: ${data}`);
      chatLine('me', `host got: ${data}`);
    });
    host.on('viewerLeft', ({ id, why }) => {
      stopStats.get(id)?.();
      stopStats.delete(id);
      step(`viewer ${id} left`, true, why);
      viewerList();
      if (host.viewers.size === 0) setStatus(`hosting room ${s.roomId}: idle, waiting for viewers`, 'ok');
    });
    host.on('status', ({ status }) => fact('host status', status));
    host.on('error', ({ error, during }) => step(during, false, error.message));

    const ack = await host.start(stream);
    showSignaling(host.signaling);
    host.signaling.on('clientDisconnect', ({ clientId }) => {
      step('clientDisconnect', true, clientId);
      demo.state.clientDisconnects = [...(demo.state.clientDisconnects || []), clientId];
    });
    host.signaling.on('close', ({ willReconnect }) => {
      if (!willReconnect && !demo.state.stopped) step('signaling closed', false, 'the socket closed; viewers can no longer reach this host');
    });
    step('identified', true, ack);
    fact('peer id', ack.id);
    demo.state.ready = true;
    setStatus(`hosting room ${s.roomId}: waiting for viewers (heartbeat every ${HEARTBEAT_MS / 1000} s)`, 'ok');
  } catch (err) {
    step('start', false, `${err.status ? `${err.status} ` : ''}${err.message}`);
    $('#start').disabled = false;
  }
}

function stop() {
  demo.state.stopped = true;
  host?.stop();
  stream?.getTracks().forEach((t) => t.stop());
  demo.state.ready = false;
  $('#start').disabled = false;
  $('#stop').disabled = true;
  step('stopped', true, 'heartbeats stop; the registration expires after its TTL');
  setStatus('stopped', 'info');
}

$('#settings').addEventListener('submit', start);
$('#stop').addEventListener('click', stop);
$('#chat-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('#chat-form input');
  for (const { channel } of host?.viewers.values() ?? []) if (channel?.readyState === 'open') channel.send(input.value);
  chatLine('me', input.value);
  input.value = '';
});
if ('autostart' in p) start();
