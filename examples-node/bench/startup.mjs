// Start-up: time from spawn to the answered tether/initialize of kv.mjs, against the bare
// interpreter (`node -e 0`, spawn to exit) and two floors that any ES-module plugin pays.
// N runs of each (default 30), interleaved; min, p25, median and max.
//   /usr/bin/node examples-node/bench/startup.mjs [runs]
import { spawn } from 'node:child_process';
import path from 'node:path';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

const NODE = process.execPath;
const KV = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'kv.mjs');
const RUNS = Number(process.argv[2] ?? 30);
const env = { ...process.env, TETHER_MAGIC_COOKIE: '7c1e4b9a-tether-reference-plugin' };
const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tether/initialize', params: { protocolVersions: [1], interfaces: { kv: [1, 2] }, host: { name: 'startup-bench', version: '0' }, capabilities: {}, maxFrameSize: 33554432 } });
const initFrame = `Content-Length: ${Buffer.byteLength(init)}\r\n\r\n${init}`;

function bare() {
  return new Promise((resolve) => {
    const t0 = performance.now();
    spawn(NODE, ['-e', '0'], { stdio: 'ignore' }).on('exit', () => resolve(performance.now() - t0));
  });
}

function plugin() {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(NODE, [KV], { env, stdio: ['pipe', 'pipe', 'inherit'] });
    child.stdin.write(initFrame);
    let got = Buffer.alloc(0);
    child.stdout.on('data', (c) => {
      got = Buffer.concat([got, c]);
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      const n = Number(/Content-Length: (\d+)/.exec(got.toString('latin1', 0, end))[1]);
      if (got.length < end + 4 + n) return;
      const dt = performance.now() - t0;
      if (!got.toString('utf8', end + 4, end + 4 + n).includes('"protocolVersion":1')) reject(new Error('bad initialize answer'));
      child.stdin.end();
      child.on('exit', () => resolve(dt));
    });
  });
}

// Two floors for any plugin written as an ES module: an empty .mjs file, and one that only opens
// the stdio streams (Node loads its stream and net modules for the first one).
const dir = mkdtempSync(path.join(tmpdir(), 'tether-startup-'));
const EMPTY = path.join(dir, 'empty.mjs');
const STDIO = path.join(dir, 'stdio.mjs');
writeFileSync(EMPTY, '');
writeFileSync(STDIO, 'process.stdin; process.stdout;\n');
function runModule(file) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    spawn(NODE, [file], { stdio: ['ignore', 'pipe', 'inherit'] }).on('exit', () => resolve(performance.now() - t0));
  });
}

const q = (xs, p) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)];
await bare();
await plugin(); // warm the file cache
const b = [];
const e = [];
const o = [];
const k = [];
for (let i = 0; i < RUNS; i++) {
  b.push(await bare());
  e.push(await runModule(EMPTY));
  o.push(await runModule(STDIO));
  k.push(await plugin());
}
rmSync(dir, { recursive: true, force: true });
const f = (x) => x.toFixed(1).padStart(6);
const row = (label, xs) => console.log(`${label.padEnd(48)}${f(Math.min(...xs))} ${f(q(xs, 0.25))} ${f(q(xs, 0.5))} ${f(Math.max(...xs))}`);
console.log(`node ${process.version}, ${RUNS} runs each, interleaved (ms):`.padEnd(48) + '   min    p25 median    max');
row('bare `node -e 0` (spawn to exit)', b);
row('empty .mjs file (spawn to exit)', e);
row('.mjs opening stdin and stdout (spawn to exit)', o);
row('kv.mjs (spawn to answered tether/initialize)', k);
console.log(`kv.mjs - bare: median ${(q(k, 0.5) - q(b, 0.5)).toFixed(1)} ms, min ${(Math.min(...k) - Math.min(...b)).toFixed(1)} ms`);
