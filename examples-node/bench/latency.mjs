// Small-call latency and pipelined throughput of kv.get, driven from Node over pipes.
//   /usr/bin/node examples-node/bench/latency.mjs [plugin.mjs] [calls]
// Sequential: one kv.get at a time, median and p99 round trip. Pipelined: 64 requests kept in
// flight until `calls` are answered. The driver's own cost is included; run it on
// bench/bare-loop.mjs to see the floor this driver allows.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const script = path.resolve(process.argv[2] ?? path.join(here, '..', 'kv.mjs'));
const CALLS = Number(process.argv[3] ?? 100000);
const child = spawn(process.execPath, [...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean), script], { env: { ...process.env, TETHER_MAGIC_COOKIE: '7c1e4b9a-tether-reference-plugin' }, stdio: ['pipe', 'pipe', 'inherit'] });

const frame = (o) => {
  const body = JSON.stringify(o);
  return `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
};
let buf = Buffer.alloc(0);
let onMessage = () => {};
child.stdout.on('data', (chunk) => {
  buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) break;
    const n = Number(buf.toString('latin1', 16, end));
    if (buf.length < end + 4 + n) break;
    const body = buf.toString('utf8', end + 4, end + 4 + n);
    buf = buf.subarray(end + 4 + n);
    onMessage(body);
  }
});
const next = () => new Promise((r) => (onMessage = (b) => r(b)));
let id = 0;
const get = () => frame({ jsonrpc: '2.0', id: ++id, method: 'kv.get', params: { key: 'k' } });

child.stdin.write(frame({ jsonrpc: '2.0', id: ++id, method: 'tether/initialize', params: { protocolVersions: [1], interfaces: { kv: [1, 2] }, host: { name: 'latency-bench', version: '0' }, capabilities: {}, maxFrameSize: 33554432 } }));
await next();
child.stdin.write(frame({ jsonrpc: '2.0', id: ++id, method: 'kv.put', params: { key: 'k', value: 'dg==' } }));
await next();

// Sequential.
const SEQ = Math.min(CALLS, 20000);
const rtt = [];
for (let i = 0; i < SEQ + 1000; i++) {
  const t0 = process.hrtime.bigint();
  child.stdin.write(get());
  const body = await next();
  if (i >= 1000) rtt.push(Number(process.hrtime.bigint() - t0) / 1000);
  if (!body.includes('"result"')) throw new Error(body);
}
rtt.sort((a, b) => a - b);

// Pipelined, 64 in flight.
let answered = 0;
let sent = 0;
const t0 = performance.now();
await new Promise((resolve) => {
  onMessage = () => {
    answered++;
    if (answered === CALLS) resolve();
    else if (sent < CALLS) {
      sent++;
      pendingWrites.push(get());
      if (pendingWrites.length === 1) setImmediate(flushWrites);
    }
  };
  const pendingWrites = [];
  const flushWrites = () => child.stdin.write(pendingWrites.splice(0).join(''));
  let first = '';
  for (; sent < 64; sent++) first += get();
  child.stdin.write(first);
});
const secs = (performance.now() - t0) / 1000;
child.stdin.end();
console.log(`${path.basename(script)} on node ${process.version}`);
console.log(`sequential kv.get: median ${rtt[rtt.length >> 1].toFixed(1)} us, p99 ${rtt[Math.floor(rtt.length * 0.99)].toFixed(1)} us (${SEQ} calls)`);
console.log(`pipelined kv.get, 64 in flight: ${Math.round(CALLS / secs)} calls/s (${CALLS} calls in ${secs.toFixed(2)} s)`);
