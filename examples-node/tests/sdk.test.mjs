// SDK behaviour that the examples do not exercise, through tests/fixtures/noisy.mjs: stdout
// protection, handler failures, big results, handler cancellation, the global logger, and
// handles served by the plugin.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Plugin, HERE, ROOT, NODE, COOKIE } from './harness.mjs';

const NOISY = path.join(HERE, 'fixtures', 'noisy.mjs');
const live = new Set();
async function started(init = {}) {
  const p = new Plugin(NOISY);
  live.add(p);
  const r = await p.initialize({ interfaces: { noisy: [1] }, ...init });
  assert.equal(r.result.interfaces.noisy.version, 1);
  return p;
}
after(() => live.forEach((p) => p.kill()));

async function finish(p) {
  const { response, code } = await p.shutdown();
  assert.deepEqual(response.result, {});
  assert.equal(code, 0);
  assert.deepEqual(p.strictErrors, []);
}

test('console.log and process.stdout.write go to stderr, not into the frame stream', async () => {
  const p = await started();
  for (let i = 0; i < 20; i++) assert.deepEqual((await p.call('noisy.shout', { i })).result, { shouted: true });
  await finish(p);
  assert.deepEqual(p.strictErrors, []);
  assert.match(p.stderr, /top-level console.log before serve\(\)/);
  assert.match(p.stderr, /top-level process.stdout.write/);
  assert.match(p.stderr, /console.log inside a handler/);
  assert.match(p.stderr, /console.info inside a handler/);
  assert.match(p.stderr, /console.debug inside a handler/);
  assert.match(p.stderr, /process.stdout.write inside a handler/);
});

test('a handler that throws is -32603 and serving goes on; a non-object result too', async () => {
  const p = await started();
  const r = await p.call('noisy.boom');
  assert.equal(r.error.code, -32603);
  assert.match(r.error.message, /kaboom/);
  assert.equal((await p.call('noisy.bad')).error.code, -32603);
  assert.deepEqual((await p.call('noisy.echo', { a: [1, { b: 'c' }], n: null })).result, { a: [1, { b: 'c' }], n: null });
  assert.match(p.stderr, /kaboom/);
  await finish(p);
});

test('large results are written completely and in order', async () => {
  const p = await started();
  const sizes = [5_000_000, 10, 3_000_000, 0, 16 * 1024 * 1024];
  const ids = sizes.map((n) => p.request('noisy.big', { n }));
  for (const [i, id] of ids.entries()) {
    const r = await p.response(id, 20000);
    assert.equal(Buffer.from(r.result.value, 'base64').length, sizes[i]);
  }
  await finish(p);
});

/** Waits until `text` shows on the plugin's stderr (read as it comes); generous bound. */
async function stderrShows(p, text, timeout = 10000) {
  const end = performance.now() + timeout;
  while (!p.stderr.includes(text)) {
    if (performance.now() > end) assert.fail(`${JSON.stringify(text)} not on stderr: ${p.stderr.slice(-1000)}`);
    await new Promise((resolve) => {
      const t = setTimeout(resolve, end - performance.now() + 1);
      p.child.stderr.once('data', () => resolve(clearTimeout(t)));
    });
  }
}

/** An answer above the maximum: -32004 with the size of the body that was not sent (§2.2). */
function assertTooLarge(r, max) {
  assert.equal(r.error?.code, -32004, JSON.stringify(r).slice(0, 300));
  assert.equal(r.error.data.max, max);
  assert.ok(r.error.data.size > max && r.error.data.size < max + 1000, `size ${r.error.data.size}`);
}

test('an answer above the session maximum becomes -32004 (frame too large), not a long frame', async () => {
  const max = 1048576;
  const p = await started({ maxFrameSize: max });
  // base64 of 786420 bytes is 1048560 bytes: with the envelope, just over the maximum.
  assertTooLarge(await p.call('noisy.big', { n: 786420 }), max);
  await stderrShows(p, 'sent error -32004');
  assert.equal((await p.call('noisy.bigError', { n: 10 })).error.code, 4243);
  assertTooLarge(await p.call('noisy.bigError', { n: max }), max);
  assert.deepEqual((await p.call('tether/ping')).result, {}); // the session goes on
  await finish(p);
});

test('a $/log above the session maximum is dropped and reported on stderr', async () => {
  const p = await started({ maxFrameSize: 1048576 });
  assert.deepEqual((await p.call('noisy.bigLog', { n: 1048576 })).result, {});
  const logs = p.queue.filter((m) => m.method === '$/log').map((m) => m.params.message);
  assert.deepEqual(logs, ['after the big one']);
  await stderrShows(p, 'dropped a $/log of');
  await finish(p);
});

test('cancelling a handler aborts its signal and answers -32800 at once', async () => {
  const p = await started();
  const id = p.request('noisy.slow', { ms: 60000 });
  const quick = p.request('noisy.slow', { ms: 1 });
  assert.deepEqual((await p.response(quick)).result, { slept: 1 });
  p.notify('$/cancelRequest', { id });
  assert.equal((await p.response(id, 1000)).error.code, -32800);
  await finish(p);
  assert.match(p.stderr, new RegExp(`slow ${id} aborted`));
});

