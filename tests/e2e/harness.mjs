// Starts the real programs the end-to-end test needs (coturn, switchboard-local with its
// DynamoDB Local, Chromium) on 127.0.0.1, and stops them again, also when a test fails.

import aws4 from 'aws4';
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SCREENSHOTS = path.join(ROOT, 'tests/e2e/screenshots');

// ------------------------------------------------------------------ steps

/**
 * Runs one step with its own time limit; a failure (or the limit) says which step it was.
 * `describe` (optional) adds what the pages reported, so the message shows where it broke.
 */
export async function step(name, timeoutMs, body, describe) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  const started = Date.now();
  try {
    const value = await Promise.race([body(), limit]);
    console.log(`  ✓ ${name} (${Date.now() - started} ms)`);
    return value;
  } catch (e) {
    let context = '';
    if (describe) {
      try {
        context = `\n${await describe()}`;
      } catch (d) {
        context = `\n(could not describe the pages: ${d.message})`;
      }
    }
    const error = new Error(`step "${name}" failed: ${e.message}${context}`);
    error.cause = e;
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `probe` until it returns a truthy value (bounded by the caller's step timeout and `maxTries`). */
export async function until(probe, what, { intervalMs = 200, maxTries = 1000 } = {}) {
  let last;
  for (let i = 0; i < maxTries; i += 1) {
    last = await probe();
    if (last) return last;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`${what}: still not true after ${maxTries} tries (last: ${JSON.stringify(last)})`);
}

// ------------------------------------------------------------------ ports and processes

export function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}

const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** A child process in its own process group, with the tail of its output kept for messages. */
class Child {
  constructor(name, command, args, env) {
    this.name = name;
    this.lines = [];
    this.listeners = new Set();
    this.proc = spawn(command, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.pid = this.proc.pid;
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })));
    this.exited.then(({ code, signal }) => {
      running.delete(this);
      this.#line(`[${name} exited: code ${code} signal ${signal}]`);
    });
    running.add(this);
    for (const stream of [this.proc.stdout, this.proc.stderr]) {
      let buffer = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => {
        buffer += chunk;
        let at;
        while ((at = buffer.indexOf('\n')) >= 0) {
          this.#line(buffer.slice(0, at));
          buffer = buffer.slice(at + 1);
        }
      });
    }
    this.proc.once('error', (e) => this.#line(`[${name} could not start: ${e.message}]`));
  }

  #line(line) {
    this.lines.push(line);
    if (this.lines.length > 400) this.lines.shift();
    for (const listener of this.listeners) listener(line);
  }

  tail(n = 40) {
    return this.lines.slice(-n).join('\n');
  }

  /** Resolves with the first line matching `pattern`; rejects if the process exits first. */
  waitForLine(pattern, timeoutMs) {
    return new Promise((resolve, reject) => {
      const found = this.lines.find((l) => pattern.test(l));
      if (found) return resolve(found);
      const done = (fn, value) => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        fn(value);
      };
      const listener = (line) => {
        if (pattern.test(line)) done(resolve, line);
      };
      const timer = setTimeout(
        () => done(reject, new Error(`${this.name}: no line matching ${pattern} within ${timeoutMs} ms\n${this.tail()}`)),
        timeoutMs,
      );
      this.listeners.add(listener);
      this.exited.then(({ code, signal }) =>
        done(reject, new Error(`${this.name} exited (code ${code}, signal ${signal}) before ${pattern}\n${this.tail()}`)),
      );
    });
  }

  /** SIGTERM to the process group, SIGKILL after `graceMs`. */
  async stop(graceMs = 10000) {
    if (!running.has(this)) return;
    try {
      process.kill(-this.pid, 'SIGTERM');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-this.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }, graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

// ------------------------------------------------------------------ coturn

/** Sends a STUN Binding request and waits for any answer (coturn is up). */
function stunPing(port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    const request = Buffer.alloc(20);
    request.writeUInt16BE(0x0001, 0); // Binding request
    request.writeUInt16BE(0, 2);
    request.writeUInt32BE(0x2112a442, 4); // magic cookie
    randomBytes(12).copy(request, 8);
    const timer = setTimeout(() => finish(false), timeoutMs);
    const finish = (ok) => {
      clearTimeout(timer);
      socket.close();
      resolve(ok);
    };
    socket.on('message', (msg) => finish(msg.length >= 20 && msg.readUInt16BE(0) === 0x0101));
    socket.on('error', () => finish(false));
    socket.send(request, port, '127.0.0.1');
  });
}

/** coturn with `--use-auth-secret` on 127.0.0.1; a few attempts with fresh ports if one fails. */
export async function startCoturn({ secret }, attempts = 3) {
  const failures = [];
  for (let attempt = 1; attempt <= attempts; attempt += 1) {
    try {
      return await startCoturnOnce(secret);
    } catch (e) {
      failures.push(`attempt ${attempt}: ${e.message}`);
    }
  }
  throw new Error(failures.join('\n'));
}

