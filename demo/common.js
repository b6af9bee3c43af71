// Shared by the demo pages: parameters, the step log, media and stats. Everything that talks to
// Switchboard (the HTTP API, the signaling socket, peer connections) is the SDK,
// switchboard-client, which the local stack serves at /sdk/ (built from sdk/ into sdk/dist).

// ---------------------------------------------------------------- parameters

/** Query and hash parameters (hash wins). Values are percent-decoded; `+` stays `+`. */
export function params() {
  const out = {};
  for (const part of [location.search.slice(1), location.hash.slice(1)]) {
    for (const pair of part.split('&')) {
      if (!pair) continue;
      const at = pair.indexOf('=');
      const key = decodeURIComponent(at < 0 ? pair : pair.slice(0, at));
      const value = at < 0 ? '' : decodeURIComponent(pair.slice(at + 1));
      out[key] = value;
    }
  }
  return out;
}

/** The HTTP API is the origin that served this page (switchboard-local serves both). */
export function apiBase(p = params()) {
  return (p.api || location.origin).replace(/\/$/, '');
}

/** switchboard-local's WebSocket API listens on the HTTP port + 1 unless told otherwise. */
export function defaultWsUrl(p = params()) {
  if (p.ws) return p.ws;
  const port = Number(location.port || (location.protocol === 'https:' ? 443 : 80));
  return `ws://${location.hostname}:${port + 1}`;
}

export function randomId(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

export const $ = (selector) => document.querySelector(selector);

// ---------------------------------------------------------------- what happened, visibly

/**
 * Everything the page did, in order, for people (the #steps list and the status line) and for
 * the end-to-end test (`window.demo`).
 */
export const demo = (window.demo = {
  steps: [], // {name, ok, detail, at}
  events: [], // signaling frames received
  state: {},
  errors: [],
});

export function setStatus(text, kind = 'info') {
  const line = $('#status');
  if (line) {
    line.textContent = text;
    line.dataset.kind = kind;
  }
  demo.state.status = text;
}

/** Records one step's result; `ok` false marks the step as where things went wrong. */
export function step(name, ok, detail = '') {
  const text = typeof detail === 'string' ? detail : JSON.stringify(detail);
  const entry = { name, ok, detail: text, at: new Date().toISOString() };
  demo.steps.push(entry);
  if (!ok) demo.errors.push(`${name}: ${text}`);
  const list = $('#steps');
  if (list) {
    const li = document.createElement('li');
    li.className = ok ? 'ok' : 'fail';
    li.dataset.step = name;
    const time = document.createElement('time');
    time.textContent = entry.at.slice(11, 23);
    const label = document.createElement('b');
    label.textContent = name;
    const body = document.createElement('code');
    body.textContent = text.length > 600 ? `${text.slice(0, 600)}…` : text;
    li.append(time, ' ', label, ' ', body);
    list.append(li);
    li.scrollIntoView({ block: 'nearest' });
  }
  if (!ok) setStatus(`✗ ${name}: ${text}`, 'fail');
  return entry;
}

/** Shows a key/value in the page's facts table (ids, ICE state, selected pair...). */
export function fact(key, value) {
  demo.state[key] = value;
  const table = $('#facts');
  if (!table) return;
  let row = table.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
  if (!row) {
    row = document.createElement('tr');
    row.dataset.key = key;
    const th = document.createElement('th');
    th.textContent = key;
    row.append(th, document.createElement('td'));
    table.append(row);
  }
  row.lastChild.textContent = typeof value === 'string' ? value : JSON.stringify(value);
}

// ---------------------------------------------------------------- the SDK, with its calls shown

/**
 * A `fetch` for the SDK's `Switchboard` that records each HTTP call as a step (method, path,
 * status, body), so the page shows what it asked and what it got.
 */
export function loggedFetch(label = (method, path) => `${method} ${path}`) {
  return async (url, init = {}) => {
    const method = init.method || 'GET';
    const { pathname, search } = new URL(url);
    const name = label(method, pathname);
    try {
      const response = await fetch(url, init);
      const text = await response.clone().text();
      step(name, response.ok, `${method} ${pathname}${search} → ${response.status} ${text}`);
      return response;
    } catch (e) {
      step(name, false, `${method} ${pathname} → no response: ${e.message}`);
      throw e;
    }
  };
}

/** Shows every signaling frame the SDK's `Signaling` receives, and its socket's ups and downs. */
export function showSignaling(signaling, { label = '' } = {}) {
  signaling.on('frame', (frame) => {
    demo.events.push(frame);
    if (frame.type === 'error') step(`signaling error (${frame.action})`, false, frame);
  });
  signaling.on('invalid', ({ raw }) => step('signaling frame', false, `not a frame: ${raw.slice(0, 200)}`));
  signaling.on('open', ({ url, attempt }) => {
    step(attempt ? 'websocket open again' : 'websocket open', true, url);
    fact('socket', 'open');
  });
  signaling.on('close', ({ code, willReconnect }) => {
    fact('socket', `closed (${code})${willReconnect ? ', reconnecting' : ''}`);
    demo.state.socketCloses = (demo.state.socketCloses || 0) + 1;
  });
  signaling.on('reconnecting', ({ attempt, delayMs }) => step('reconnecting', true, `attempt ${attempt} in ${delayMs} ms`));
  signaling.on('reconnected', (ack) => {
    step('identified again', true, ack);
    demo.state.reconnects = (demo.state.reconnects || 0) + 1;
  });
  signaling.on('failed', ({ error }) => step('reconnect', false, error.message));
  signaling.on('pong', () => fact('last pong', new Date().toISOString().slice(11, 19)));
  signaling.on('handshake', (frame) => {
    const what = frame.description ? frame.description.type : 'candidate';
    if (frame.description) step(`${label || frame.sender}: ${what} received`, true, `from ${frame.sender}`);
  });
}

/** The selected candidate pair as `{state, local: {type, address, port, protocol}, remote: {...}}`. */
export async function selectedPair(pc) {
  const stats = await pc.getStats();
  let pairId = null;
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  if (!pairId) {
    stats.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pairId = s.id;
    });
  }
  const pair = pairId && stats.get(pairId);
  if (!pair) return null;
  const describe = (id) => {
    const c = stats.get(id) || {};
    return { type: c.candidateType, address: c.address, port: c.port, protocol: c.protocol, relayProtocol: c.relayProtocol, url: c.url };
  };
  return { state: pair.state, local: describe(pair.localCandidateId), remote: describe(pair.remoteCandidateId), bytesReceived: pair.bytesReceived };
}

