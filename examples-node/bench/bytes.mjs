// Bulk bytes through the Node SDK, driven from Node over pipes: a 16 MiB kv.put / kv.get with
// attachments and with base64 (SPEC.md §2.8), and 1 GiB through a stream each way with
// blob.produce (plugin to host) and blob.count (host to plugin, §9.5).
//   /usr/bin/node examples-node/bench/bytes.mjs [reps] [stream MiB]
// MB/s are 10^6 bytes per second of payload, the median of `reps` calls; the driver's own cost
// (framing, JSON.parse of the answers, hashing nothing) is included. The plugin's peak RSS
// (VmHWM) is printed after the streams.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const REPS = Number(process.argv[2] ?? 7);
const STREAM_MIB = Number(process.argv[3] ?? 1024);
const MiB = 1048576;

/** A plugin over pipes with a lean reader of writer-form frames (with attachments). */
function start(script) {
  const child = spawn(process.execPath, [path.join(here, '..', script)], {
    env: { ...process.env, TETHER_MAGIC_COOKIE: '7c1e4b9a-tether-reference-plugin' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const p = { child, onMessage: null, nextId: 1 };
  let chunks = [];
  let total = 0;
  let need = -1;
  let lengths = null;
  child.stdout.on('data', (c) => {
    chunks.push(c);
    total += c.length;
    for (;;) {
      if (need < 0) {
        const head = (chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)).subarray(0, Math.min(total, 4096)).toString('latin1');
        const m = /^Content-Length: (\d+)\r\n(?:Tether-Attachments: ([\d,]+)\r\n)?\r\n/.exec(head);
        if (!m) return;
        const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
        chunks = [all.subarray(m[0].length)];
        total -= m[0].length;
        need = Number(m[1]);
        lengths = m[2] ? m[2].split(',').map(Number) : null;
      }
      if (total < need) return;
      const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
      const frameBytes = all.subarray(0, need);
      chunks = [all.subarray(need)];
      total -= need;
      need = -1;
      const sum = lengths ? lengths.reduce((a, b) => a + b, 0) : 0;
      const msg = JSON.parse(frameBytes.toString('utf8', 0, frameBytes.length - sum));
      let at = frameBytes.length - sum;
      msg.$atts = lengths ? lengths.map((n) => frameBytes.subarray(at, (at += n))) : null;
      p.onMessage(msg);
    }
  });
  /** Writes a message; `atts` go out after the JSON in one writev, without a copy. */
  p.send = (msg, atts) => {
    const body = JSON.stringify(msg);
    const n = Buffer.byteLength(body);
    const stdin = child.stdin;
    if (!atts) return stdin.write(`Content-Length: ${n}\r\n\r\n${body}`);
    stdin.cork();
    stdin.write(`Content-Length: ${atts.reduce((a, b) => a + b.length, n)}\r\nTether-Attachments: ${atts.map((a) => a.length).join(',')}\r\n\r\n${body}`);
    let ok = true;
    for (const a of atts) ok = stdin.write(a);
    stdin.uncork();
    return ok;
  };
  p.call = (method, params, atts) =>
    new Promise((resolve) => {
      const id = p.nextId++;
      const prev = p.onMessage;
      p.onMessage = (m) => {
        if (m.id === id && !('method' in m)) {
          p.onMessage = prev;
          resolve(m);
        } else prev?.(m);
      };
      p.send({ jsonrpc: '2.0', id, method, params }, atts);
    });
  return p;
}

async function init(p, interfaces, capabilities) {
  const r = await p.call('tether/initialize', { protocolVersions: [1], interfaces, host: { name: 'bytes-bench', version: '0' }, capabilities, maxFrameSize: 64 * MiB });
  if (!r.result) throw new Error(JSON.stringify(r));
  return r.result;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mbps = (bytes, ms) => (bytes / 1e6 / (ms / 1000)).toFixed(0);

async function kv(attachments) {
  const p = start('kv.mjs');
  await init(p, { kv: [2] }, attachments ? { attachments: {} } : {});
  p.onMessage = () => {};
  const value = Buffer.alloc(16 * MiB, 0x5a);
  const b64 = value.toString('base64');
  const puts = [];
  const gets = [];
  for (let i = 0; i < REPS + 1; i++) {
    let t0 = performance.now();
    const put = attachments ? await p.call('kv.put', { key: 'k', value: { $bytes: 0 } }, [value]) : await p.call('kv.put', { key: 'k', value: b64 });
    if (!put.result) throw new Error(JSON.stringify(put));
    const t1 = performance.now();
    const got = await p.call('kv.get', { key: 'k' });
    const t2 = performance.now();
    const bytes = got.$atts ? got.$atts[0] : Buffer.from(got.result.value, 'base64');
    if (bytes.length !== value.length) throw new Error('short value');
    if (i > 0) {
      puts.push(t1 - t0);
      gets.push(t2 - t1);
    }
    t0 = t2;
  }
  p.child.stdin.end();
  return { put: median(puts), get: median(gets) };
}

function vmhwm(pid) {
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
}

async function streams(attachments) {
  const p = start('blob.mjs');
  const res = await init(p, { blob: [1] }, { streams: { initialCredit: MiB }, ...(attachments ? { attachments: {} } : {}) });
  const pluginWindow = res.capabilities.streams.initialCredit;
  const size = STREAM_MIB * MiB;

  // Plugin to host: blob.produce, granting back each half window as it arrives.
  let got = 0;
  let unacked = 0;
  let done;
  const ended = new Promise((r) => (done = r));
  let sid = -1;
  p.onMessage = (m) => {
    if (m.method === '$/stream.data' && m.params.stream === sid) {
      const n = m.$atts ? m.$atts[m.params.data.$bytes].length : Buffer.byteLength(m.params.data, 'base64');
      got += n;
      unacked += n;
      if (unacked >= MiB / 2) {
        p.send({ jsonrpc: '2.0', method: '$/stream.credit', params: { stream: sid, bytes: unacked } });
        unacked = 0;
      }
    } else if (m.method === '$/stream.end' && m.params.stream === sid) done();
    else if (m.method === '$/stream.abort') throw new Error(JSON.stringify(m));
  };
  let t0 = performance.now();
  const r = await p.call('blob.produce', { size });
  sid = r.result.data.$stream;
  await ended;
  const produceMs = performance.now() - t0;
  if (got !== size) throw new Error(`produced ${got} of ${size}`);

  // Host to plugin: blob.count, 1 MiB chunks within the credit the plugin grants.
  let credit = pluginWindow;
  let wake = null;
  p.onMessage = (m) => {
    if (m.method === '$/stream.credit' && m.params.stream === 1) {
      credit += m.params.bytes;
      wake?.();
    }
  };
  const chunk = Buffer.alloc(MiB, 0x33);
  const b64 = chunk.toString('base64');
  t0 = performance.now();
  const counted = p.call('blob.count', { data: { $stream: 1, mode: 'read' } });
  let sent = 0;
  while (sent < size) {
    while (credit === 0) await new Promise((r2) => (wake = r2));
    const n = Math.min(credit, chunk.length, size - sent);
    const piece = chunk.subarray(0, n);
    const ok = attachments
      ? p.send({ jsonrpc: '2.0', method: '$/stream.data', params: { stream: 1, data: { $bytes: 0 } } }, [piece])
      : p.send({ jsonrpc: '2.0', method: '$/stream.data', params: { stream: 1, data: n === chunk.length ? b64 : piece.toString('base64') } });
    credit -= n;
    sent += n;
    if (!ok) await new Promise((r2) => p.child.stdin.once('drain', r2));
  }
  p.send({ jsonrpc: '2.0', method: '$/stream.end', params: { stream: 1 } });
  const c = await counted;
  const countMs = performance.now() - t0;
  if (c.result?.size !== size) throw new Error(JSON.stringify(c));
  const hwm = vmhwm(p.child.pid);
  p.child.stdin.end();
  return { produceMs, countMs, hwm };
}

const size16 = 16 * MiB;
for (const attachments of [true, false]) {
  const k = await kv(attachments);
  console.log(`kv 16 MiB ${attachments ? 'attachments' : 'base64     '}: put ${k.put.toFixed(1)} ms (${mbps(size16, k.put)} MB/s), get ${k.get.toFixed(1)} ms (${mbps(size16, k.get)} MB/s)`);
}
for (const attachments of [true, false]) {
  const s = await streams(attachments);
  const bytes = STREAM_MIB * MiB;
  console.log(
    `stream ${STREAM_MIB} MiB ${attachments ? 'attachments' : 'base64     '}: blob.produce ${mbps(bytes, s.produceMs)} MB/s, blob.count ${mbps(bytes, s.countMs)} MB/s, plugin peak RSS ${s.hwm.toFixed(0)} MiB`,
  );
}