async function startCoturnOnce(secret) {
  const port = await freeUdpPort();
  const dir = mkdtempSync(path.join(tmpdir(), 'switchboard-coturn-'));
  // A relay port range of its own that does not hold the listening port.
  let minPort;
  do minPort = 40000 + 2 * Math.floor(Math.random() * 5000);
  while (port >= minPort && port <= minPort + 199);
  const args = [
    '-n',
    '--listening-ip=127.0.0.1',
    '--relay-ip=127.0.0.1',
    '--allow-loopback-peers',
    `--listening-port=${port}`,
    `--min-port=${minPort}`,
    `--max-port=${minPort + 199}`,
    '--use-auth-secret',
    `--static-auth-secret=${secret}`,
    '--realm=switchboard',
    '--no-cli',
    '--no-tls',
    '--no-dtls',
    '--fingerprint',
    '--log-file=stdout',
    '--simple-log',
    `--pidfile=${path.join(dir, 'turnserver.pid')}`,
    `--userdb=${path.join(dir, 'turndb')}`,
  ];
  const child = new Child('coturn', 'turnserver', args, { PATH: process.env.PATH });
  child.dir = dir;
  child.port = port;
  const deadline = Date.now() + 10000;
  for (let i = 0; i < 60 && Date.now() < deadline; i += 1) {
    if (await stunPing(port)) return child;
    if (!running.has(child)) break;
    await new Promise((r) => setTimeout(r, 150));
  }
  await child.stop();
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`coturn did not answer STUN on 127.0.0.1:${port}\n${child.tail(15)}`);
}

// ------------------------------------------------------------------ switchboard-local

/** The SFU the stack runs for rooms (SWITCHBOARD_SFU_BIN: another build of it). */
export function sfuBinary() {
  const targetDir = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
  const binary = process.env.SWITCHBOARD_SFU_BIN || path.join(targetDir, 'debug/switchboard-sfu');
  if (!existsSync(binary)) throw new Error(`${binary} is missing: run cargo build -p switchboard-sfu`);
  return binary;
}

/**
 * switchboard-local on free ports. `args` are more flags (e.g. `--task-command` running the SFU),
 * `env` more (or other) variables.
 */
export async function startStack({ turnPort, turnSecret, hostKey, operatorKey, args = [], env: extraEnv = {} }) {
  // SWITCHBOARD_LOCAL_BIN: another build (a release build, or a deliberately broken one).
  const targetDir = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
  const binary = process.env.SWITCHBOARD_LOCAL_BIN || path.join(targetDir, 'debug/switchboard-local');
  if (!existsSync(binary)) throw new Error(`${binary} is missing: run cargo build -p switchboard-local`);
  const [http, ws, ecs] = [await freeTcpPort(), await freeTcpPort(), await freeTcpPort()];
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHBOARD_'))),
    SWITCHBOARD_TURN_SECRET: turnSecret,
    SWITCHBOARD_TURN_URLS: `turn:127.0.0.1:${turnPort}?transport=udp`,
    SWITCHBOARD_STUN_URLS: `stun:127.0.0.1:${turnPort}`,
    SWITCHBOARD_HOST_KEYS: hostKey,
    SWITCHBOARD_OPERATOR_KEYS: operatorKey,
    // A lost serving socket: the room waits this long for it, then the sweeper (every second
    // here) ends the room.
    SWITCHBOARD_RECONNECT_GRACE_SECONDS: '2',
    ...extraEnv,
  };
  const child = new Child(
    'switchboard-local',
    binary,
    ['--http-port', `${http}`, '--ws-port', `${ws}`, '--ecs-port', `${ecs}`, '--sweep-interval-seconds', '1', ...args],
    env,
  );
  // DynamoDB Local (Java) may be fetched and started first: allow it time.
  const ready = await child.waitForLine(/^ready http=/, 180000);
  const urls = Object.fromEntries(ready.slice('ready '.length).split(' ').map((kv) => kv.split(/=(.*)/s).slice(0, 2)));
  child.urls = urls;
  return child;
}

// ------------------------------------------------------------------ Chromium

export async function startChromium() {
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  const userDataDir = mkdtempSync(path.join(tmpdir(), 'switchboard-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-sync',
      '--disable-quic',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required',
    ],
    timeout: 60000,
  });
  context.userDataDir = userDataDir;
  return context;
}

export async function stopChromium(context) {
  if (!context) return;
  await context.close().catch(() => {});
  rmSync(context.userDataDir, { recursive: true, force: true });
}

