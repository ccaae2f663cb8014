// The counter example (counter.mjs): the broker callback of SPEC.md §6 and §9.3, concurrency
// while a callback is pending, and cancellation (§7).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Plugin, frame } from './harness.mjs';

const live = new Set();
async function started() {
  const p = new Plugin('counter');
  live.add(p);
  const r = await p.initialize({ interfaces: { counter: [1] } });
  assert.equal(r.result.interfaces.counter.version, 1);
  assert.deepEqual(Object.keys(r.result.interfaces.counter.methods).sort(), ['get', 'put']);
  return p;
}
after(() => live.forEach((p) => p.kill()));

const adder = (h = 'h1') => ({ $handle: h, interface: 'adder' });
const isInvoke = (m) => m.method === 'tether/invoke';
const invoke = (p, timeout) => p.waitFor(isInvoke, timeout, 'a tether/invoke');

async function finish(p) {
  const { response, code } = await p.shutdown();
  assert.deepEqual(response.result, {});
  assert.equal(code, 0);
  assert.deepEqual(p.strictErrors, []);
}

test('put calls sum on the adder handle and stores what the host answered', async () => {
  const p = await started();
  const put = p.request('counter.put', { key: 'a', value: 5, adder: adder() });
  const inv = await invoke(p);
  assert.deepEqual(inv.params, { handle: 'h1', method: 'sum', params: { a: 0, b: 5 } });
  assert.equal(typeof inv.id, 'number');
  p.respond(inv.id, { result: 5 });
  assert.deepEqual((await p.response(put)).result, {});
  const put2 = p.request('counter.put', { key: 'a', value: 3, adder: adder('h2') });
  const inv2 = await invoke(p);
  assert.deepEqual(inv2.params, { handle: 'h2', method: 'sum', params: { a: 5, b: 3 } });
  assert.notEqual(inv2.id, inv.id);
  p.respond(inv2.id, { result: 100 }); // whatever the host says
  await p.response(put2);
  assert.deepEqual((await p.call('counter.get', { key: 'a' })).result, { value: 100 });
  assert.deepEqual((await p.call('counter.get', { key: 'never' })).result, { value: 0 });
  await finish(p);
});

test('concurrent puts: the second sum arrives while the first is unanswered', async () => {
  const p = await started();
  const put1 = p.request('counter.put', { key: 'x', value: 1, adder: adder('h1') });
  const inv1 = await invoke(p);
  const put2 = p.request('counter.put', { key: 'y', value: 2, adder: adder('h2') });
  // The host holds the answer to the first sum until the second sum arrives.
  const inv2 = await invoke(p, 2000);
  assert.equal(inv2.params.handle, 'h2');
  p.respond(inv2.id, { result: 2 });
  assert.deepEqual((await p.response(put2)).result, {});
  p.respond(inv1.id, { result: 1 });
  assert.deepEqual((await p.response(put1)).result, {});
  assert.equal((await p.call('counter.get', { key: 'x' })).result.value, 1);
  assert.equal((await p.call('counter.get', { key: 'y' })).result.value, 2);
  await finish(p);
});

test('re-entrant: get and ping are answered while a sum is pending', async () => {
  const p = await started();
  const put0 = p.request('counter.put', { key: 'r', value: 7, adder: adder() });
  p.respond((await invoke(p)).id, { result: 7 });
  await p.response(put0);
  const put = p.request('counter.put', { key: 'r', value: 1, adder: adder() });
  const inv = await invoke(p);
  assert.deepEqual((await p.call('counter.get', { key: 'r' })).result, { value: 7 });
  assert.deepEqual((await p.call('tether/ping')).result, {});
  p.respond(inv.id, { result: 8 });
  await p.response(put);
  assert.equal((await p.call('counter.get', { key: 'r' })).result.value, 8);
  await finish(p);
});

test('cancellation: the plugin cancels its pending sum and answers the put', async () => {
  const p = await started();
  const put = p.request('counter.put', { key: 'c', value: 4, adder: adder() });
  const inv = await invoke(p);
  p.notify('$/cancelRequest', { id: put });
  const cancel = await p.waitFor((m) => m.method === '$/cancelRequest', 2000, 'the plugin\'s $/cancelRequest');
  assert.deepEqual(cancel.params, { id: inv.id });
  assert.equal(cancel.id, undefined);
  const answer = await p.response(put);
  assert.equal(answer.error.code, -32800);
  // A late answer to the cancelled sum is ignored; the value never changed.
  p.respond(inv.id, { result: 4 });
  assert.equal((await p.call('counter.get', { key: 'c' })).result.value, 0);
  // A cancel for an unknown or answered id is ignored.
  p.notify('$/cancelRequest', { id: put });
  p.notify('$/cancelRequest', { id: 'nope' });
  assert.deepEqual(await p.drain(), []);
  await finish(p);
});

