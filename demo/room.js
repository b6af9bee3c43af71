// Rooms flow (the Arbiter client): getRoomId for the URL path; on 404 claimRoom (a warm room
// whose SFU is up); join as a client; send camera and microphone to the room's SFU on one
// producer connection (with the negotiated `chat` and `features` data channels); answer the
// SFU's offer of one consumer connection per other participant, and show each of them.
import { $, api, chatLine, defaultWsUrl, demo, fact, localMedia, params, PeerLink, randomId, selectedPair, describePair, setStatus, Signaling, step } from './common.js';

const p = params();
$('#path').value = p.path || 'myRoom';
$('#source').value = p.source || 'camera';
$('#ws').value = defaultWsUrl(p);
$('#ice').value = p.ice || '';
$('#policy').value = p.policy || 'all';

let signaling = null;
let producer = null;
let chat = null;
let features = null;
let stream = null;
let me = null;
let config = null;
let joinedAt = 0;
let producerStats = null;
const remotes = new Map(); // remote peer id → {link, tile, timer}
const departed = new Set(); // peers the room said left: never shown again

// What the end-to-end test reads (window.demo.state).
demo.state.remotes = {}; // peer id → {audioTracks, videoTracks, framesDecoded, audioPackets, firstFrameMs, maxGapMs, ...}
demo.state.offeredPeers = []; // every remotePeerId the SFU offered us, in order
demo.state.clientDisconnects = [];
demo.state.offersForDeparted = []; // offers for a peer after the room said it left
demo.state.chat = [];
// Restart the "longest time without a new video frame" of every remote (the test marks a moment).
demo.markGaps = () => {
  for (const r of Object.values(demo.state.remotes)) r.maxGapMs = 0;
};

async function resolveRoom(urlPath) {
  const query = `/getRoomId?urlPath=${encodeURIComponent(urlPath)}`;
  const first = await api('getRoomId', 'GET', query);
  demo.state.getRoomId = [first.status];
  if (first.ok) return first.body;
  if (first.status !== 404) throw new Error(`getRoomId failed (${first.status})`);
  // A room just created is warm once its SFU is up: ask again for a while (`wait` seconds).
  const deadline = Date.now() + 1000 * Number(p.wait ?? 20);
  let claim;
  for (;;) {
    claim = await api('claimRoom', 'PATCH', '/claimRoom', { body: { urlPath } });
    demo.state.claimRoom = { status: claim.status, body: claim.body };
    if (claim.ok || claim.status !== 404 || Date.now() > deadline) break;
    setStatus(`no warm room yet for ${urlPath}: asking again…`);
    await new Promise((r) => setTimeout(r, 500));
  }
  if (!claim.ok) throw new Error(`no warm room to claim (${claim.status}: ${claim.body?.message || ''})`);
  const again = await api('getRoomId (after claim)', 'GET', query);
  demo.state.getRoomId.push(again.status);
  demo.state.getRoomIdAfterClaim = again.body;
  if (!again.ok || (again.body.roomId ?? again.body.id) !== claim.body.roomId) {
    throw new Error(`getRoomId after claimRoom does not return the claimed room: ${JSON.stringify(again.body)}`);
  }
  return claim.body;
}

function participants() {
  const live = [...remotes.keys()];
  fact('participants', live.length ? live.join(', ') : 'only me');
  setStatus(`in room ${demo.state.roomId} as ${me}: ${live.length} other participant(s)`, 'ok');
}

/** Inbound video frames decoded and audio packets received on one consumer connection. */
async function inbound(pc) {
  const stats = await pc.getStats();
  let framesDecoded = 0;
  let audioPackets = 0;
  stats.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'video') framesDecoded += s.framesDecoded || 0;
    if (s.kind === 'audio') audioPackets += s.packetsReceived || 0;
  });
  return { framesDecoded, audioPackets };
}

