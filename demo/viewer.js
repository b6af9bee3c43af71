// Viewer: find-match (optionally by region), connect to the returned signalingUrl, join the
// host's room as a client, offer with the returned iceServers, show the host's video and chat.
import { $, api, chatLine, demo, fact, params, PeerLink, randomId, setStatus, Signaling, step, watchStats, wireChat } from './common.js';

const p = params();
$('#region').value = p.region || '';
$('#policy').value = p.policy || 'all';

let signaling = null;
let link = null;
let channel = null;
let stopStats = () => {};

async function find(e) {
  e?.preventDefault();
  $('#find').disabled = true;
  const region = $('#region').value;
  const policy = $('#policy').value;
  setStatus(region ? `finding an idle host in ${region}…` : 'finding an idle host…');
  try {
    const match = await api('find-match', 'POST', '/api/find-match', { body: region ? { region } : {} });
    demo.state.findMatch = { status: match.status, body: match.body };
    if (!match.ok) {
      setStatus(`no host available (${match.status}): ${match.body?.message || ''}`, 'fail');
      $('#find').disabled = false;
      return;
    }
    const { roomId, signalingUrl, iceServers } = match.body;
    fact('roomId', roomId);
    fact('signalingUrl', signalingUrl);
    fact('iceServers', iceServers.map((s) => [].concat(s.urls).join(' ') + (s.username ? ` (user ${s.username})` : '')).join('; '));

    signaling = new Signaling(signalingUrl);
    signaling
      .on('handshake', async (frame) => {
        try {
          await link?.receive(frame);
        } catch (err) {
          step('negotiation', false, err.message);
        }
      })
      .on('sfuDisconnect', (frame) => {
        step('host left (sfuDisconnect)', true, frame.sfuId);
        demo.state.hostGone = true;
        leave();
      })
      .on('error', () => {})
      .on('close', () => fact('socket', 'closed'));
    await signaling.connect();
    const me = p.peerId || randomId('viewer');
    const ack = await signaling.identify({ id: me, type: 'client', roomId });
    step('identified', true, ack);
    fact('my id', me);
    demo.state.myId = me;

    link = new PeerLink({ signaling, label: 'host', type: 'consumer', config: { iceServers, iceTransportPolicy: policy } });
    fact('ICE policy', policy);
    link.pc.addTransceiver('video', { direction: 'recvonly' });
    link.pc.ontrack = (ev) => {
      $('#remote').srcObject = ev.streams[0] || new MediaStream([ev.track]);
      step('video track', true, ev.track.kind);
    };
    channel = link.pc.createDataChannel('chat');
    channel.onopen = () => {
      step('data channel open', true, channel.label);
      demo.state.channelOpen = true;
      if (p.hello !== undefined) {
        channel.send(p.hello || 'hello from the viewer');
        chatLine('me', p.hello || 'hello from the viewer');
      }
    };
    channel.onmessage = (m) => chatLine('host', m.data);
    channel.onclose = () => step('data channel closed', true);
    stopStats = watchStats(link.pc, 'host', ({ pair, frames }) => {
      demo.state.pair = pair;
      demo.state.framesDecoded = frames;
      if (pair?.state === 'succeeded' && frames > 0) {
        setStatus(`watching the host of ${roomId}: ${frames} frames decoded over ${pair.local.type} ⇄ ${pair.remote.type}`, 'ok');
      }
    });
    await link.offer();
    $('#leave').disabled = false;
    setStatus(`offer sent to the host of ${roomId}; waiting for its answer`, 'ok');
  } catch (err) {
    step('viewer', false, err.message);
    $('#find').disabled = false;
  }
}

function leave() {
  stopStats();
  link?.close();
  link = null;
  signaling?.leave();
  signaling = null;
  $('#leave').disabled = true;
  $('#find').disabled = false;
  step('left', true);
  setStatus('left the host', 'info');
}

$('#settings').addEventListener('submit', find);
$('#leave').addEventListener('click', leave);
wireChat(() => channel);
if ('autostart' in p) find();
