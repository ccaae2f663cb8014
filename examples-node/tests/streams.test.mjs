// Streams (SPEC.md §12) through blob.mjs (§9.5) and tests/fixtures/streamy.mjs: both modes,
// credit at both ends, aborts (early return, cancel, errors, the host's abort, the end of the
// session), invalid stream objects, a stream nobody reads, and the plugin's memory while it
// produces far more than a slow host reads.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { HERE, Plugin, bytesOf, sleep } from './harness.mjs';

const STREAMY = path.join(HERE, 'fixtures', 'streamy.mjs');
const live = new Set();
after(() => live.forEach((p) => p.kill()));
const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const pattern = (from, n) => Buffer.from(Array.from({ length: n }, (_, i) => (from + i) % 251));

/**
 * Plays the host's side of streams over a Plugin: it takes every `$/stream.*` message out of the
 * queue, keeps the data of the plugin's streams (checking each chunk against the credit it
 * granted), and sends the host's streams within the credit the plugin granted.
 */
class StreamHost {
  constructor(script, { credit = 1048576, attachments = true, env } = {}) {
    this.p = new Plugin(script, { env });
    live.add(this.p);
    this.credit = credit;
    this.attachments = attachments;
    /** id -> {data: Buffer[], bytes, left, grants: number[], end, abort, violations: string[]} */
    this.streams = new Map();
    this.waiters = new Set();
    this.p.onMessage = (m) => this.onMessage(m);
  }

  async init(interfaces) {
    const caps = { streams: { initialCredit: this.credit }, ...(this.attachments ? { attachments: {} } : {}) };
    const r = await this.p.initialize({ interfaces, capabilities: caps });
    assert.ok(r.result, JSON.stringify(r));
    this.pluginCredit = r.result.capabilities.streams?.initialCredit ?? 1048576;
    return r;
  }

  stream(id) {
    let st = this.streams.get(id);
    if (!st) {
      // Ours (odd) start with the plugin's credit, the plugin's (even) with ours.
      st = { data: [], bytes: 0, left: id % 2 ? this.pluginCredit : this.credit, grants: [], end: false, abort: null, violations: [], chunks: [] };
      this.streams.set(id, st);
    }
    return st;
  }

  onMessage(m) {
    if (typeof m.method !== 'string' || !m.method.startsWith('$/stream.') || 'id' in m) return false;
    const st = this.stream(m.params.stream);
    switch (m.method) {
      case '$/stream.data': {
        const b = Buffer.from(bytesOf(m, m.params.data));
        if (this.attachments && typeof m.params.data === 'string') st.violations.push('a chunk in base64 although attachments were negotiated');
        if (b.length > st.left) st.violations.push(`a chunk of ${b.length} bytes with ${st.left} bytes of credit`);
        if (st.end || st.abort) st.violations.push('data after the end');
        st.left -= b.length;
        st.data.push(b);
        st.chunks.push(b.length);
        st.bytes += b.length;
        break;
      }
      case '$/stream.end':
        st.end = true;
        break;
      case '$/stream.abort':
        st.abort = m.params.error;
        break;
      case '$/stream.credit':
        st.left += m.params.bytes;
        st.grants.push(m.params.bytes);
        break;
    }
    for (const w of [...this.waiters]) w();
    return true;
  }