/** The consumer connection that carries `peer` to us (created on the SFU's first frame for it). */
function remoteFor(peer) {
  let remote = remotes.get(peer);
  if (remote) return remote;
  const link = new PeerLink({ signaling, label: `from ${peer}`, type: 'consumer', fields: { remotePeerId: peer }, config });
  const tile = document.createElement('figure');
  const video = document.createElement('video');
  Object.assign(video, { autoplay: true, playsInline: true, muted: 'muted' in p });
  const caption = document.createElement('figcaption');
  caption.textContent = peer;
  tile.append(video, caption);
  $('#videos').append(tile);
  const media = new MediaStream();
  video.srcObject = media;
  const state = (demo.state.remotes[peer] = {
    audioTracks: 0,
    videoTracks: 0,
    framesDecoded: 0,
    audioPackets: 0,
    firstFrameMs: null,
    maxGapMs: 0,
    closed: false,
  });
  link.pc.ontrack = (e) => {
    media.addTrack(e.track);
    state[`${e.track.kind}Tracks`] += 1;
    step(`${peer}: ${e.track.kind} track`, true, e.track.id);
  };
  let lastFrames = 0;
  let lastChange = performance.now();
  const timer = setInterval(async () => {
    if (link.pc.connectionState === 'closed') return;
    try {
      const now = performance.now();
      const { framesDecoded, audioPackets } = await inbound(link.pc);
      if (framesDecoded > lastFrames) {
        if (state.firstFrameMs === null) {
          state.firstFrameMs = Math.round(now - joinedAt);
          step(`${peer}: first video frame`, true, `${state.firstFrameMs} ms after join`);
        }
        lastFrames = framesDecoded;
        lastChange = now;
      }
      if (state.firstFrameMs !== null) state.maxGapMs = Math.max(state.maxGapMs, Math.round(now - lastChange));
      Object.assign(state, { framesDecoded, audioPackets });
      caption.textContent = `${peer} · ${framesDecoded} frames · ${audioPackets} audio packets`;
    } catch (err) {
      fact(`${peer} stats`, `error: ${err.message}`);
    }
  }, 100);
  remote = { link, tile, timer, state };
  remotes.set(peer, remote);
  participants();
  return remote;
}

async function onHandshake(frame) {
  try {
    if (frame.type === 'consumer') {
      const peer = frame.remotePeerId;
      if (typeof peer !== 'string' || !peer) {
        step('consumer frame', false, `without remotePeerId: ${JSON.stringify(frame).slice(0, 200)}`);
        return;
      }
      if (frame.description?.type === 'offer') {
        demo.state.offeredPeers.push(peer);
        if (departed.has(peer)) {
          demo.state.offersForDeparted.push(peer);
          step(`offer for ${peer}`, false, 'the room said it left');
        }
      }
      if (departed.has(peer)) return;
      await remoteFor(peer).link.receive(frame);
    } else {
      await producer?.receive(frame);
      if (frame.description?.type === 'answer') demo.state.answerReceived = true;
    }
  } catch (err) {
    step('negotiation', false, err.message);
  }
}

/** The room says `peer` left: its tile goes; its connection is watched a little longer, then closed. */
function onClientDisconnect(peer) {
  departed.add(peer);
  demo.state.clientDisconnects.push(peer);
  step('clientDisconnect', true, `${peer} left`);
  const remote = remotes.get(peer);
  if (!remote) return;
  remotes.delete(peer);
  remote.tile.remove();
  participants();
  // What still arrives from the departed peer after half a second (in flight before that is fine).
  setTimeout(() => {
    const at = { framesDecoded: remote.state.framesDecoded, audioPackets: remote.state.audioPackets };
    setTimeout(() => {
      remote.state.afterLeaving = {
        framesDecoded: remote.state.framesDecoded - at.framesDecoded,
        audioPackets: remote.state.audioPackets - at.audioPackets,
      };
      remote.state.closed = true;
      clearInterval(remote.timer);
      remote.link.close();
    }, 2500);
  }, 500);
}

function receiveChat(channel) {
  return (m) => {
    let who = '?';
    let text = String(m.data);
    try {
      const parsed = JSON.parse(m.data);
      if (parsed && typeof parsed.text === 'string') {
        who = String(parsed.from ?? '?');
        text = parsed.text;
      }
    } catch {
      // not ours: shown as it came
    }
    if (channel === 'chat') chatLine(who, text);
    else step(`features message from ${who}`, true, text);
  };
}

