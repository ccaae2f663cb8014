// The fds transport (SPEC.md §13): frames on two inherited descriptors (here FIFOs, which are
// pipes with a name: Node.js cannot make an anonymous pipe for a child's descriptor 3 or 4, its
// 'pipe' is a socket pair), stdin, stdout and stderr left to the plugin.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { COOKIE, NODE, PLUGINS, HERE, StrictReader, frame, sleep } from './harness.mjs';

const live = new Set();
after(() => live.forEach((p) => p.kill()));

/** A plugin whose frames travel on fds 3 and 4; its stdin is a pipe kept open, its stdout and
 * stderr are collected apart. */
function startFds(script, transport = 'fds:3,4') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tether-fds-'));
  const toPlugin = path.join(dir, 'to-plugin');
  const fromPlugin = path.join(dir, 'from-plugin');
  execFileSync('mkfifo', [toPlugin, fromPlugin]);
  const { O_RDWR, O_WRONLY, O_RDONLY, O_NONBLOCK } = fs.constants;
  // Read-write opens do not wait for the other side; the plugin reopens its ends one way.
  const childIn = fs.openSync(toPlugin, O_RDWR);
  const childOut = fs.openSync(fromPlugin, O_RDWR);
  const hostWrite = fs.openSync(toPlugin, O_WRONLY);
  const hostRead = fs.openSync(fromPlugin, O_RDONLY | O_NONBLOCK);
  const env = { ...process.env, ...COOKIE, TETHER_TRANSPORT: transport };
  const child = spawn(NODE, [PLUGINS[script] ?? script], { env, stdio: ['pipe', 'pipe', 'pipe', childIn, childOut] });
  fs.closeSync(childIn);
  fs.closeSync(childOut);
  const p = {
    child, dir, fifos: [toPlugin, fromPlugin], stdout: '', stderr: '', queue: [], waiters: [], nextId: 1,
    writeOpen: true,
    kill() {
      child.kill('SIGKILL');
      this.closeWrite();
      input.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    },
    closeWrite() {
      if (this.writeOpen) fs.closeSync(hostWrite);
      this.writeOpen = false;
    },
    send(msg) {
      fs.writeSync(hostWrite, frame(msg));
    },
    async call(method, params = {}) {
      const id = this.nextId++;
      this.send({ jsonrpc: '2.0', id, method, params });
      for (const deadline = Date.now() + 10000; Date.now() < deadline; await sleep(10)) {
        const i = this.queue.findIndex((m) => m.id === id);
        if (i >= 0) return this.queue.splice(i, 1)[0];
      }
      throw new Error(`no answer to ${method}; stderr: ${this.stderr}`);
    },
  };
  const reader = new StrictReader((body) => p.queue.push(JSON.parse(body.toString('utf8'))));
  p.reader = reader;
  const input = new net.Socket({ fd: hostRead, readable: true, writable: false });
  input.on('data', (c) => reader.push(c));
  input.on('error', () => {});
  child.stdout.on('data', (c) => (p.stdout += c));
  child.stderr.on('data', (c) => (p.stderr += c));
  child.stdin.on('error', () => {});
  p.exited = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  live.add(p);
  return p;
}

async function initialize(p, iface) {
  const answer = await p.call('tether/initialize', {
    protocolVersions: [1], host: { name: 'test', version: '0' }, interfaces: { [iface]: [1] }, maxFrameSize: 33554432,
  });
  assert.ok(answer.result, JSON.stringify(answer));
}

test('kv serves over fds 3 and 4; the end of stdin is not the end, the end of fd 3 is (exit 0)', async () => {
  const p = startFds('kv');
  await initialize(p, 'kv');
  p.child.stdin.end();
  assert.deepEqual((await p.call('kv.put', { key: 'k', value: 'dg==' })).result, {});
  assert.deepEqual((await p.call('kv.get', { key: 'k' })).result, { value: 'dg==' });
  assert.equal(p.child.exitCode, null);
  // The frame descriptors are close-on-exec: the inherited ones were reopened and closed.
  const fds = fs.readdirSync(`/proc/${p.child.pid}/fd`);
  const frameFds = fds.filter((fd) => p.fifos.includes(fs.readlinkSync(`/proc/${p.child.pid}/fd/${fd}`)));
  assert.equal(frameFds.length, 2, `the FIFOs among ${fds}`);
  for (const fd of frameFds) {
    const flags = fs.readFileSync(`/proc/${p.child.pid}/fdinfo/${fd}`, 'utf8').match(/^flags:\s*([0-7]+)/m)[1];
    assert.ok(parseInt(flags, 8) & 0o2000000, `descriptor ${fd} is inherited by children (flags ${flags})`);
  }
  p.closeWrite();
  assert.equal(await p.exited, 0, p.stderr);
  assert.equal(p.stdout, '');
  assert.deepEqual(p.reader.errors, []);
});

test('console.log and process.stdout.write reach stdout, not the frames', async () => {
  const p = startFds(path.join(HERE, 'fixtures', 'noisy.mjs'));
  await initialize(p, 'noisy');
  assert.deepEqual((await p.call('noisy.shout', { x: 1 })).result, { shouted: true });
  assert.deepEqual((await p.call('tether/ping')).result, {});
  p.closeWrite();
  assert.equal(await p.exited, 0, p.stderr);
  for (const line of ['top-level console.log before serve()', 'top-level process.stdout.write',
    'console.log inside a handler', 'process.stdout.write inside a handler']) {
    assert.ok(p.stdout.includes(line), `${line} not in ${JSON.stringify(p.stdout)}`);
  }
  assert.deepEqual(p.reader.errors, []);
});

test('an unknown transport exits 1 with a sentence, without reading', async () => {
  for (const value of ['socket', 'fds:3', 'fds:3,3', 'fds:1,4', 'fds:03,4']) {
    const p = startFds('kv', value);
    assert.equal(await p.exited, 1, value);
    assert.ok(p.stderr.includes(`unknown transport "${value}" in TETHER_TRANSPORT`), p.stderr);
    assert.equal(p.stdout, '');
    p.kill();
  }
});

test('a descriptor the host did not pass exits 1', async () => {
  const p = startFds('kv', 'fds:3,900');
  assert.equal(await p.exited, 1);
  assert.ok(p.stderr.includes('descriptor 900'), p.stderr);
  p.kill();
});
