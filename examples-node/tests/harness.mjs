// Test harness: plays the host against a plugin run as a child process over pipes.
// It has its own framing code (it does not import tether.mjs, which would redirect the test
// process's stdout) and reads the plugin's stdout in strict mode (SPEC.md §2.7).

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..');
export const NODE = process.execPath;
export const COOKIE = { TETHER_MAGIC_COOKIE: '7c1e4b9a-tether-reference-plugin' };
export const PLUGINS = { kv: path.join(ROOT, 'kv.mjs'), counter: path.join(ROOT, 'counter.mjs') };

/** Encodes a message (object, or a raw body string/Buffer) as a frame in writer form. */
export function frame(body) {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  return Buffer.concat([Buffer.from(`Content-Length: ${b.length}\r\n\r\n`), b]);
}

/** A strict reader of writer-form frames: anything else is a failure, recorded in `errors`. */
export class StrictReader {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.chunks = [];
    this.total = 0;
    this.need = -1;
    this.errors = [];
  }
  push(chunk) {
    this.chunks.push(chunk);
    this.total += chunk.length;
    for (;;) {
      if (this.need < 0) {
        if (this.total === 0) return;
        const head = this.peek(Math.min(this.total, 64));
        const m = /^Content-Length: (0|[1-9][0-9]*)\r\n\r\n/.exec(head.toString('latin1'));
        if (!m) {
          const prefix = 'Content-Length: ';
          const h = head.toString('latin1');
          const ok = h.length < 64 && (prefix.startsWith(h) || (h.startsWith(prefix) && /^Content-Length: [0-9]*(\r(\n(\r)?)?)?$/.test(h)));
          if (!ok) {
            this.errors.push(`not a frame in writer form: ${JSON.stringify(h)}`);
            this.chunks = [];
            this.total = 0;
          }
          return;
        }
        this.take(m[0].length);
        this.need = Number(m[1]);
      }
      if (this.total < this.need) return;
      const body = this.take(this.need);
      this.need = -1;
      this.onFrame(body);
    }
  }
  peek(n) {
    return this.chunks.length === 1 || this.chunks[0].length >= n ? this.chunks[0].subarray(0, n) : Buffer.concat(this.chunks).subarray(0, n);
  }
  take(n) {
    if (this.chunks[0].length === n) {
      this.total -= n;
      return this.chunks.shift();
    }
    if (this.chunks[0].length > n) {
      const out = this.chunks[0].subarray(0, n);
      this.chunks[0] = this.chunks[0].subarray(n);
      this.total -= n;
      return out;
    }
    const all = Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.total -= n;
    return out;
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A plugin child process with host-side helpers. */
export class Plugin {
  /**
   * @param {string} script path of the plugin script, or 'kv' / 'counter'
   * @param {{env?: object, cookie?: boolean, args?: string[]}} [opts]
   */
  constructor(script, opts = {}) {
    const file = PLUGINS[script] ?? script;
    const env = { ...process.env, ...(opts.cookie === false ? {} : COOKIE), ...(opts.env ?? {}) };
    if (opts.cookie === false) delete env.TETHER_MAGIC_COOKIE;
    this.child = spawn(NODE, [file, ...(opts.args ?? [])], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.spawnedAt = performance.now();
    this.queue = [];
    this.waiters = [];
    this.stdoutBytes = 0;
    this.stderr = '';
    this.nextId = 1;
    this.reader = new StrictReader((body) => this.onBody(body));
    this.child.stdout.on('data', (c) => {
      this.stdoutBytes += c.length;
      this.reader.push(c);
    });
    this.child.stderr.on('data', (c) => (this.stderr += c.toString()));
    this.child.stdin.on('error', () => {});
    // Resolved on 'close', not 'exit': 'exit' can come before the last stdout/stderr data was
    // read, and callers inspect the queue and stderr right after it. `at` is still the exit time.
    this.exited = new Promise((resolve) => {
      let exit;
      this.child.on('exit', (code, signal) => (exit = { code, signal, at: performance.now() }));
      this.child.on('close', (code, signal) => resolve(exit ?? { code, signal, at: performance.now() }));
    });
  }

  onBody(body) {
    let msg;
    try {
      msg = JSON.parse(body.toString('utf8'));
    } catch (err) {
      this.reader.errors.push(`plugin wrote a body that is not JSON: ${err.message}`);
      return;
    }
    Object.defineProperty(msg, '$raw', { value: body, enumerable: false });
    this.queue.push(msg);
    for (const w of [...this.waiters]) w();
  }

  get strictErrors() {
    return this.reader.errors;
  }

  /** Writes a message object, or a raw body (string/Buffer) framed, or raw bytes with {raw}. */
  send(msg) {
    this.child.stdin.write(frame(msg));
  }
  sendBytes(bytes) {
    this.child.stdin.write(bytes);
  }

  /** Sends a request; returns its id. */
  request(method, params = {}, id = this.nextId++) {
    this.send({ jsonrpc: '2.0', id, method, params });
    return id;
  }
  notify(method, params = {}) {
    this.send({ jsonrpc: '2.0', method, params });
  }
  respond(id, result) {
    this.send({ jsonrpc: '2.0', id, result });
  }

  /** Removes and returns the first queued message matching `pred`, waiting up to `timeout`. */
  waitFor(pred, timeout = 5000, what = 'a message') {
    return new Promise((resolve, reject) => {
      const tryTake = () => {
        const i = this.queue.findIndex(pred);
        if (i < 0) return false;
        const [m] = this.queue.splice(i, 1);
        cleanup();
        resolve(m);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${what}; queue: ${JSON.stringify(this.queue).slice(0, 500)}; stderr: ${this.stderr.slice(-1000)}`));
      }, timeout);
      const waiter = () => tryTake();
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
      };
      this.waiters.push(waiter);
      tryTake();
    });
  }
  /** The next message in arrival order. */
  next(timeout) {
    return this.waitFor(() => true, timeout, 'the next message');
  }
  response(id, timeout) {
    return this.waitFor((m) => m.id === id && !('method' in m), timeout, `the response to ${JSON.stringify(id)}`);
  }
  /** Sends a request and waits for its response. */
  async call(method, params = {}, timeout) {
    return this.response(this.request(method, params), timeout);
  }
  async initialize(overrides = {}) {
    const params = {
      protocolVersions: [1],
      interfaces: { kv: [1, 2], counter: [1] },
      host: { name: 'node-test-host', version: '0.0.0' },
      capabilities: {},
      maxFrameSize: 33554432,
      logLevel: 'info',
      ...overrides,
    };
    return this.call('tether/initialize', params);
  }
  /** Waits a little and returns whatever is queued (to check that nothing came). */
  async drain(ms = 100) {
    await sleep(ms);
    return this.queue.splice(0);
  }
  closeStdin() {
    this.child.stdin.end();
  }
  /** Resolves with {code, signal} or rejects after `timeout` ms (and kills the child). */
  async exit(timeout = 2000) {
    let timer;
    const t = new Promise((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`plugin did not exit within ${timeout} ms; stderr: ${this.stderr.slice(-1000)}`));
      }, timeout);
    });
    try {
      return await Promise.race([this.exited, t]);
    } finally {
      clearTimeout(timer);
    }
  }
  /** The polite end: shutdown, close stdin, expect exit 0. */
  async shutdown() {
    const r = await this.call('tether/shutdown');
    this.closeStdin();
    const e = await this.exit();
    return { response: r, ...e };
  }
  kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