  /** Resolves once `pred()` holds (checked on every stream message). */
  until(pred, what, timeout = 20000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!pred()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; streams: ${JSON.stringify([...this.streams].map(([k, v]) => [k, { ...v, data: undefined }]))}; stderr: ${this.p.stderr.slice(-800)}`));
      }, timeout);
      this.waiters.add(check);
      check();
    });
  }

  /** Grants the plugin `bytes` more on its stream `id`. */
  grant(id, bytes) {
    this.stream(id).left += bytes;
    this.p.notify('$/stream.credit', { stream: id, bytes });
  }

  /** Sends one chunk of our stream `id` (an attachment or base64). */
  chunk(id, bytes) {
    const st = this.stream(id);
    st.left -= bytes.length;
    if (this.attachments) this.p.sendWithAttachments({ jsonrpc: '2.0', method: '$/stream.data', params: { stream: id, data: { $bytes: 0 } } }, [bytes]);
    else this.p.notify('$/stream.data', { stream: id, data: bytes.toString('base64') });
  }

  /** Sends all of `data` on our stream `id` within the plugin's credit, then ends it. */
  async produce(id, data, size = 65536) {
    let off = 0;
    while (off < data.length) {
      const st = this.stream(id);
      await this.until(() => st.left > 0 || st.abort, `credit on stream ${id}`);
      if (st.abort) return;
      const n = Math.min(size, st.left, data.length - off);
      this.chunk(id, data.subarray(off, off + n));
      off += n;
    }
    this.p.notify('$/stream.end', { stream: id });
  }

  /** Reads the plugin's stream `id` to its end, granting `grant` bytes per `grant` consumed. */
  async consume(id, { grant = this.credit } = {}) {
    const st = this.stream(id);
    let granted = 0;
    for (;;) {
      await this.until(() => st.end || st.abort || st.bytes - granted >= grant, `data on stream ${id}`);
      if (st.bytes - granted >= grant) {
        granted += grant;
        this.grant(id, grant);
        continue;
      }
      assert.equal(st.abort, null, `stream ${id} was aborted: ${JSON.stringify(st.abort)}`);
      assert.deepEqual(st.violations, []);
      return Buffer.concat(st.data);
    }
  }

  async finish() {
    const { response, code } = await this.p.shutdown();
    assert.deepEqual(response.result, {});
    assert.equal(code, 0);
    assert.deepEqual(this.p.strictErrors, []);
    for (const [id, st] of this.streams) assert.deepEqual(st.violations, [], `stream ${id}`);
  }
}

const BLOB = { blob: [1] };
const STREAMY_IF = { streamy: [1] };

describe('blob (SPEC §9.5)', () => {
  for (const attachments of [true, false]) {
    test(`upload, download and count, 3 MiB through a 1 MiB window (${attachments ? 'attachments' : 'base64'})`, async () => {
      const h = new StreamHost('blob', { attachments });
      const init = await h.init(BLOB);
      assert.deepEqual(init.result.capabilities.streams, { initialCredit: 1048576 });
      const data = randomBytes(3 * 1048576 + 5);
      const up = h.p.request('blob.upload', { name: 'x', data: { $stream: 1, mode: 'read' } });
      await h.produce(1, data);
      const r = await h.p.response(up);
      assert.deepEqual(r.result, { size: data.length, sha256: sha256(data) });
      // The plugin granted credit as its handler read, never more than it had read.
      const grants = h.stream(1).grants;
      assert.ok(grants.length >= 2, JSON.stringify(grants));
      assert.ok(grants.reduce((a, b) => a + b, 0) <= data.length);

      const down = await h.p.call('blob.download', { name: 'x' });
      assert.equal(down.result.size, data.length);
      const id = down.result.data.$stream;
      assert.equal(id % 2, 0);
      assert.deepEqual(down.result.data, { $stream: id, mode: 'read' });
      assert.ok((await h.consume(id, { grant: 1048576 })).equals(data));
      assert.ok(Math.max(...h.stream(id).chunks) <= 1048576);

      const cnt = h.p.request('blob.count', { data: { $stream: 3, mode: 'read' } });
      await h.produce(3, data.subarray(0, 1000));
      assert.deepEqual((await h.p.response(cnt)).result, { size: 1000, sha256: sha256(data.subarray(0, 1000)) });

      const missing = await h.p.call('blob.download', { name: 'nope' });
      assert.equal(missing.error.code, 1002);
      assert.deepEqual(missing.error.data, { name: 'nope' });
      await h.finish();
    });
  }

  test('produce never exceeds a small window: every chunk is checked against the credit', async () => {
    const h = new StreamHost('blob', { credit: 1000 });
    await h.init(BLOB);
    const r = await h.p.call('blob.produce', { size: 50000 });
    const id = r.result.data.$stream;
    const got = await h.consume(id, { grant: 700 });
    assert.ok(got.equals(pattern(0, 50000)));
    assert.ok(h.stream(id).chunks.length >= 50, `${h.stream(id).chunks.length} chunks`);
    await h.finish();
  });

  test('with an initial credit of 0 nothing is sent before the first grant', async () => {
    const h = new StreamHost('blob', { credit: 0 });
    await h.init(BLOB);
    const r = await h.p.call('blob.produce', { size: 10 });
    const id = r.result.data.$stream;
    assert.deepEqual((await h.p.call('tether/ping')).result, {});
    assert.equal(h.stream(id).bytes, 0);
    h.grant(id, 4);
    await h.until(() => h.stream(id).bytes === 4, 'the first 4 bytes');
    h.grant(id, 6);
    await h.until(() => h.stream(id).end, 'the end');
    assert.deepEqual(Buffer.concat(h.stream(id).data), pattern(0, 10));
    await h.finish();
  });

  test('a host that sends more than it was granted gets the stream aborted with -32006', async () => {
    const h = new StreamHost('blob');
    await h.init(BLOB);
    const up = h.p.request('blob.upload', { name: 'greedy', data: { $stream: 1, mode: 'read' } });
    h.chunk(1, Buffer.alloc(1048576 + 1));
    const r = await h.p.response(up);
    assert.equal(r.error.code, -32006);
    assert.equal(r.error.data.stream, 1);
    await h.until(() => h.stream(1).abort, 'the abort');
    assert.equal(h.stream(1).abort.code, -32006);
    assert.equal((await h.p.call('blob.download', { name: 'greedy' })).error.code, 1002);
    await h.finish();
  });

  test("the host's abort fails the upload with -32006 and stores nothing", async () => {
    const h = new StreamHost('blob');
    await h.init(BLOB);
    const up = h.p.request('blob.upload', { name: 'half', data: { $stream: 1, mode: 'read' } });
    h.chunk(1, Buffer.from('some'));
    h.p.notify('$/stream.abort', { stream: 1, error: { code: -32800, message: 'the user gave up' } });
    const r = await h.p.response(up);
    assert.equal(r.error.code, -32006);
    assert.equal(r.error.data.stream, 1);
    assert.deepEqual(r.error.data.cause, { code: -32800, message: 'the user gave up' });
    assert.equal((await h.p.call('blob.download', { name: 'half' })).error.code, 1002);
    await h.finish();
  });
});

describe('aborts (SPEC §12.4)', () => {
  test('a handler that returns before the end of its readable aborts it with -32006', async () => {
    const h = new StreamHost(STREAMY);
    await h.init(STREAMY_IF);
    const id = h.p.request('streamy.peek', { data: { $stream: 1, mode: 'read' } });
    h.chunk(1, Buffer.from('abc'));
    assert.deepEqual((await h.p.response(id)).result, { first: 3 });
    await h.until(() => h.stream(1).abort, 'the abort');
    assert.equal(h.stream(1).abort.code, -32006);
    // Later messages about the stream are ignored.
    h.chunk(1, Buffer.from('late'));
    h.p.notify('$/stream.end', { stream: 1 });
    assert.deepEqual((await h.p.call('tether/ping')).result, {});
    await h.finish();
  });

  test('cancelling the request aborts its stream with -32800 at both ends, without a notification', async () => {
    const h = new StreamHost(STREAMY);
    await h.init(STREAMY_IF);
    const id = h.p.request('streamy.hold', { data: { $stream: 1, mode: 'read' } });
    h.chunk(1, Buffer.from('unread'));
    assert.deepEqual((await h.p.call('tether/ping')).result, {});
    h.p.notify('$/cancelRequest', { id });
    assert.equal((await h.p.response(id)).error.code, -32800);
    // The host knows from its cancel (SPEC §12.4.3); data it sent meanwhile is ignored.
    h.chunk(1, Buffer.from('crossing the cancel'));
    h.p.notify('$/stream.end', { stream: 1 });
    assert.deepEqual((await h.p.call('tether/ping')).result, {});
    assert.equal(h.stream(1).abort, null);
    await h.finish();
    assert.match(h.p.stderr, new RegExp(`hold ${id} read after cancel failed: -32800`));
  });

  test('a handler that fails while writing stops its writable; the error answer says so', async () => {
    const h = new StreamHost(STREAMY);
    await h.init(STREAMY_IF);
    const id = h.p.request('streamy.fill', { out: { $stream: 1, mode: 'write' }, size: 1000000, failAt: 300000 });
    const r = await h.p.response(id);
    assert.equal(r.error.code, -32603);
    assert.match(r.error.message, /failing on purpose/);
    // Nothing more about stream 1: no end, no abort (SPEC §12.4.3), no data beyond the failure.
    h.grant(1, 1048576);
    assert.deepEqual((await h.p.call('tether/ping')).result, {});
    const st = h.stream(1);
    assert.equal(st.abort, null);
    assert.equal(st.end, false);
    assert.equal(st.bytes, 300000);
    await h.finish();
  });

  test("the host's abort of a writable fails the handler's next write", async () => {
    const h = new StreamHost(STREAMY, { credit: 1000 });
    await h.init(STREAMY_IF);
    const id = h.p.request('streamy.fill', { out: { $stream: 1, mode: 'write' }, size: 5000 });
    await h.until(() => h.stream(1).bytes === 1000, 'the first window');
    h.p.notify('$/stream.abort', { stream: 1, error: { code: -32006, message: 'enough' } });
    const r = await h.p.response(id);
    assert.equal(r.error.code, -32006);
    assert.equal(r.error.data.stream, 1);
    await h.finish();
  });

  test('a writable the handler never touched is aborted when it returns', async () => {
    const h = new StreamHost(STREAMY);
    await h.init(STREAMY_IF);
    assert.deepEqual((await h.p.call('streamy.ignoreOut', { out: { $stream: 1, mode: 'write' } })).result, {});
    await h.until(() => h.stream(1).abort, 'the abort');
    assert.equal(h.stream(1).abort.code, -32006);
    await h.finish();
  });

  test("a source that fails aborts the plugin's stream with its reason", async () => {
    const h = new StreamHost(STREAMY);
    await h.init(STREAMY_IF);
    const r = await h.p.call('streamy.broken');
    const id = r.result.data.$stream;
    await h.until(() => h.stream(id).abort, 'the abort');
    assert.equal(Buffer.concat(h.stream(id).data).toString(), 'first');
    assert.equal(h.stream(id).abort.code, -32006);
    assert.match(h.stream(id).abort.message, /the source broke/);
    await h.finish();
  });

  test('the end of the session fails open streams and the plugin exits 0 promptly', async () => {
    const h = new StreamHost(STREAMY, { credit: 0 });
    await h.init(STREAMY_IF);
    const slurp = h.p.request('streamy.slurp', { data: { $stream: 1, mode: 'read' } });
    h.chunk(1, Buffer.from('partial'));
    // A stream the plugin produces, stuck for credit.
    const fill = h.p.request('streamy.fill', { out: { $stream: 3, mode: 'write' }, size: 10 });
    assert.deepEqual((await h.p.call('tether/ping')).result, {});
    const closed = performance.now();
    h.p.closeStdin();
    const { code, at } = await h.p.exit(5000);
    assert.equal(code, 0);
    assert.ok(at - closed < 3000);
    assert.match(h.p.stderr, new RegExp(`slurp ${slurp} failed after 7 bytes: -32006 .*session ended`));
    assert.equal(h.p.queue.find((m) => m.id === fill)?.error.code, -32800);
  });
});

describe('streams and the rest of the connection (SPEC §12.5)', () => {
  test('a stream nobody reads, full to its window, does not stall ping or another stream', async () => {
    const h = new StreamHost(STREAMY);
    await h.init(STREAMY_IF);
    const hold = h.p.request('streamy.hold', { data: { $stream: 1, mode: 'read' } });
    for (let i = 0; i < 4; i++) h.chunk(1, Buffer.alloc(h.pluginCredit / 4));
    assert.equal(h.stream(1).left, 0);
    assert.deepEqual((await h.p.call('tether/ping', {}, 10000)).result, {});
    const slurp = h.p.request('streamy.slurp', { data: { $stream: 3, mode: 'read' } });
    const other = randomBytes(3 * 1048576);
    await h.produce(3, other);
    assert.deepEqual((await h.p.response(slurp)).result, { size: other.length });
    h.p.notify('$/cancelRequest', { id: hold });
    assert.equal((await h.p.response(hold)).error.code, -32800);
    await h.finish();
  });

  test('the host may answer the plugin with a stream; the plugin may send streams in its requests', async () => {
    const h = new StreamHost(STREAMY);
    await h.init(STREAMY_IF);
    const fetch = h.p.request('streamy.fetch');
    const give = await h.p.waitFor((m) => m.method === 'host.give');
    h.p.sendWithAttachments({ jsonrpc: '2.0', id: give.id, result: { value: { $bytes: 0 }, data: { $stream: 1, mode: 'read' } } }, [Buffer.from('v')]);
    await h.produce(1, Buffer.from('streamed by the host'), 5);
    assert.deepEqual((await h.p.response(fetch)).result, { isBuffer: true, text: 'v', streamed: 'streamed by the host' });

    const offer = h.p.request('streamy.offer', { text: 'from the plugin' });
    const take = await h.p.waitFor((m) => m.method === 'host.take');
    const { data, back } = take.params;
    assert.equal(data.mode, 'read');
    assert.equal(back.mode, 'write');
    assert.equal(data.$stream % 2, 0);
    assert.equal(back.$stream % 2, 0);
    assert.notEqual(data.$stream, back.$stream);
    assert.equal((await h.consume(data.$stream)).toString(), 'from the plugin');
    await h.produce(back.$stream, Buffer.from('and back'));
    h.p.respond(take.id, { ok: true });
    assert.deepEqual((await h.p.response(offer)).result, { answer: { ok: true }, received: 'and back' });
    await h.finish();
  });

  test('invalid stream objects are -32602; the new ids among them are aborted; a live stream is untouched', async () => {
    const h = new StreamHost('blob');
    await h.init(BLOB);
    const bad = async (data, want = -32602) => {
      const r = await h.p.call('blob.count', { data });
      assert.equal(r.error?.code, want, JSON.stringify(r));
      return r;
    };
    await bad({ $stream: 2, mode: 'read' }); // even: the plugin's ids
    await bad({ $stream: 0, mode: 'read' });
    await bad({ $stream: 1.5, mode: 'read' });
    await bad({ $stream: 5, mode: 'sideways' });
    await bad({ $stream: 7, mode: 'write' }); // the schema says read
    const live = h.p.request('blob.count', { data: { $stream: 9, mode: 'read' } });
    await bad({ $stream: 9, mode: 'read' }); // not new
    const wrong = await h.p.call('blob.nosuch', { data: { $stream: 11, mode: 'read' } });
    assert.equal(wrong.error.code, -32601);
    await h.until(() => [5, 7, 11].every((id) => h.stream(id).abort), 'aborts of 5, 7 and 11');
    assert.equal(h.stream(9).abort, null);
    assert.equal(h.stream(2).abort, null);
    await h.produce(9, Buffer.from('still fine'));
    assert.deepEqual((await h.p.response(live)).result, { size: 10, sha256: sha256(Buffer.from('still fine')) });
    // Messages about streams nobody knows are ignored.
    h.p.notify('$/stream.data', { stream: 99, data: 'AAAA' });
    h.p.notify('$/stream.end', { stream: 99 });
    h.p.notify('$/stream.credit', { stream: 98, bytes: 5 });
    h.p.notify('$/stream.abort', { stream: 97, error: { code: 1, message: 'x' } });
    assert.deepEqual((await h.p.call('tether/ping')).result, {});
    await h.finish();
  });

  test('without the streams capability a stream in params is -32602 and blob cannot answer one', async () => {
    const p = new Plugin('blob');
    live.add(p);
    const init = await p.initialize({ interfaces: BLOB, capabilities: { attachments: {} } });
    assert.deepEqual(init.result.capabilities, { attachments: {} });
    assert.equal((await p.call('blob.count', { data: { $stream: 1, mode: 'read' } })).error.code, -32602);
    const r = await p.call('blob.produce', { size: 1 });
    assert.equal(r.error.code, -32603);
    assert.match(r.error.message, /streams/);
    const { code } = await p.shutdown();
    assert.equal(code, 0);
    assert.deepEqual(p.strictErrors, []);
  });
});

/** The peak and current resident set of a process, in bytes (Linux /proc). */
function memoryOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024;
  return { hwm: kb('VmHWM'), rss: kb('VmRSS') };
}

describe('memory (issue 10)', () => {
  test('256 MiB produced for a host that pauses after every window: the plugin stays within its window plus a constant', async (t) => {
    const h = new StreamHost('blob', { credit: 1048576 });
    await h.init(BLOB);
    const pid = h.p.child.pid;
    const before = memoryOf(pid);
    const size = 256 * 1048576;
    const r = await h.p.call('blob.produce', { size });
    const id = r.result.data.$stream;
    // The host reads a window, then pauses 100 times as long as that window took to arrive
    // (at most 20 ms) before granting the next one, and drops the data after checking each
    // chunk against the credit: the plugin could produce far faster than this host reads.
    const st = h.stream(id);
    let granted = 0;
    let peak = before.rss;
    const started = performance.now();
    while (!st.end) {
      const t0 = performance.now();
      await h.until(() => st.end || st.abort || st.bytes - granted >= 1048576, 'a window', 60000);
      assert.equal(st.abort, null);
      st.data = [];
      if (st.end) break;
      const took = performance.now() - t0;
      peak = Math.max(peak, memoryOf(pid).rss);
      await sleep(Math.min(took * 100, 20));
      granted += 1048576;
      h.grant(id, 1048576);
    }
    const seconds = (performance.now() - started) / 1000;
    assert.equal(st.bytes, size);
    assert.deepEqual(st.violations, []);
    const after = memoryOf(pid);
    t.diagnostic(`start RSS ${(before.rss / 1048576).toFixed(1)} MiB; peak RSS ${(Math.max(after.hwm, peak) / 1048576).toFixed(1)} MiB; ${(size / 1048576 / seconds).toFixed(0)} MiB/s`);
    // Window 1 MiB; the constant covers a 1 MiB chunk in flight, its frame and V8's heap growth.
    assert.ok(after.hwm < before.rss + 48 * 1048576, `peak RSS ${after.hwm} against ${before.rss} at start`);
    await h.finish();
  });

  test('256 MiB sent by a host far faster than the handler reads: the plugin buffers at most its window', async (t) => {
    const h = new StreamHost(STREAMY);
    await h.init(STREAMY_IF);
    const pid = h.p.child.pid;
    const before = memoryOf(pid);
    // The handler waits 5 ms after each chunk; the host sends 256 KiB chunks as fast as credit allows.
    const id = h.p.request('streamy.slurp', { data: { $stream: 1, mode: 'read' }, delayMs: 5 });
    const chunk = Buffer.alloc(262144, 9);
    const size = 256 * 1048576;
    const st = h.stream(1);
    const started = performance.now();
    for (let sent = 0; sent < size; ) {
      await h.until(() => st.left > 0, 'credit', 60000);
      const n = Math.min(st.left, chunk.length, size - sent);
      h.chunk(1, chunk.subarray(0, n));
      sent += n;
    }
    h.p.notify('$/stream.end', { stream: 1 });
    assert.deepEqual((await h.p.response(id, 120000)).result, { size });
    const seconds = (performance.now() - started) / 1000;
    const after = memoryOf(pid);
    t.diagnostic(`start RSS ${(before.rss / 1048576).toFixed(1)} MiB; peak RSS ${(after.hwm / 1048576).toFixed(1)} MiB; ${(size / 1048576 / seconds).toFixed(0)} MiB/s`);
    assert.ok(st.grants.reduce((a, b) => a + b, 0) + h.pluginCredit >= size);
    // Every frame read is a new buffer (the handler may keep its chunks), so the constant here
    // is V8's slack before it collects external memory, not the data: buffering the stream
    // would take 256 MiB.
    assert.ok(after.hwm < before.rss + 96 * 1048576, `peak RSS ${after.hwm} against ${before.rss} at start`);
    await h.finish();
  });
});