test('64 puts in flight, each with a sum pending at the same time', async () => {
  const p = await started();
  const puts = [];
  for (let i = 0; i < 64; i++) puts.push(p.request('counter.put', { key: `k${i}`, value: i, adder: adder(`h${i}`) }));
  const invokes = [];
  for (let i = 0; i < 64; i++) invokes.push(await invoke(p));
  assert.equal(new Set(invokes.map((m) => m.id)).size, 64);
  for (const inv of invokes.reverse()) p.respond(inv.id, { result: inv.params.params.a + inv.params.params.b });
  for (const id of puts) assert.deepEqual((await p.response(id)).result, {});
  assert.equal((await p.call('counter.get', { key: 'k63' })).result.value, 63);
  await finish(p);
});

test('an error from the adder fails the put (-32603, the cause in data)', async () => {
  const p = await started();
  const put = p.request('counter.put', { key: 'e', value: 1, adder: adder() });
  const inv = await invoke(p);
  p.send({ jsonrpc: '2.0', id: inv.id, error: { code: -32003, message: 'unknown handle', data: { handle: 'h1' } } });
  // The host's error is not passed on as the put's own code: -32603 with the cause in data.
  const r = await p.response(put);
  assert.equal(r.error.code, -32603);
  assert.deepEqual(r.error.data.cause, { code: -32003, message: 'unknown handle', data: { handle: 'h1' } });
  // A non-integer answer is an internal error (-32603), and the session goes on.
  const put2 = p.request('counter.put', { key: 'e', value: 1, adder: adder() });
  p.respond((await invoke(p)).id, { result: 'three' });
  assert.equal((await p.response(put2)).error.code, -32603);
  assert.equal((await p.call('counter.get', { key: 'e' })).result.value, 0);
  await finish(p);
});

// SPEC.md §3.4: an error member must be an object with an integer code and a string message,
// and a response carries exactly one of result and error. A malformed answer to the plugin's
// sum is not read as the host's error: the sum fails locally, the malformed answer is not
// answered, and the session goes on.
test('a malformed answer to sum is not the host\'s error: the put fails locally, nothing is answered', async () => {
  const p = await started();
  const malformed = [
    '"error":[1,"m"]',
    '"error":[1,"m",null]',
    '"result":5,"error":{"code":1,"message":"m"}',
    '"error":{"code":"1","message":"m"}',
    '"error":{"code":1.5,"message":"m"}',
    '"error":{"code":true,"message":"m"}',
    '"error":{"message":"m"}',
    '"error":{"code":1,"message":7}',
    '"error":{"code":1}',
    '"error":null',
    '"error":"m"',
  ];
  for (const members of malformed) {
    const put = p.request('counter.put', { key: 'm', value: 1, adder: adder() });
    const inv = await invoke(p);
    p.sendBytes(frame(`{"jsonrpc":"2.0","id":${inv.id},${members}}`));
    const r = await p.response(put);
    assert.equal(r.error?.code, -32603, `${members}: ${JSON.stringify(r)}`);
    // Not the host's error passed on with its code 1: a local one naming the malformed answer.
    assert.notEqual(r.error.data?.cause?.code, 1, `${members}: ${JSON.stringify(r)}`);
    assert.match(r.error.message + JSON.stringify(r.error.data ?? null), /malformed|both a result and an error/, members);
  }
  // Nothing else was sent: no answer to a malformed response (§3.4.2), and the session goes on.
  assert.deepEqual((await p.call('counter.get', { key: 'm' })).result, { value: 0 });
  assert.deepEqual(p.queue, []);
  await finish(p);
});

test('bad handles are -32602', async () => {
  const p = await started();
  for (const h of [{ $handle: 'h1', interface: 'multiplier' }, { $handle: '', interface: 'adder' }, { $handle: 'h1' }, 'h1', { $handle: 'h1', interface: 'adder', extra: 1 }]) {
    const r = await p.call('counter.put', { key: 'b', value: 1, adder: h });
    assert.equal(r.error.code, -32602, JSON.stringify(h));
  }
  assert.equal((await p.call('counter.put', { key: 'b', value: 1.5, adder: adder() })).error.code, -32602);
  await finish(p);
});

test('shutdown waits for a put whose sum is pending; new requests get -32005', async () => {
  const p = await started();
  const put = p.request('counter.put', { key: 's', value: 2, adder: adder() });
  const inv = await invoke(p);
  const shut = p.request('tether/shutdown');
  assert.equal((await p.call('counter.get', { key: 's' })).error.code, -32005);
  assert.deepEqual(await p.drain(), []); // the shutdown is not answered yet
  p.respond(inv.id, { result: 2 });
  assert.deepEqual((await p.response(put)).result, {});
  assert.deepEqual((await p.response(shut)).result, {});
  p.closeStdin();
  assert.equal((await p.exit()).code, 0);
});

test('end of file with a sum pending: the sum is cancelled and the plugin exits 0', async () => {
  const p = await started();
  const put = p.request('counter.put', { key: 'z', value: 2, adder: adder() });
  const inv = await invoke(p);
  const closed = performance.now();
  p.closeStdin();
  const { code, at } = await p.exit(2000);
  assert.equal(code, 0);
  assert.ok(at - closed < 1000, `exited after ${at - closed} ms`);
  const rest = p.queue.splice(0);
  assert.ok(rest.some((m) => m.method === '$/cancelRequest' && m.params.id === inv.id), JSON.stringify(rest));
  assert.ok(rest.some((m) => m.id === put && m.error?.code === -32800), JSON.stringify(rest));
});