/** A page with its console errors kept, for failure messages. */
export async function openPage(context, name, url) {
  const page = await context.newPage();
  page.role = name;
  page.logs = [];
  page.on('console', (m) => {
    if (['error', 'warning'].includes(m.type())) page.logs.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => page.logs.push(`pageerror: ${e.message}`));
  await page.goto(url, { waitUntil: 'load', timeout: 15000 });
  return page;
}

/** `window.demo.state` of a page (what it has seen so far). */
export function pageState(page) {
  return page.evaluate(() => window.demo?.state ?? null);
}

/** A page's own account: status line, failed steps, last steps, console errors. */
export async function describePage(page) {
  if (page.isClosed()) return `[${page.role}] (closed)`;
  const summary = await page.evaluate(() => ({
    status: window.demo?.state?.status,
    errors: window.demo?.errors ?? [],
    last: (window.demo?.steps ?? []).slice(-8).map((s) => `${s.ok ? 'ok  ' : 'FAIL'} ${s.name} ${s.detail.slice(0, 300)}`),
  }));
  return [
    `[${page.role}] status: ${summary.status}`,
    ...summary.errors.slice(-5).map((e) => `[${page.role}] error: ${e}`),
    ...summary.last.map((l) => `[${page.role}]   ${l}`),
    ...page.logs.slice(-5).map((l) => `[${page.role}] console ${l}`),
  ].join('\n');
}

// ------------------------------------------------------------------ the stack's APIs

/** One HTTP call to the stack's HTTP API; the body is parsed as JSON (or kept as `raw`). */
export async function httpCall(base, method, route, { body, key } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (key) headers.authorization = `Bearer ${key}`;
  const response = await fetch(base + route, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = { raw: text };
  }
  return { status: response.status, body: json };
}

/** A demo page's URL with its settings in the hash (`true` → a bare flag such as `autostart`). */
export const pageUrl = (base, file, hash) =>
  `${base}/demo/${file}#${Object.entries(hash)
    .map(([k, v]) => (v === true ? k : `${k}=${encodeURIComponent(v)}`))
    .join('&')}`;

/** A POST to the local ECS listener (ECS or EC2), signed as the stack's administrator. */
async function adminCall(ecsUrl, service, body, headers) {
  const url = new URL(`${ecsUrl}/`);
  const signed = aws4.sign(
    { host: url.host, path: '/', method: 'POST', service, region: 'us-east-1', body, headers },
    { accessKeyId: 'switchboard-local-admin', secretAccessKey: 'local' },
  );
  return fetch(url, { method: 'POST', headers: signed.headers, body });
}

/** The task as the local ECS endpoint describes it (DescribeTasks), asked as an operator would:
 * a SigV4-signed call with the stack's own credentials (the endpoint checks IAM as AWS does). */
export async function describeTask(ecsUrl, taskArn) {
  const response = await adminCall(ecsUrl, 'ecs', JSON.stringify({ cluster: 'switchboard-local', tasks: [taskArn] }), {
    'x-amz-target': 'AmazonEC2ContainerServiceV20141113.DescribeTasks',
    'content-type': 'application/x-amz-json-1.1',
  });
  const json = await response.json();
  const task = json.tasks?.[0];
  if (!task) throw new Error(`DescribeTasks → ${response.status} ${JSON.stringify(json)}`);
  return task;
}

/**
 * The address clients reach a task at, found as on AWS: the ENI DescribeTasks names, then EC2
 * DescribeNetworkInterfaces for its association's public IPv4 (the private one when it has none).
 */
export async function reachableAddress(ecsUrl, task) {
  const eni = task.attachments?.[0]?.details?.find((d) => d.name === 'networkInterfaceId')?.value;
  if (!eni) throw new Error(`the task names no network interface: ${JSON.stringify(task)}`);
  const body = new URLSearchParams({ Action: 'DescribeNetworkInterfaces', Version: '2016-11-15', 'NetworkInterfaceId.1': eni }).toString();
  const response = await adminCall(ecsUrl, 'ec2', body, { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' });
  const xml = await response.text();
  if (!response.ok) throw new Error(`DescribeNetworkInterfaces → ${response.status} ${xml}`);
  const address = xml.match(/<publicIp>([^<]+)<\/publicIp>/)?.[1] ?? xml.match(/<privateIpAddress>([^<]+)<\/privateIpAddress>/)?.[1];
  if (!address) throw new Error(`DescribeNetworkInterfaces names no address: ${xml}`);
  return address;
}

/** The container environment the local ECS endpoint handed a task. */
export async function taskEnvironment(ecsUrl, taskArn) {
  const task = await describeTask(ecsUrl, taskArn);
  const environment = task.overrides?.containerOverrides?.[0]?.environment;
  if (!environment) throw new Error(`the task has no container environment: ${JSON.stringify(task)}`);
  return Object.fromEntries(environment.map(({ name, value }) => [name, value]));
}

/** TURN REST credentials (coturn `--use-auth-secret`) for a page told to relay only. */
export function turnServers(turnPort, secret, user = 'e2e') {
  const username = `${Math.floor(Date.now() / 1000) + 3600}:${user}`;
  const credential = createHmac('sha1', secret).update(username).digest('base64');
  return [{ urls: [`turn:127.0.0.1:${turnPort}?transport=udp`], username, credential }];
}
