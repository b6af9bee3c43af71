// Shared by the demo pages: parameters, the step log, the HTTP API, the signaling socket,
// peer connections with trickle ICE, and stats. Plain ES modules, no build step.

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

// ---------------------------------------------------------------- HTTP API

/** Calls the HTTP API; records the step with status and body; never throws for HTTP errors. */
export async function api(name, method, path, { body, key, base = apiBase() } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (key) headers.authorization = `Bearer ${key}`;
  let status = 0;
  let json = null;
  try {
    const response = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    status = response.status;
    const text = await response.text();
    try {
      json = JSON.parse(text);
    } catch {
      json = { raw: text };
    }
  } catch (e) {
    json = { message: `network error: ${e.message}` };
  }
  const ok = status >= 200 && status < 300;
  step(name, ok, `${method} ${path} → ${status || 'no response'} ${JSON.stringify(json)}`);
  return { status, ok, body: json };
}

// ---------------------------------------------------------------- signaling

/**
 * One WebSocket to the signaling API. Frames out are `{action, data}`; frames in are objects
 * with a `type` (or, for relayed handshakes, the sender's data object with `sender`).
 */
export class Signaling {
  constructor(url) {
    this.url = url;
    this.handlers = new Map();
    this.ws = null;
    this.pinger = null;
  }

  on(type, handler) {
    this.handlers.set(type, handler);
    return this;
  }

  connect(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      const timer = setTimeout(() => {
        ws.close();
        reject(new Error(`no connection to ${this.url} within ${timeoutMs} ms`));
      }, timeoutMs);
      setStatus(`connecting to ${this.url}…`);
      ws.onopen = () => {
        clearTimeout(timer);
        step('websocket open', true, this.url);
        // Keep-alive under API Gateway's 10 min idle timeout.
        this.pinger = setInterval(() => this.send('ping'), 5 * 60 * 1000);
        resolve();
      };
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new Error(`websocket error on ${this.url}`));
      };
      ws.onclose = (e) => {
        clearInterval(this.pinger);
        fact('socket', `closed (${e.code})`);
        this.handlers.get('close')?.(e);
      };
      ws.onmessage = (e) => this.#receive(e.data);
    });
  }

  #receive(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      step('signaling frame', false, `not JSON: ${raw}`);
      return;
    }
    demo.events.push(frame);
    if (frame.type === 'error') {
      step(`signaling error (${frame.action})`, false, frame);
    }
    // Relayed handshakes are the sender's data object: they carry `sender`.
    const kind = frame.sender !== undefined ? 'handshake' : frame.type;
    const handler = this.handlers.get(kind) || this.handlers.get('*');
    if (handler) handler(frame);
  }

  send(action, data) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      step(`send ${action}`, false, 'socket is not open');
      return false;
    }
    this.ws.send(JSON.stringify(data === undefined ? { action } : { action, data }));
    return true;
  }

  /** Sends identify and waits for `identified` (or the error frame). */
  identify(data, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const previous = [this.handlers.get('identified'), this.handlers.get('error')];
      const done = (fn, value) => {
        clearTimeout(timer);
        this.handlers.set('identified', previous[0]);
        this.handlers.set('error', previous[1]);
        fn(value);
      };
      const timer = setTimeout(() => done(reject, new Error(`no reply to identify within ${timeoutMs} ms`)), timeoutMs);
      this.handlers.set('identified', (frame) => done(resolve, frame));
      this.handlers.set('error', (frame) => {
        if (frame.action === 'identify') done(reject, new Error(`identify refused: ${frame.status} ${frame.message}`));
        else previous[1]?.(frame);
      });
      const shown = { ...data };
      for (const secret of ['token', 'hostId']) if (shown[secret]) shown[secret] = '•••';
      step('identify sent', true, shown);
      this.send('identify', data);
    });
  }

  /** Explicit leave (`disconnect`), then close the socket. */
  leave() {
    this.leaving = true;
    if (this.ws?.readyState === WebSocket.OPEN) this.send('disconnect');
    this.close();
  }

  close() {
    this.leaving = true;
    clearInterval(this.pinger);
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close();
  }
}

// ---------------------------------------------------------------- peer connections

/**
 * One RTCPeerConnection negotiated over the signaling socket with one remote peer, with
 * trickle ICE: our candidates go out as handshakes as they are found; theirs are queued until
 * the remote description is set.
 */
export class PeerLink {
  /**
   * @param {object} o
   * @param {Signaling} o.signaling
   * @param {string} o.label  shown in step names
   * @param {string} o.type   handshake type we send: "producer" or "consumer"
   * @param {string|undefined} o.receiver  peer id, or undefined for the room's serving peer
   * @param {RTCConfiguration} o.config
   * @param {object} [o.fields]  sent in every handshake of this link (a consumer's `remotePeerId`)
   */
  constructor({ signaling, label, type, receiver, config, fields = {} }) {
    this.signaling = signaling;
    this.label = label;
    this.type = type;
    this.receiver = receiver;
    this.fields = fields;
    this.pending = [];
    this.pc = new RTCPeerConnection(config);
    this.pc.onicecandidate = (e) => {
      if (!e.candidate) {
        step(`${label}: ICE gathering complete`, true, this.pc.iceGatheringState);
        return;
      }
      this.#handshake({ candidate: e.candidate.toJSON() });
    };
    this.pc.oniceconnectionstatechange = () => {
      const state = this.pc.iceConnectionState;
      fact(`${label} ICE`, state);
      step(`${label}: ICE ${state}`, state !== 'failed');
      if (['connected', 'completed'].includes(state)) setStatus(`${label}: ICE ${state}`, 'ok');
      if (state === 'disconnected') setStatus(`${label}: ICE disconnected`, 'info');
    };
    this.pc.onconnectionstatechange = () => fact(`${label} connection`, this.pc.connectionState);
    this.pc.onicecandidateerror = (e) => {
      // Chromium reports one per unreachable STUN/TURN URL; worth seeing, not fatal by itself.
      step(`${label}: ICE candidate error`, false, `${e.url || ''} ${e.errorCode} ${e.errorText}`);
    };
  }

  #handshake(extra) {
    const data = { type: this.type, ...this.fields, ...extra };
    if (this.receiver) data.receiver = this.receiver;
    this.signaling.send('handshake', data);
  }

  /** Creates and sends the offer; `extra` rides along in the handshake frame. */
  async offer(extra = {}) {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    this.#handshake({ description: this.pc.localDescription.toJSON(), ...extra });
    step(`${this.label}: offer sent`, true, `${offer.sdp.length} bytes of SDP`);
  }

  /** Handles a relayed handshake frame: a description (offer or answer) or a candidate. */
  async receive(frame) {
    if (frame.description) {
      const { type } = frame.description;
      step(`${this.label}: ${type} received`, true, `from ${frame.sender}`);
      await this.pc.setRemoteDescription(frame.description);
      for (const candidate of this.pending.splice(0)) await this.#addCandidate(candidate);
      if (type === 'offer') {
        const answer = await this.pc.createAnswer();
        await this.pc.setLocalDescription(answer);
        this.#handshake({ description: this.pc.localDescription.toJSON() });
        step(`${this.label}: answer sent`, true, `to ${frame.sender}`);
      }
    } else if (frame.candidate !== undefined) {
      if (!this.pc.remoteDescription) this.pending.push(frame.candidate);
      else await this.#addCandidate(frame.candidate);
    }
  }

  async #addCandidate(candidate) {
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (e) {
      step(`${this.label}: addIceCandidate`, false, e.message);
    }
  }

  close() {
    this.pc.close();
  }
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
