// A browser page in the SFU's place: identify with the room's token (which makes the room
// warm), answer each client's producer offer, show its video, answer its chat messages.
import { $, chatLine, defaultWsUrl, demo, fact, params, PeerLink, setStatus, Signaling, step, watchStats } from './common.js';

const p = params();
// RTC_CONFIG may come as JSON (`rtc=`) or base64 of the JSON (`rtc64=`, handy from a shell).
const rtc = p.rtc || (p.rtc64 ? atob(p.rtc64) : '');
$('#roomId').value = p.roomId || '';
$('#token').value = p.token || '';
$('#ws').value = p.ws || defaultWsUrl(p);
$('#rtc').value = rtc || '{"iceServers":[]}';

let signaling = null;
const clients = new Map(); // client id → {link, tile, stopStats}
const early = new Map(); // client id → handshake frames that came before its offer
demo.state.offers = [];
demo.state.clients = [];

function clientList() {
  demo.state.clients = [...clients.keys()];
  fact('clients', demo.state.clients.length ? demo.state.clients.join(', ') : 'none');
}

function removeClient(id, why) {
  const client = clients.get(id);
  if (!client) return;
  clients.delete(id);
  client.stopStats();
  client.link.close();
  client.tile.remove();
  step(`client ${id} left`, true, why);
  clientList();
  setStatus(`SFU of ${$('#roomId').value}: ${clients.size} client(s)`, 'ok');
}

async function onHandshake(config, frame) {
  const id = frame.sender;
  let client = clients.get(id);
  if (!client) {
    if (!frame.description) {
      // Frames of one socket reach us in no particular order (API Gateway invokes one Lambda
      // per frame): a candidate may overtake its offer. Keep it for when the offer comes.
      if (!early.has(id)) early.set(id, []);
      early.get(id).push(frame);
      return;
    }
    const link = new PeerLink({ signaling, label: `client ${id}`, type: frame.type, receiver: id, config });
    const tile = document.createElement('figure');
    const video = document.createElement('video');
    Object.assign(video, { autoplay: true, muted: true, playsInline: true });
    const caption = document.createElement('figcaption');
    caption.textContent = id;
    tile.append(video, caption);
    $('#videos').append(tile);
    client = { link, tile, stopStats: () => {} };
    clients.set(id, client);
    clientList();
    setStatus(`SFU of ${$('#roomId').value}: producer offer from ${id}`, 'ok');
    link.pc.ontrack = (e) => {
      video.srcObject = e.streams[0] || new MediaStream([e.track]);
    };
    link.pc.ondatachannel = (e) => {
      const dc = e.channel;
      dc.onopen = () => step(`client ${id}: data channel open`, true, dc.label);
      dc.onmessage = (m) => {
        chatLine(id, m.data);
        dc.send(`sfu got: ${m.data}`);
        chatLine('me', `sfu got: ${m.data}`);
      };
    };
    client.stopStats = watchStats(link.pc, `client ${id}`);
  }
  if (frame.description) {
    demo.state.offers.push({ sender: id, type: frame.type, sdpType: frame.description.type });
  }
  try {
    await client.link.receive(frame);
    for (const candidate of early.get(id)?.splice(0) ?? []) await client.link.receive(candidate);
  } catch (e) {
    step(`client ${id}: negotiation`, false, e.message);
  }
}

async function start(e) {
  e?.preventDefault();
  $('#start').disabled = true;
  try {
    const roomId = $('#roomId').value.trim();
    const token = $('#token').value.trim();
    const config = JSON.parse($('#rtc').value || '{"iceServers":[]}');
    if (p.policy) config.iceTransportPolicy = p.policy;
    fact('roomId', roomId);
    fact('iceServers', (config.iceServers || []).map((s) => [].concat(s.urls).join(' ')).join('; ') || 'none');
    signaling = new Signaling($('#ws').value.trim());
    signaling
      .on('handshake', (frame) => onHandshake(config, frame))
      .on('clientDisconnect', (frame) => {
        step('clientDisconnect', true, frame.clientId);
        removeClient(frame.clientId, 'clientDisconnect');
      })
      .on('error', () => {})
      .on('close', () => fact('socket', 'closed'));
    await signaling.connect();
    const ack = await signaling.identify({ id: roomId, type: 'sfu', token });
    step('identified', true, ack);
    demo.state.ready = true;
    $('#stop').disabled = false;
    setStatus(`SFU of ${roomId} is up: the room is warm (claimable)`, 'ok');
  } catch (err) {
    step('sfu', false, err.message);
    $('#start').disabled = false;
  }
}

function stop() {
  for (const id of [...clients.keys()]) removeClient(id, 'SFU stopped');
  signaling?.leave();
  demo.state.ready = false;
  $('#stop').disabled = true;
  step('stopped', true, 'the room is deleted');
  setStatus('stopped: the room is gone', 'info');
}

$('#settings').addEventListener('submit', start);
$('#stop').addEventListener('click', stop);
if ('autostart' in p) start();
