// A minimal WebSocket client for trying Switchboard's signaling by hand:
// each line typed (or piped) is sent as a frame; each frame received is printed.
//   node --experimental-websocket examples/wscat.mjs ws://127.0.0.1:3001   (Node 20; 22+ needs no flag)
import { createInterface } from 'node:readline';

const url = process.argv[2] ?? 'ws://127.0.0.1:3001';
const socket = new WebSocket(url);
const lines = createInterface({ input: process.stdin });
const queue = [];
let open = false;

socket.addEventListener('open', () => {
  open = true;
  console.error(`connected to ${url}`);
  queue.splice(0).forEach((line) => socket.send(line));
});
socket.addEventListener('message', (event) => console.log(event.data));
socket.addEventListener('close', () => process.exit(0));
socket.addEventListener('error', () => {
  console.error(`cannot connect to ${url}`);
  process.exit(1);
});
lines.on('line', (line) => {
  if (!line.trim()) return;
  if (open) socket.send(line);
  else queue.push(line);
});
// Piped input: stay a moment for the answers, then leave.
lines.on('close', () => setTimeout(() => socket.close(), Number(process.env.LINGER_MS ?? 1500)));
