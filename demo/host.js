// Host: heartbeat every 20 s, identify as the room's host, answer each viewer's offer with
// video and a data channel, report busy while anyone watches and idle when the last leaves.
import { $, api, chatLine, defaultWsUrl, demo, fact, localVideo, params, PeerLink, randomId, setStatus, Signaling, step, watchStats } from './common.js';

const HEARTBEAT_MS = 20000;
const p = params();

$('#hostKey').value = p.hostKey || '';
$('#hostId').value = p.hostId || crypto.randomUUID();
$('#roomId').value = p.roomId || randomId('room');
$('#region').value = p.region || 'local';
$('#source').value = p.source || 'camera';
$('#policy').value = p.policy || 'all';
$('#ws').value = defaultWsUrl(p);

let signaling = null;
let stream = null;
let heartbeat = null;
let status = 'idle';
let hostIceServers = [];
const viewers = new Map(); // viewer id → {link, channel, stopStats}
const early = new Map(); // viewer id → handshake frames that came before its offer
demo.state.viewers = [];

function settings() {
  return {
    hostKey: $('#hostKey').value.trim(),
    hostId: $('#hostId').value.trim(),
    roomId: $('#roomId').value.trim(),
    region: $('#region').value,
    source: $('#source').value,
    policy: $('#policy').value,
    ws: $('#ws').value.trim(),
  };
}

async function sendHeartbeat(s) {
  const r = await api('heartbeat', 'POST', '/api/host/heartbeat', {
    key: s.hostKey,
    body: { hostId: s.hostId, roomId: s.roomId, region: s.region, status },
  });
  fact('last heartbeat', `${new Date().toISOString().slice(11, 19)} → ${r.status}`);
  if (r.ok && Array.isArray(r.body?.iceServers)) {
    hostIceServers = r.body.iceServers;
    fact('iceServers', hostIceServers.map((x) => [].concat(x.urls).join(' ')).join('; ') || 'none');
  }
  return r;
}

async function reportStatus(s, next) {
  if (status === next) return;
  status = next;
  fact('host status', next);
  await api(`status ${next}`, 'POST', '/api/host/status', { key: s.hostKey, body: { hostId: s.hostId, status: next } });
}

function viewerList() {
  demo.state.viewers = [...viewers.keys()];
  fact('viewers', demo.state.viewers.length ? demo.state.viewers.join(', ') : 'none');
}

async function removeViewer(s, id, why) {
  const viewer = viewers.get(id);
  if (!viewer) return;
  viewers.delete(id);
  viewer.stopStats();
  viewer.link.close();
  step(`viewer ${id} left`, true, why);
  viewerList();
  if (viewers.size === 0) {
    await reportStatus(s, 'idle');
    setStatus(`hosting room ${s.roomId}: idle, waiting for viewers`, 'ok');
  }
}

async function onHandshake(s, frame) {
  const id = frame.sender;
  let viewer = viewers.get(id);
  if (!viewer) {
    if (!frame.description) {
      // Frames of one socket reach us in no particular order (API Gateway invokes one Lambda
      // per frame): a candidate may overtake its offer. Keep it for when the offer comes.
      if (!early.has(id)) early.set(id, []);
      early.get(id).push(frame);
      return;
    }
    // The host's own ICE servers, with TURN credentials from its latest heartbeat.
    const iceServers = hostIceServers;
    const link = new PeerLink({
      signaling,
      label: `viewer ${id}`,
      type: 'producer',
      receiver: id,
      config: { iceServers, iceTransportPolicy: s.policy },
    });
    viewer = { link, channel: null, stopStats: () => {} };
    viewers.set(id, viewer);
    viewerList();
    step(`viewer ${id} arrived`, true, `${iceServers.length} ICE server(s) from the heartbeat`);
    await reportStatus(s, 'busy');
    setStatus(`hosting room ${s.roomId}: busy, ${viewers.size} viewer(s)`, 'ok');
    for (const track of stream.getTracks()) link.pc.addTrack(track, stream);
    link.pc.ondatachannel = (e) => {
      viewer.channel = e.channel;
      e.channel.onopen = () => step(`viewer ${id}: data channel open`, true, e.channel.label);
      e.channel.onmessage = (m) => {
        chatLine(id, m.data);
        // Answer so the viewer sees its message make the round trip.
        e.channel.send(`host got: ${m.data}`);
        chatLine('me', `host got: ${m.data}`);
      };
      e.channel.onclose = () => step(`viewer ${id}: data channel closed`, true);
    };
    link.pc.addEventListener('connectionstatechange', () => {
      if (['failed', 'closed'].includes(link.pc.connectionState)) removeViewer(s, id, `connection ${link.pc.connectionState}`);
    });
    viewer.stopStats = watchStats(link.pc, `viewer ${id}`);
  }
  try {
    await viewer.link.receive(frame);
    for (const candidate of early.get(id)?.splice(0) ?? []) await viewer.link.receive(candidate);
  } catch (e) {
    step(`viewer ${id}: negotiation`, false, e.message);
  }
}

async function start(e) {
  e?.preventDefault();
  const s = settings();
  $('#start').disabled = true;
  $('#stop').disabled = false;
  try {
    if (!s.hostId || !s.roomId) throw new Error('hostId and roomId are required');
    stream = await localVideo(s.source);
    $('#local').srcObject = stream;
    fact('roomId', s.roomId);
    fact('region', s.region);
    fact('host status', status);
    const first = await sendHeartbeat(s);
    if (!first.ok) throw new Error(`heartbeat refused (${first.status}): ${first.body?.message || ''}`);
    heartbeat = setInterval(() => sendHeartbeat(s), HEARTBEAT_MS);

    const wsUrl = p.ws || first.body?.signalingUrl || s.ws;
    fact('signalingUrl', wsUrl);
    signaling = new Signaling(wsUrl);
    signaling
      .on('handshake', (frame) => onHandshake(s, frame))
      .on('clientDisconnect', (frame) => {
        step('clientDisconnect', true, frame.clientId);
        demo.state.clientDisconnects = [...(demo.state.clientDisconnects || []), frame.clientId];
        removeViewer(s, frame.clientId, 'clientDisconnect');
      })
      .on('pong', () => fact('last pong', new Date().toISOString().slice(11, 19)))
      .on('error', () => {})
      .on('close', () => {
        if (!signaling.leaving) step('signaling closed', false, 'the socket closed; viewers can no longer reach this host');
      });
    await signaling.connect();
    const hostPeerId = p.peerId || randomId('host');
    const ack = await signaling.identify({ id: hostPeerId, type: 'host', roomId: s.roomId, hostId: s.hostId });
    step('identified', true, ack);
    fact('peer id', ack.id);
    demo.state.ready = true;
    setStatus(`hosting room ${s.roomId}: waiting for viewers (heartbeat every ${HEARTBEAT_MS / 1000} s)`, 'ok');
  } catch (err) {
    step('start', false, err.message);
    $('#start').disabled = false;
  }
}

async function stop() {
  const s = settings();
  clearInterval(heartbeat);
  for (const id of [...viewers.keys()]) await removeViewer(s, id, 'host stopped');
  signaling?.leave();
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
  for (const { channel } of viewers.values()) if (channel?.readyState === 'open') channel.send(input.value);
  chatLine('me', input.value);
  input.value = '';
});
if ('autostart' in p) start();
