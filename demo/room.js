// Rooms flow (the Arbiter client), on the SDK's RoomCall: getRoomId for the URL path, on 404
// claimRoom (a warm room whose SFU is up); join as a client; send camera and microphone to the
// room's SFU once (with the negotiated `chat` and `features` data channels); every other
// participant arrives on a consumer connection of its own, and is shown.
import { RoomCall, Switchboard } from '../sdk/index.js';
import { $, apiBase, chatLine, defaultWsUrl, demo, describePair, fact, localMedia, loggedFetch, params, randomId, selectedPair, setStatus, showSignaling, step } from './common.js';

const p = params();
$('#path').value = p.path || 'myRoom';
$('#source').value = p.source || 'camera';
$('#ws').value = defaultWsUrl(p);
$('#ice').value = p.ice || '';
$('#policy').value = p.policy || 'all';

let call = null;
let stream = null;
let joinedAt = 0;
let producerStats = null;
const tiles = new Map(); // remote peer id → {tile, timer, state}
const departed = new Set(); // peers the room said left

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

function participants() {
  const live = call ? call.participants : [];
  fact('participants', live.length ? live.join(', ') : 'only me');
  setStatus(`in room ${demo.state.roomId} as ${demo.state.myId}: ${live.length} other participant(s)`, 'ok');
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

/** A tile for `peer`'s consumer connection `pc`, with its counters in demo.state.remotes. */
function showParticipant(peer, pc) {
  const tile = document.createElement('figure');
  const video = document.createElement('video');
  Object.assign(video, { autoplay: true, playsInline: true, muted: 'muted' in p });
  const caption = document.createElement('figcaption');
  caption.textContent = peer;
  tile.append(video, caption);
  $('#videos').append(tile);
  video.srcObject = new MediaStream();
  // A participant seen again (after a reconnect) keeps its counters' history but restarts them.
  const state = (demo.state.remotes[peer] = {
    audioTracks: 0,
    videoTracks: 0,
    framesDecoded: 0,
    audioPackets: 0,
    firstFrameMs: null,
    maxGapMs: 0,
    closed: false,
  });
  let lastFrames = 0;
  let lastChange = performance.now();
  const timer = setInterval(async () => {
    if (pc.connectionState === 'closed') return;
    try {
      const now = performance.now();
      const { framesDecoded, audioPackets } = await inbound(pc);
      if (framesDecoded > lastFrames) {
        if (state.firstFrameMs === null) {
          state.firstFrameMs = Math.round(now - joinedAt);
          state.firstFrameAt = Math.round(now);
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
  tiles.set(peer, { tile, timer, state, video });
}

/** The room says `peer` left: its tile goes; what still arrives on its connection is counted, then it closes. */
function onParticipantLeft(peer) {
  const shown = tiles.get(peer);
  if (!shown) return;
  tiles.delete(peer);
  shown.tile.remove();
  participants();
  // What still arrives from the departed peer after half a second (in flight before that is fine).
  setTimeout(() => {
    const at = { framesDecoded: shown.state.framesDecoded, audioPackets: shown.state.audioPackets };
    setTimeout(() => {
      shown.state.afterLeaving = {
        framesDecoded: shown.state.framesDecoded - at.framesDecoded,
        audioPackets: shown.state.audioPackets - at.audioPackets,
      };
      shown.state.closed = true;
      clearInterval(shown.timer);
    }, 2500);
  }, 500);
}

async function join(e) {
  e?.preventDefault();
  $('#join').disabled = true;
  joinedAt = performance.now();
  try {
    const urlPath = $('#path').value.trim();
    setStatus(`resolving the room of ${urlPath}…`);
    fact('urlPath', urlPath);
    const switchboard = new Switchboard({ apiUrl: apiBase(p), fetch: loggedFetch() });
    const ice = $('#ice').value.trim();
    call = new RoomCall({
      switchboard,
      urlPath,
      peerId: p.peerId || randomId('client'),
      // A room just created is warm once its SFU is up: claimRoom is asked again for a while.
      waitMs: 1000 * Number(p.wait ?? 20),
      signalingUrl: $('#ws').value.trim() || undefined,
      iceServers: ice ? JSON.parse(ice) : undefined,
      iceTransportPolicy: $('#policy').value,
      // Keep a departed participant's connection 3 s, to show nothing more arrives on it.
      closeLeftAfterMs: 3000,
    });
    demo.call = call;
    call.on('participantJoined', ({ peerId }) => {
      demo.state.offeredPeers.push(peerId);
      if (departed.has(peerId)) {
        // Either it came back (its socket was closed and it identified again) or the SFU offers
        // someone who left: the test of a call where nobody reconnects counts these.
        demo.state.offersForDeparted.push(peerId);
        step(`offer for ${peerId}`, true, 'again, after the room said it left');
      }
      departed.delete(peerId);
      showParticipant(peerId, call.consumers.get(peerId).pc);
      participants();
    });
    call.on('track', ({ peerId, track }) => {
      const shown = tiles.get(peerId);
      if (!shown) return;
      shown.video.srcObject.addTrack(track);
      shown.state[`${track.kind}Tracks`] += 1;
      step(`${peerId}: ${track.kind} track`, true, track.id);
    });
    call.on('participantLeft', ({ peerId }) => onParticipantLeft(peerId));
    call.on('chat', ({ from, text, data }) => chatLine(from ?? '?', text ?? String(data)));
    call.on('features', ({ from, text, data }) => step(`features message from ${from ?? '?'}`, true, text ?? String(data)));
    call.on('channelOpen', () => {
      step('chat channel open', true, 'chat (id 100)');
      demo.state.channelOpen = true;
    });
    call.on('ended', ({ sfuId }) => {
      step('sfuDisconnect', true, `the room's SFU ${sfuId} left`);
      demo.state.sfuDisconnect = sfuId;
      setStatus('the SFU left: the room is gone', 'fail');
    });
    call.on('reconnected', () => {
      demo.state.reconnectedAt = Math.round(performance.now());
      step('rejoined', true, 'the SFU negotiates with us again');
    });
    call.on('error', ({ error, during }) => step(during, false, error.message));

    const joined = await call.join();
    // The signaling socket's frames, and its reconnects, in the step log.
    showSignaling(call.signaling, { label: 'the SFU' });
    call.signaling.on('clientDisconnect', ({ clientId }) => {
      departed.add(clientId);
      demo.state.clientDisconnects.push(clientId);
      step('clientDisconnect', true, `${clientId} left`);
    });
    demo.state.getRoomId = [joined.claimed ? 404 : 200];
    if (joined.claimed) {
      demo.state.claimRoom = { status: 200, body: call.room };
      // The claimed room is the path's room from now on.
      const again = await switchboard.getRoomId(urlPath);
      demo.state.getRoomId.push(200);
      if (again.roomId !== joined.roomId) throw new Error(`getRoomId after claimRoom does not return the claimed room: ${JSON.stringify(again)}`);
    }
    const { iceServers, iceTransportPolicy } = { iceServers: ice ? JSON.parse(ice) : call.room.iceServers, iceTransportPolicy: $('#policy').value };
    fact('iceServers', iceServers.map((s) => [].concat(s.urls).join(' ')).join('; ') || 'none');
    fact('ICE policy', iceTransportPolicy);
    fact('roomId', joined.roomId);
    fact('my id', joined.peerId);
    step('identified', true, joined);
    demo.state.roomId = joined.roomId;
    demo.state.myId = joined.peerId;

    stream = await localMedia($('#source').value);
    $('#local').srcObject = stream;
    await call.publish(stream);
    step('to the SFU: offer sent', true, 'camera, microphone, chat and features');
    producerStats = setInterval(async () => {
      const pc = call.producer?.pc;
      if (!pc || pc.connectionState === 'closed') return;
      const pair = await selectedPair(pc).catch(() => null);
      demo.state.pair = pair;
      fact('producer pair', describePair(pair));
    }, 1000);
    $('#leave').disabled = false;
    participants();
  } catch (err) {
    step('room', false, `${err.status ? `${err.status} ` : ''}${err.message}`);
    $('#join').disabled = false;
  }
}

function leave() {
  clearInterval(producerStats);
  call?.leave();
  for (const { tile, timer } of tiles.values()) {
    clearInterval(timer);
    tile.remove();
  }
  tiles.clear();
  stream?.getTracks().forEach((t) => t.stop());
  $('#leave').disabled = true;
  $('#join').disabled = false;
  step('left', true);
  setStatus('left the room', 'info');
}

/** Sends a chat line to everyone else in the room (the SFU relays it as it is). */
demo.say = (text) => {
  if (!call?.say(text)) return false;
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