test('end of file aborts running handlers and exits 0 promptly', async () => {
  const p = await started();
  const id = p.request('noisy.slow', { ms: 60000 });
  await p.drain(50);
  const closed = performance.now();
  p.closeStdin();
  const { code, at } = await p.exit(2000);
  assert.equal(code, 0);
  assert.ok(at - closed < 1000);
  assert.equal(p.queue.find((m) => m.id === id)?.error.code, -32800);
});

test('log levels: only messages at or above the session level are sent', async () => {
  const p = await started({ logLevel: 'warn' });
  await p.call('noisy.levels');
  const logs = (await p.drain()).filter((m) => m.method === '$/log').map((m) => m.params.level);
  assert.deepEqual(logs, ['warn', 'error']);
  p.notify('$/setLogLevel', { level: 'trace' });
  await p.call('noisy.levels');
  const all = (await p.drain()).filter((m) => m.method === '$/log');
  assert.deepEqual(all.map((m) => m.params.level), ['trace', 'debug', 'info', 'warn', 'error']);
  assert.deepEqual(all[2].params.fields, { n: 1 });
  p.notify('$/setLogLevel', { level: 'bogus' }); // ignored
  await p.call('noisy.levels');
  assert.equal((await p.drain()).filter((m) => m.method === '$/log').length, 5);
  await finish(p);
});

test('a handle served by the plugin: scoped, retained, released, then -32003', async () => {
  const p = await started();
  const lend = p.request('noisy.lend');
  const req = await p.waitFor((m) => m.method === 'host.useDoubler');
  const h = req.params.doubler;
  assert.equal(h.interface, 'doubler');
  assert.equal(typeof h.$handle, 'string');
  // While the plugin's request is pending, the host may invoke the handle.
  const r = await p.call('tether/invoke', { handle: h.$handle, method: 'twice', params: { x: 21 } });
  assert.deepEqual(r.result, { y: 42 });
  assert.equal((await p.call('tether/invoke', { handle: h.$handle, method: 'nosuch', params: {} })).error.code, -32601);
  assert.deepEqual((await p.call('tether/retain', { handle: h.$handle })).result, {});
  p.respond(req.id, { used: true });
  assert.deepEqual((await p.response(lend)).result, { used: true });
  // Retained: still alive after the request completed.
  assert.deepEqual((await p.call('tether/invoke', { handle: h.$handle, method: 'twice', params: { x: 1 } })).result, { y: 2 });
  p.notify('$/release', { handle: h.$handle });
  const gone = await p.call('tether/invoke', { handle: h.$handle, method: 'twice', params: { x: 1 } });
  assert.equal(gone.error.code, -32003);
  assert.deepEqual(gone.error.data, { handle: h.$handle });
  assert.equal((await p.call('tether/retain', { handle: 'nosuch' })).error.code, -32003);
  await finish(p);
});

test('a scoped handle expires when the request that carried it is answered', async () => {
  const p = await started();
  const lend = p.request('noisy.lend');
  const req = await p.waitFor((m) => m.method === 'host.useDoubler');
  p.respond(req.id, {});
  await p.response(lend);
  const r = await p.call('tether/invoke', { handle: req.params.doubler.$handle, method: 'twice', params: { x: 1 } });
  assert.equal(r.error.code, -32003);
  await finish(p);
});

test('schemas with a local $ref: bytes are checked and decoded; declared schemas carry $schema', async () => {
  const p = new Plugin(NOISY);
  live.add(p);
  const init = await p.initialize({ interfaces: { noisy: [1] } });
  assert.equal(init.result.interfaces.noisy.methods.refd.params.$schema, 'https://json-schema.org/draft/2020-12/schema');
  assert.deepEqual((await p.call('noisy.refd', { value: 'AAEC' })).result, { isBuffer: true, length: 3 });
  assert.equal((await p.call('noisy.refd', { value: 'AAE' })).error.code, -32602);
  assert.equal((await p.call('noisy.refd', { value: 3 })).error.code, -32602);
  assert.equal((await p.call('noisy.refd', {})).error.code, -32602);
  await finish(p);
});

test('a bad serve() configuration: exit 1 with a message, before reading stdin', () => {
  const url = new URL(`file://${path.join(ROOT, 'tether.mjs')}`).href;
  const configs = [
    `{ name: 'x', version: '1', interfaces: [] }`,
    `{ name: 'x', version: '1', interfaces: [{ name: 'kv', versions: { 1: { get: { params: { type: 'object' }, result: { type: 'object' } } } }, handlers: {} }] }`,
    `{ name: 'x', version: '1', interfaces: [{ name: 'kv', versions: { 1: { get: { params: { type: 'string' }, result: { type: 'object' } } } }, handlers: { get() {} } }] }`,
    `{ name: 'x', version: '1', interfaces: [{ name: 'bad.name', versions: { 1: {} }, handlers: {} }] }`,
  ];
  for (const config of configs) {
    const r = spawnSync(NODE, ['--input-type=module', '-e', `import { serve } from '${url}'; serve(${config});`], {
      env: { ...process.env, ...COOKIE },
      input: '',
      timeout: 5000,
    });
    assert.equal(r.status, 1, config);
    assert.match(r.stderr.toString(), /cannot start/, config);
    assert.equal(r.stdout.length, 0);
  }
});
