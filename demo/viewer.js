// Viewer, on the SDK's ViewerConnection: find-match (optionally by region), connect to the
// returned signalingUrl, join the host's room as a client, offer with the returned iceServers,
// show the host's video and chat.
import { Switchboard, ViewerConnection } from '../sdk/index.js';
import { $, apiBase, chatLine, demo, fact, loggedFetch, params, randomId, setStatus, showSignaling, step, watchStats, wireChat } from './common.js';

const p = params();
$('#region').value = p.region || '';
$('#policy').value = p.policy || 'all';

let viewer = null;
let stopStats = () => {};

async function find(e) {
  e?.preventDefault();
  $('#find').disabled = true;
  const region = $('#region').value;
  const policy = $('#policy').value;
  setStatus(region ? `finding an idle host in ${region}…` : 'finding an idle host…');
  viewer = new ViewerConnection({
    switchboard: new Switchboard({ apiUrl: apiBase(p), fetch: loggedFetch(() => 'find-match') }),
    ...(region ? { region } : {}),
    peerId: p.peerId || randomId('viewer'),
    iceTransportPolicy: policy,
  });
  demo.viewer = viewer;
  viewer.on('match', (match) => {
    demo.state.findMatch = { status: 200, body: match };
    fact('roomId', match.roomId);
    fact('signalingUrl', match.signalingUrl);
    fact('iceServers', match.iceServers.map((s) => [].concat(s.urls).join(' ') + (s.username ? ` (user ${s.username})` : '')).join('; '));
  });
  viewer.on('identified', (ack) => {
    step('identified', true, ack);
    showSignaling(viewer.signaling, { label: 'host' });
    fact('my id', ack.id);
    demo.state.myId = ack.id;
    fact('ICE policy', policy);
  });
  viewer.on('track', ({ track, streams }) => {
    $('#remote').srcObject = streams[0] || new MediaStream([track]);
    step('video track', true, track.kind);
  });
  viewer.on('channelOpen', ({ channel }) => {
    step('data channel open', true, channel.label);
    demo.state.channelOpen = true;
    if (p.hello !== undefined) {
      viewer.send(p.hello || 'hello from the viewer');
      chatLine('me', p.hello || 'hello from the viewer');
    }
  });
  viewer.on('message', ({ data }) => chatLine('host', data));
  viewer.on('hostLeft', ({ sfuId }) => {
    step('host left (sfuDisconnect)', true, sfuId);
    demo.state.hostGone = true;
    leave();
  });
  viewer.on('error', ({ error, during }) => step(during, false, error.message));
  try {
    const match = await viewer.connect();
    stopStats = watchStats(viewer.pc, 'host', ({ pair, frames }) => {
      demo.state.pair = pair;
      demo.state.framesDecoded = frames;
      if (pair?.state === 'succeeded' && frames > 0) {
        setStatus(`watching the host of ${match.roomId}: ${frames} frames decoded over ${pair.local.type} ⇄ ${pair.remote.type}`, 'ok');
      }
    });
    $('#leave').disabled = false;
    setStatus(`offer sent to the host of ${match.roomId}; waiting for its answer`, 'ok');
  } catch (err) {
    // find-match's 404 (no idle host) is a SwitchboardError with its status and message.
    if (!demo.state.findMatch) demo.state.findMatch = { status: err.status ?? 0, body: err.body ?? { message: err.message } };
    if (err.status === 404) setStatus(`no host available (404): ${err.message}`, 'fail');
    else step('viewer', false, `${err.status ? `${err.status} ` : ''}${err.message}`);
    $('#find').disabled = false;
  }
}

function leave() {
  stopStats();
  viewer?.leave();
  viewer = null;
  $('#leave').disabled = true;
  $('#find').disabled = false;
  step('left', true);
  setStatus('left the host', 'info');
}

$('#settings').addEventListener('submit', find);
$('#leave').addEventListener('click', leave);
wireChat(() => viewer?.channel);
if ('autostart' in p) find();