/** Frames decoded across inbound video streams. */
export async function framesDecoded(pc) {
  const stats = await pc.getStats();
  let frames = 0;
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0;
  });
  return frames;
}

export function describePair(pair) {
  if (!pair) return 'none yet';
  const end = (c) => `${c.type} ${c.address}:${c.port}/${c.protocol}`;
  return `${end(pair.local)} ⇄ ${end(pair.remote)}`;
}

/** Watches a connection's stats every second, reporting them as facts under `label`. */
export function watchStats(pc, label, onUpdate) {
  const timer = setInterval(async () => {
    if (pc.connectionState === 'closed') {
      clearInterval(timer);
      return;
    }
    try {
      const pair = await selectedPair(pc);
      const frames = await framesDecoded(pc);
      fact(`${label} pair`, describePair(pair));
      fact(`${label} framesDecoded`, frames);
      onUpdate?.({ pair, frames });
    } catch (e) {
      fact(`${label} stats`, `error: ${e.message}`);
    }
  }, 1000);
  return () => clearInterval(timer);
}

// ---------------------------------------------------------------- media

/** Camera (fake in the test) or, when asked or when there is no camera, an animated canvas. */
export async function localVideo(source) {
  if (source !== 'canvas') {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: false });
      step('camera', true, stream.getVideoTracks()[0]?.label || 'video track');
      return stream;
    } catch (e) {
      step('camera', false, `${e.name}: ${e.message}; using a canvas instead`);
    }
  }
  const stream = canvasStream();
  step('canvas video', true, 'animated canvas, 640×360');
  return stream;
}

/**
 * Camera and microphone (fake devices in the test); without a camera an animated canvas, without
 * a microphone a quiet tone, so every participant sends one video and one audio track.
 */
export async function localMedia(source) {
  let stream = null;
  if (source !== 'canvas') {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
      step('camera and microphone', true, stream.getTracks().map((t) => `${t.kind}: ${t.label}`).join(', '));
    } catch (e) {
      step('camera and microphone', false, `${e.name}: ${e.message}; using a canvas and a tone instead`);
    }
  }
  if (!stream) {
    stream = canvasStream();
    const audio = new AudioContext();
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    gain.gain.value = 0.05;
    const out = audio.createMediaStreamDestination();
    tone.connect(gain).connect(out);
    tone.start();
    stream.addTrack(out.stream.getAudioTracks()[0]);
    step('canvas video and tone', true, 'animated canvas 640×360, 440 Hz tone');
  }
  return stream;
}

export function canvasStream() {
  const canvas = document.createElement('canvas');
  canvas.width = 640;
  canvas.height = 360;
  const g = canvas.getContext('2d');
  let n = 0;
  const draw = () => {
    n += 1;
    const hue = (n * 2) % 360;
    g.fillStyle = `hsl(${hue} 60% 30%)`;
    g.fillRect(0, 0, canvas.width, canvas.height);
    g.fillStyle = '#fff';
    g.font = 'bold 48px sans-serif';
    g.fillText('Switchboard', 40, 90);
    g.font = '28px monospace';
    g.fillText(new Date().toISOString().slice(11, 23), 40, 150);
    g.beginPath();
    g.arc(320 + 200 * Math.cos(n / 20), 250, 40, 0, 2 * Math.PI);
    g.fill();
  };
  draw();
  setInterval(draw, 1000 / 30);
  return canvas.captureStream(30);
}

// ---------------------------------------------------------------- chat

/** Appends a line to the #chat log. */
export function chatLine(who, text) {
  const log = $('#chat-log');
  demo.state.chat = demo.state.chat || [];
  demo.state.chat.push({ who, text });
  if (!log) return;
  const line = document.createElement('div');
  const name = document.createElement('b');
  name.textContent = `${who}: `;
  line.append(name, text);
  log.append(line);
  log.scrollTop = log.scrollHeight;
}

/** Wires the #chat-form to send on `channel()` (the open data channel, or null). */
export function wireChat(channel, me = 'me') {
  const form = $('#chat-form');
  if (!form) return;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const input = form.querySelector('input');
    const dc = channel();
    if (!dc || dc.readyState !== 'open') {
      step('chat', false, 'data channel is not open');
      return;
    }
    dc.send(input.value);
    chatLine(me, input.value);
    input.value = '';
  });
}