async function join(e) {
  e?.preventDefault();
  $('#join').disabled = true;
  joinedAt = performance.now();
  try {
    const urlPath = $('#path').value.trim();
    setStatus(`resolving the room of ${urlPath}…`);
    fact('urlPath', urlPath);
    const room = await resolveRoom(urlPath);
    const roomId = room.roomId ?? room.id;
    const iceServers = $('#ice').value.trim() ? JSON.parse($('#ice').value) : room.iceServers || [];
    const policy = $('#policy').value;
    config = { iceServers, iceTransportPolicy: policy };
    fact('iceServers', iceServers.map((s) => [].concat(s.urls).join(' ')).join('; ') || 'none');
    fact('ICE policy', policy);
    fact('roomId', roomId);
    demo.state.roomId = roomId;

    signaling = new Signaling($('#ws').value.trim());
    signaling
      .on('handshake', onHandshake)
      .on('clientDisconnect', (frame) => onClientDisconnect(frame.clientId))
      .on('sfuDisconnect', (frame) => {
        step('sfuDisconnect', true, `the room's SFU ${frame.sfuId} left`);
        demo.state.sfuDisconnect = frame.sfuId;
        hangUp();
        setStatus('the SFU left: the room is gone', 'fail');
      })
      .on('error', () => {})
      .on('close', () => fact('socket', 'closed'));
    await signaling.connect();
    me = p.peerId || randomId('client');
    const ack = await signaling.identify({ id: me, type: 'client', roomId });
    step('identified', true, ack);
    fact('my id', me);
    demo.state.myId = me;

    stream = await localMedia($('#source').value);
    $('#local').srcObject = stream;
    producer = new PeerLink({ signaling, label: 'to the SFU', type: 'producer', config });
    for (const track of stream.getTracks()) producer.pc.addTrack(track, stream);
    // The Arbiter's channels: negotiated (no in-band announcement), fixed ids.
    chat = producer.pc.createDataChannel('chat', { negotiated: true, id: 100 });
    features = producer.pc.createDataChannel('features', { negotiated: true, id: 110 });
    chat.onopen = () => {
      step('chat channel open', true, 'chat (id 100)');
      demo.state.channelOpen = true;
    };
    chat.onmessage = receiveChat('chat');
    features.onmessage = receiveChat('features');
    chat.onclose = () => step('chat channel closed', true);
    producerStats = setInterval(async () => {
      if (producer.pc.connectionState === 'closed') return;
      const pair = await selectedPair(producer.pc).catch(() => null);
      demo.state.pair = pair;
      fact('producer pair', describePair(pair));
    }, 1000);
    // No receiver: the handshake goes to the room's serving peer, the SFU.
    await producer.offer({ roomId });
    $('#leave').disabled = false;
    participants();
  } catch (err) {
    step('room', false, err.message);
    $('#join').disabled = false;
  }
}

function hangUp() {
  clearInterval(producerStats);
  producer?.close();
  for (const remote of remotes.values()) {
    clearInterval(remote.timer);
    remote.link.close();
    remote.tile.remove();
  }
  remotes.clear();
}

function leave() {
  hangUp();
  signaling?.leave();
  stream?.getTracks().forEach((t) => t.stop());
  $('#leave').disabled = true;
  $('#join').disabled = false;
  step('left', true);
  setStatus('left the room', 'info');
}

/** Sends a chat line to everyone else in the room (the SFU relays it as it is). */
demo.say = (text) => {
  if (chat?.readyState !== 'open') return false;
  chat.send(JSON.stringify({ from: me, text }));
  chatLine('me', text);
  return true;
};

$('#settings').addEventListener('submit', join);
$('#leave').addEventListener('click', leave);
$('#chat-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('#chat-form input');
  if (!demo.say(input.value)) step('chat', false, 'the chat channel is not open');
  else input.value = '';
});
if ('autostart' in p) join();
