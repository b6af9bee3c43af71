// Rooms flow (the Arbiter client): getRoomId for the URL path; on 404 claimRoom (a warm room
// whose SFU is up); join as a client and send a producer offer to the room's SFU.
import { $, api, chatLine, defaultWsUrl, demo, fact, localVideo, params, PeerLink, randomId, setStatus, Signaling, step, watchStats, wireChat } from './common.js';

const p = params();
$('#path').value = p.path || 'myRoom';
$('#source').value = p.source || 'camera';
$('#ws').value = defaultWsUrl(p);
$('#ice').value = p.ice || '';
$('#policy').value = p.policy || 'all';

let signaling = null;
let link = null;
let channel = null;
let stream = null;
let stopStats = () => {};

async function resolveRoom(urlPath) {
  const query = `/getRoomId?urlPath=${encodeURIComponent(urlPath)}`;
  const first = await api('getRoomId', 'GET', query);
  demo.state.getRoomId = [first.status];
  if (first.ok) return first.body;
  if (first.status !== 404) throw new Error(`getRoomId failed (${first.status})`);
  const claim = await api('claimRoom', 'PATCH', '/claimRoom', { body: { urlPath } });
  demo.state.claimRoom = { status: claim.status, body: claim.body };
  if (!claim.ok) throw new Error(`no warm room to claim (${claim.status}: ${claim.body?.message || ''})`);
  const again = await api('getRoomId (after claim)', 'GET', query);
  demo.state.getRoomId.push(again.status);
  demo.state.getRoomIdAfterClaim = again.body;
  if (!again.ok || (again.body.roomId ?? again.body.id) !== claim.body.roomId) {
    throw new Error(`getRoomId after claimRoom does not return the claimed room: ${JSON.stringify(again.body)}`);
  }
  return claim.body;
}

async function join(e) {
  e?.preventDefault();
  $('#join').disabled = true;
  try {
    const urlPath = $('#path').value.trim();
    setStatus(`resolving the room of ${urlPath}…`);
    fact('urlPath', urlPath);
    const room = await resolveRoom(urlPath);
    const roomId = room.roomId ?? room.id;
    // Switchboard hands room clients TURN credentials for the room, as find-match does.
    const iceServers = $('#ice').value.trim() ? JSON.parse($('#ice').value) : room.iceServers || [];
    const policy = $('#policy').value;
    fact('iceServers', iceServers.map((s) => [].concat(s.urls).join(' ')).join('; ') || 'none');
    fact('ICE policy', policy);
    fact('roomId', roomId);
    demo.state.roomId = roomId;

    signaling = new Signaling($('#ws').value.trim());
    signaling
      .on('handshake', async (frame) => {
        try {
          await link?.receive(frame);
          if (frame.description?.type === 'answer') demo.state.answerReceived = true;
        } catch (err) {
          step('negotiation', false, err.message);
        }
      })
      .on('sfuDisconnect', (frame) => {
        step('sfuDisconnect', true, `the room's SFU ${frame.sfuId} left`);
        demo.state.sfuDisconnect = frame.sfuId;
        stopStats();
        link?.close();
        setStatus('the SFU left: the room is gone', 'fail');
      })
      .on('error', () => {})
      .on('close', () => fact('socket', 'closed'));
    await signaling.connect();
    const me = p.peerId || randomId('client');
    const ack = await signaling.identify({ id: me, type: 'client', roomId });
    step('identified', true, ack);
    fact('my id', me);
    demo.state.myId = me;

    stream = await localVideo($('#source').value);
    $('#local').srcObject = stream;
    link = new PeerLink({ signaling, label: 'sfu', type: 'producer', config: { iceServers, iceTransportPolicy: policy } });
    for (const track of stream.getTracks()) link.pc.addTrack(track, stream);
    channel = link.pc.createDataChannel('chat');
    channel.onopen = () => {
      step('data channel open', true, channel.label);
      setStatus(`in room ${roomId}: connected to its SFU, data channel open`, 'ok');
      demo.state.channelOpen = true;
      channel.send(`hello from ${me}`);
      chatLine('me', `hello from ${me}`);
    };
    channel.onmessage = (m) => chatLine('sfu', m.data);
    channel.onclose = () => step('data channel closed', true);
    stopStats = watchStats(link.pc, 'sfu', ({ pair }) => (demo.state.pair = pair));
    // No receiver: the handshake goes to the room's serving peer, the SFU.
    await link.offer({ roomId });
    $('#leave').disabled = false;
    setStatus(`producer offer sent to the SFU of ${roomId}`, 'ok');
  } catch (err) {
    step('room', false, err.message);
    $('#join').disabled = false;
  }
}

function leave() {
  stopStats();
  link?.close();
  signaling?.leave();
  stream?.getTracks().forEach((t) => t.stop());
  $('#leave').disabled = true;
  $('#join').disabled = false;
  step('left', true);
  setStatus('left the room', 'info');
}

$('#settings').addEventListener('submit', join);
$('#leave').addEventListener('click', leave);
wireChat(() => channel);
if ('autostart' in p) join();
