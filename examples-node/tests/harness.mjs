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
export const PLUGINS = {
  kv: path.join(ROOT, 'kv.mjs'),
  counter: path.join(ROOT, 'counter.mjs'),
  blob: path.join(ROOT, 'blob.mjs'),
};

/** Encodes a message (object, or a raw body string/Buffer) as a frame in writer form. */
export function frame(body) {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  return Buffer.concat([Buffer.from(`Content-Length: ${b.length}\r\n\r\n`), b]);
}

/** A frame with attachments (SPEC.md §2.8): the JSON, then each buffer of `atts` in order. */
export function attachmentFrame(body, atts) {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const total = atts.reduce((n, a) => n + a.length, b.length);
  const head = `Content-Length: ${total}\r\nTether-Attachments: ${atts.map((a) => a.length).join(',')}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head), b, ...atts]);
}

const WRITER_HEAD = /^Content-Length: (0|[1-9][0-9]*)\r\n(?:Tether-Attachments: ((?:0|[1-9][0-9]*)(?:,(?:0|[1-9][0-9]*))*)\r\n)?\r\n/;

/**
 * A strict reader of writer-form frames (SPEC.md §2.7): anything else is a failure, recorded in
 * `errors`. A `Tether-Attachments` header right after `Content-Length` is accepted only while
 * `attachmentsAllowed()` says both sides announced them; `onFrame(json, atts)` gets the JSON and
 * the attachments apart.
 */
export class StrictReader {
  constructor(onFrame, attachmentsAllowed = () => false) {
    this.onFrame = onFrame;
    this.attachmentsAllowed = attachmentsAllowed;
    this.chunks = [];
    this.total = 0;
    this.need = -1;
    this.lengths = null;
    this.errors = [];
  }
  push(chunk) {
    this.chunks.push(chunk);
    this.total += chunk.length;
    for (;;) {
      if (this.need < 0) {
        if (this.total === 0) return;
        const h = this.peek(Math.min(this.total, 4200)).toString('latin1');
        const m = WRITER_HEAD.exec(h);
        if (!m) {
          const end = h.indexOf('\r\n\r\n');
          const prefix = 'Content-Length: ';
          const partial = end < 0 && h.length < 4200 && (h.length < prefix.length ? prefix.startsWith(h) : h.startsWith(prefix));
          if (!partial) {
            this.errors.push(`not a frame in writer form: ${JSON.stringify(h.slice(0, 200))}`);
            this.chunks = [];
            this.total = 0;
          }
          return;
        }
        if (m[2] !== undefined && !this.attachmentsAllowed()) {
          this.errors.push(`an attachment frame before attachments were negotiated: ${JSON.stringify(m[0])}`);
        }
        this.take(m[0].length);
        this.need = Number(m[1]);
        this.lengths = m[2] === undefined ? null : m[2].split(',').map(Number);
        if (this.lengths && this.lengths.reduce((a, b) => a + b, 0) > this.need) {
          this.errors.push(`attachments longer than the frame: ${JSON.stringify(m[0])}`);
        }
      }
      if (this.total < this.need) return;
      const frameBytes = this.take(this.need);
      this.need = -1;
      if (!this.lengths) {
        this.onFrame(frameBytes, null);
        continue;
      }
      const sum = this.lengths.reduce((a, b) => a + b, 0);
      let at = frameBytes.length - sum;
      const atts = this.lengths.map((n) => frameBytes.subarray(at, (at += n)));
      this.onFrame(frameBytes.subarray(0, frameBytes.length - sum), atts);
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

/** The bytes of a bytes value of `msg`: a base64 string or `{"$bytes": i}` (one of its attachments). */
export function bytesOf(msg, v) {
  if (typeof v === 'string') return Buffer.from(v, 'base64');
  if (v && typeof v === 'object' && Number.isInteger(v.$bytes) && msg.$atts && v.$bytes < msg.$atts.length) return msg.$atts[v.$bytes];
  throw new Error(`not a bytes value: ${JSON.stringify(v)} (attachments: ${msg.$atts?.length ?? 'none'})`);
}

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
    /** Whether both sides announced attachments (set when the initialize answer is read). */
    this.attachments = false;
    this.initIds = new Set();
    this.hostCaps = {};
    this.reader = new StrictReader(
      (body, atts) => this.onBody(body, atts),
      () => this.attachments,
    );
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

  onBody(body, atts) {
    let msg;
    try {
      msg = JSON.parse(body.toString('utf8'));
    } catch (err) {
      this.reader.errors.push(`plugin wrote a body that is not JSON: ${err.message}`);
      return;
    }
    Object.defineProperty(msg, '$raw', { value: body, enumerable: false });
    Object.defineProperty(msg, '$atts', { value: atts, enumerable: false });
    if (this.initIds.has(msg.id) && msg.result && !('method' in msg)) {
      this.attachments = this.hostCaps.attachments !== undefined && msg.result.capabilities?.attachments !== undefined;
    }
    if (this.onMessage?.(msg)) return;
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
  /** Writes a message with attachments (`{"$bytes": i}` in `msg` refers to `atts[i]`). */
  sendWithAttachments(msg, atts) {
    this.child.stdin.write(attachmentFrame(msg, atts));
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
    this.hostCaps = params.capabilities ?? {};
    const id = this.nextId++;
    this.initIds.add(id);
    return this.response(this.request('tether/initialize', params, id));
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
