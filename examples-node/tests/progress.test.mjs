// Progress (SPEC.md §14) and trace context (§15): the kv example's large put, the noisy
// fixture's handlers, and the plugin as a caller that asks the host for progress.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { Plugin } from './harness.mjs';

const live = new Set();
function start(script) {
  const p = new Plugin(script);
  live.add(p);
  return p;
}
after(() => live.forEach((p) => p.kill()));

const NOISY = new URL('./fixtures/noisy.mjs', import.meta.url).pathname;
const CAPS = { progress: {}, traceContext: {} };
const PARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const zeros = (n) => Buffer.alloc(n).toString('base64');

async function finish(p) {
  const { response, code } = await p.shutdown();
  assert.deepEqual(response.result, {});
  assert.equal(code, 0);
  assert.deepEqual(p.strictErrors, []);
}

describe('kv progress (SPEC §9.1, §14)', () => {
  test('a large put reports progress with the caller\'s token before the answer', async () => {
    const p = start('kv');
    const init = await p.initialize({ capabilities: CAPS });
    assert.deepEqual(init.result.capabilities, { progress: {}, traceContext: {} });
    const id = p.request('kv.put', { key: 'big', value: zeros(40000), _meta: { progressToken: 'tok' } });
    const frames = [await p.next(), await p.next(), await p.next(), await p.next()];
    assert.deepEqual(frames.slice(0, 3).map((f) => f.params), [
      { token: 'tok', done: 16384, total: 40000 },
      { token: 'tok', done: 32768, total: 40000 },
      { token: 'tok', done: 40000, total: 40000 },
    ]);
    assert.ok(frames.slice(0, 3).every((f) => f.method === '$/progress'));
    assert.deepEqual(frames[3], { jsonrpc: '2.0', id, result: {} });
    // _meta is not a parameter: the value stored is the value sent.
    const got = await p.call('kv.get', { key: 'big' });
    assert.equal(got.result.value, zeros(40000));
    await finish(p);
  });

  test('no token, a small value, or a host without the capability: no progress', async () => {
    for (const caps of [CAPS, {}]) {
      const p = start('kv');
      const init = await p.initialize({ capabilities: caps });
      assert.deepEqual(init.result.capabilities.progress, caps.progress);
      const token = caps.progress ? undefined : { progressToken: 1 };
      const id = p.request('kv.put', { key: 'big', value: zeros(40000), ...(token ? { _meta: token } : {}) });
      assert.deepEqual(await p.next(), { jsonrpc: '2.0', id, result: {} });
      const small = p.request('kv.put', { key: 's', value: 'AA==', _meta: { progressToken: 2 } });
      assert.deepEqual(await p.next(), { jsonrpc: '2.0', id: small, result: {} });
      assert.deepEqual(await p.drain(100), []);
      await finish(p);
    }
  });

  test('a traced put\'s log names the trace and a new span', async () => {
    const p = start('kv');
    await p.initialize({ capabilities: CAPS, logLevel: 'debug' });
    const id = p.request('kv.put', { key: 't', value: 'AA==', _meta: { traceparent: PARENT } });
    const log = await p.next();
    assert.equal((await p.next()).id, id);
    assert.equal(log.params.fields.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.match(log.params.fields.span_id, /^[0-9a-f]{16}$/);
    assert.notEqual(log.params.fields.span_id, '00f067aa0ba902b7');
    p.request('kv.put', { key: 'u', value: 'AA==' });
    const untraced = await p.next();
    await p.next();
    assert.equal(untraced.params.fields.trace_id, undefined);
    await finish(p);
  });
});

describe('the handler context (SPEC §14, §15)', () => {
  test('done never goes back nor past total; nothing without a token', async () => {
    const p = start(NOISY);
    await p.initialize({ interfaces: { noisy: [1] }, capabilities: CAPS });
    const id = p.request('noisy.steps', { n: 4, total: 10, _meta: { progressToken: 5 } });
    const frames = [];
    for (let i = 0; i < 5; i++) frames.push(await p.next());
    assert.deepEqual(frames.slice(0, 4).map((f) => [f.params.token, f.params.done, f.params.total]), [[5, 1, 10], [5, 3, 10], [5, 3, 10], [5, 10, 10]]);
    assert.equal(frames[4].id, id);
    assert.deepEqual(frames[4].result, { sent: [true, true, true, true], wanted: true });
    const plain = await p.call('noisy.steps', { n: 2, total: 3 });
    assert.deepEqual(plain.result, { sent: [false, false], wanted: false });
    // _meta never reaches a handler's params.
    const echoed = await p.call('noisy.echo', { a: 1, _meta: { progressToken: 9 } });
    assert.deepEqual(echoed.result, { a: 1 });
    await finish(p);
  });

  test('the handler sees a child of the caller\'s span; a malformed traceparent is ignored', async () => {
    const p = start(NOISY);
    await p.initialize({ interfaces: { noisy: [1] }, capabilities: CAPS });
    const got = (await p.call('noisy.traced', { _meta: { traceparent: PARENT } })).result;
    assert.equal(got.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(got.parentSpanId, '00f067aa0ba902b7');
    assert.match(got.spanId, /^[0-9a-f]{16}$/);
    assert.equal(got.traceparent, PARENT);
    for (const bad of ['00-zz-00f067aa0ba902b7-01', PARENT.toUpperCase(), PARENT + '-x', `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`]) {
      const r = (await p.call('noisy.traced', { _meta: { traceparent: bad } })).result;
      assert.equal(r.traceId, null, bad);
    }
    await finish(p);
  });

  test('the plugin asks the host for progress and receives it', async () => {
    const p = start(NOISY);
    await p.initialize({ interfaces: { noisy: [1] }, capabilities: CAPS });
    const id = p.request('noisy.callProgress', { method: 'host.long' });
    const call = await p.waitFor((m) => m.method === 'host.long');
    const token = call.params._meta.progressToken;
    assert.equal(token, call.id);
    for (let done = 1; done <= 3; done++) p.notify('$/progress', { token, done, total: 3 });
    p.notify('$/progress', { token: token + 100, done: 1 }); // not ours: ignored
    p.respond(call.id, { ok: true });
    const got = (await p.response(id)).result;
    assert.deepEqual(got.result, { ok: true });
    assert.deepEqual(got.progress.map((x) => x.done), [1, 2, 3]);
    await finish(p);
  });
});
