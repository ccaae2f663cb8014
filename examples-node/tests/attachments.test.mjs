// Attachments (SPEC.md §2.8): the frame reader on every split of attachment frames, its bounds
// and malformed headers (tests/fixtures/frame-events.mjs runs the reader), then kv.mjs and
// tests/fixtures/streamy.mjs with and without the capability negotiated.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { HERE, NODE, Plugin, attachmentFrame, bytesOf, frame } from './harness.mjs';

const STREAMY = path.join(HERE, 'fixtures', 'streamy.mjs');
const live = new Set();
after(() => live.forEach((p) => p.kill()));
function start(script = 'kv') {
  const p = new Plugin(script);
  live.add(p);
  return p;
}
const WITH = { attachments: {} };

async function finish(p) {
  const { response, code } = await p.shutdown();
  assert.deepEqual(response.result, {});
  assert.equal(code, 0);
  assert.deepEqual(p.strictErrors, []);
}

/** The FrameReader's events for `input`, for each way of feeding it (see the fixture). */
function readerEvents(input, { attachments = true, max = 1048576, split = 'whole' } = {}) {
  const r = spawnSync(NODE, [path.join(HERE, 'fixtures', 'frame-events.mjs')], {
    input: JSON.stringify({ input: input.toString('base64'), attachments, max, split }),
    timeout: 60000,
    maxBuffer: 256 * 1048576,
  });
  assert.equal(r.status, 0, r.stderr.toString());
  return JSON.parse(r.stdout.toString());
}

const raw = (head, body) => Buffer.concat([Buffer.from(head), Buffer.from(body, 'latin1')]);

describe('frame reader (SPEC §2.8.1, §2.8.5)', () => {
  const stream = Buffer.concat([
    attachmentFrame('{"a":{"$bytes":0}}', [Buffer.from('xyz\r\n\r\nContent-Length: 5\r\n\r\n')]),
    frame('{"plain":1}'),
    attachmentFrame('{"b":[{"$bytes":0},{"$bytes":1},{"$bytes":2}]}', [Buffer.alloc(0), Buffer.from([0, 255, 13, 10]), Buffer.from('end')]),
  ]);
  const expected = [
    { frame: '{"a":{"$bytes":0}}', atts: ['xyz\r\n\r\nContent-Length: 5\r\n\r\n'] },
    { frame: '{"plain":1}' },
    { frame: '{"b":[{"$bytes":0},{"$bytes":1},{"$bytes":2}]}', atts: ['', '\x00\xff\r\n', 'end'] },
    { end: null },
  ];

  test('attachment frames split at every boundary, and one byte at a time, read the same', () => {
    assert.deepEqual(readerEvents(stream), [expected]);
    const every = readerEvents(stream, { split: 'every' });
    assert.equal(every.length, stream.length - 1);
    every.forEach((events, i) => assert.deepEqual(events, expected, `split at byte ${i + 1}`));
    assert.deepEqual(readerEvents(stream, { split: 'bytes' }), [expected]);
  });

  test('without negotiation the header is ignored: the whole Content-Length is the body', () => {
    const [events] = readerEvents(stream, { attachments: false });
    assert.equal(events.length, 4);
    assert.equal(events[0].frame, '{"a":{"$bytes":0}}xyz\r\n\r\nContent-Length: 5\r\n\r\n');
    assert.equal(events[0].atts, undefined);
    assert.deepEqual(events[1], { frame: '{"plain":1}' });
  });

  test('headers in another order and with spaces are read (SPEC §2.3)', () => {
    const input = raw('tether-attachments:  2,1 \r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\ncontent-length: 5\r\n\r\n', '{}abc');
    assert.deepEqual(readerEvents(input), [[{ frame: '{}', atts: ['ab', 'c'] }, { end: null }]]);
  });

  test('malformed Tether-Attachments headers: the frame is skipped whole and reported, the next one is read', () => {
    const next = frame('{"next":true}');
    for (const value of ['01', '1,,2', '-1', '1, 2', '', 'x', '1,', '99999999999999999999']) {
      const input = Buffer.concat([raw(`Content-Length: 4\r\nTether-Attachments: ${value}\r\n\r\n`, '{}ab'), next]);
      const [events] = readerEvents(input);
      assert.equal(events.length, 3, `${value}: ${JSON.stringify(events)}`);
      assert.ok(events[0].unreadable, `${value}: ${JSON.stringify(events)}`);
      assert.deepEqual(events[1], { frame: '{"next":true}' });
    }
    const twice = Buffer.concat([raw('Content-Length: 3\r\nTether-Attachments: 1\r\nTether-Attachments: 1\r\n\r\n', '{}a'), next]);
    assert.match(readerEvents(twice)[0][0].unreadable, /twice/);
  });

  test('bounds: attachments longer than Content-Length, and frames above the maximum, allocate nothing', () => {
    const next = frame('{"next":true}');
    // Lengths that add up past T (each alone fits): unreadable, T bytes skipped.
    const over = Buffer.concat([raw('Content-Length: 6\r\nTether-Attachments: 3,3,3\r\n\r\n', '{}abcd'), next]);
    const [e1] = readerEvents(over);
    assert.match(e1[0].unreadable, /add up to more than the frame's 6 bytes/);
    assert.deepEqual(e1[1], { frame: '{"next":true}' });
    // An attachment length of 2^50 in a small frame: refused before anything is reserved.
    const huge = Buffer.concat([raw(`Content-Length: 2\r\nTether-Attachments: ${2 ** 50}\r\n\r\n`, '{}'), next]);
    const [e2] = readerEvents(huge);
    assert.ok(e2[0].unreadable);
    assert.deepEqual(e2[1], { frame: '{"next":true}' });
    // T above the maximum: skipped in bounded pieces as any oversized frame (SPEC §2.6).
    const big = Buffer.concat([raw('Content-Length: 2000\r\nTether-Attachments: 1000\r\n\r\n', 'x'.repeat(2000)), next]);
    const [e3] = readerEvents(big, { max: 1024 });
    assert.deepEqual(e3, [{ oversized: 2000 }, { frame: '{"next":true}' }, { end: null }]);
  });
});

describe('kv with attachments negotiated', () => {
  test('the capability is announced back, the initialize answer is plain, values travel as attachments', async () => {
    const p = start();
    const init = await p.initialize({ capabilities: WITH });
    assert.deepEqual(init.result.capabilities, { attachments: {} });
    assert.equal(init.$atts, null);
    const value = Buffer.from([0, 1, 2, 255, 13, 10]);
    p.sendWithAttachments({ jsonrpc: '2.0', id: 10, method: 'kv.put', params: { key: 'k', value: { $bytes: 0 } } }, [value]);
    assert.deepEqual((await p.response(10)).result, {});
    const got = await p.call('kv.get', { key: 'k' });
    assert.deepEqual(got.result, { value: { $bytes: 0 } });
    assert.deepEqual(bytesOf(got, got.result.value), value);
    // base64 stays valid after negotiation (SPEC §2.8.3).
    await p.call('kv.put', { key: 'b', value: Buffer.from('base64 still works').toString('base64') });
    const b = await p.call('kv.get', { key: 'b' });
    assert.equal(bytesOf(b, b.result.value).toString(), 'base64 still works');
    // An empty value is an attachment of length 0.
    await p.call('kv.put', { key: 'e', value: '' });
    const e = await p.call('kv.get', { key: 'e' });
    assert.deepEqual(e.$atts.map((a) => a.length), [0]);
    await finish(p);
  });

  test('a 16 MiB value as an attachment, both ways, byte for byte', async () => {
    const p = start();
    await p.initialize({ capabilities: WITH });
    const value = randomBytes(16 * 1048576);
    p.sendWithAttachments({ jsonrpc: '2.0', id: 'big', method: 'kv.put', params: { key: 'big', value: { $bytes: 0 } } }, [value]);
    assert.deepEqual((await p.response('big', 30000)).result, {});
    const got = await p.call('kv.get', { key: 'big' }, 30000);
    assert.equal(got.$raw.length, '{"jsonrpc":"2.0","id":2,"result":{"value":{"$bytes":0}}}'.length);
    assert.ok(bytesOf(got, got.result.value).equals(value));
    await finish(p);
  });

  test('invalid references are -32602: past the last attachment, none at all, not an index', async () => {
    const p = start();
    await p.initialize({ capabilities: WITH });
    const put = (id, value) => ({ jsonrpc: '2.0', id, method: 'kv.put', params: { key: 'k', value } });
    p.sendWithAttachments(put(1, { $bytes: 1 }), [Buffer.from('a')]);
    const r1 = await p.response(1);
    assert.equal(r1.error.code, -32602);
    assert.match(r1.error.message, /attachment 1/);
    p.send(put(2, { $bytes: 0 }));
    assert.equal((await p.response(2)).error.code, -32602);
    p.sendWithAttachments(put(3, { $bytes: -1 }), [Buffer.from('a')]);
    assert.equal((await p.response(3)).error.code, -32602);
    p.sendWithAttachments(put(4, { $bytes: '0' }), [Buffer.from('a')]);
    assert.equal((await p.response(4)).error.code, -32602);
    p.sendWithAttachments(put(5, { $bytes: 0, extra: 1 }), [Buffer.from('a')]);
    assert.equal((await p.response(5)).error.code, -32602);
    // An attachment nobody references is ignored.
    p.sendWithAttachments(put(6, Buffer.from('v').toString('base64')), [Buffer.from('unused')]);
    assert.deepEqual((await p.response(6)).result, {});
    await finish(p);
  });

  test('a malformed Tether-Attachments header is a parse error and the session goes on', async () => {
    const p = start();
    await p.initialize({ capabilities: WITH });
    p.sendBytes(raw('Content-Length: 5\r\nTether-Attachments: 9,9\r\n\r\n', '{}abc'));
    const r = await p.next();
    assert.equal(r.id, null);
    assert.equal(r.error.code, -32700);
    assert.deepEqual((await p.call('tether/ping')).result, {});
    await finish(p);
  });

  test('an attachment frame above the maximum is skipped and answered -32004 with its id', async () => {
    const p = start();
    await p.initialize({ capabilities: WITH, maxFrameSize: 1048576 });
    p.sendWithAttachments({ jsonrpc: '2.0', id: 'huge', method: 'kv.put', params: { key: 'k', value: { $bytes: 0 } } }, [Buffer.alloc(1048576, 1)]);
    const r = await p.response('huge');
    assert.equal(r.error.code, -32004);
    assert.equal(r.error.data.max, 1048576);
    assert.ok(r.error.data.size > 1048576);
    assert.deepEqual((await p.call('tether/ping')).result, {});
    await finish(p);
  });

  test('every bytes value of a result is an attachment, in document order', async () => {
    const p = start(STREAMY);
    await p.initialize({ interfaces: { streamy: [1] }, capabilities: WITH });
    const b64 = (s) => Buffer.from(s).toString('base64');
    p.sendWithAttachments(
      { jsonrpc: '2.0', id: 7, method: 'streamy.bytes', params: { a: { $bytes: 1 }, list: [b64('one'), { $bytes: 0 }], inner: { b: b64('bee') } } },
      [Buffer.from('two'), Buffer.from('A')],
    );
    const r = await p.response(7);
    assert.equal(r.result.ok, true);
    assert.deepEqual(r.result, { ok: true, a: { $bytes: 0 }, list: [{ $bytes: 1 }, { $bytes: 2 }], inner: { b: { $bytes: 3 } }, empty: { $bytes: 4 } });
    assert.deepEqual(r.$atts.map(String), ['A', 'one', 'two', 'bee', '']);
    await finish(p);
  });

  test("bytes in the host's answer to the plugin's own call are resolved; a bad reference fails that call", async () => {
    const p = start(STREAMY);
    await p.initialize({ interfaces: { streamy: [1] }, capabilities: WITH });
    const id = p.request('streamy.fetch');
    const give = await p.waitFor((m) => m.method === 'host.give');
    p.sendWithAttachments({ jsonrpc: '2.0', id: give.id, result: { value: { $bytes: 0 } } }, [Buffer.from('from the host')]);
    assert.deepEqual((await p.response(id)).result, { isBuffer: true, text: 'from the host' });
    const id2 = p.request('streamy.fetch');
    const give2 = await p.waitFor((m) => m.method === 'host.give');
    p.sendWithAttachments({ jsonrpc: '2.0', id: give2.id, result: { value: { $bytes: 3 } } }, [Buffer.from('x')]);
    const r2 = await p.response(id2);
    assert.equal(r2.error.code, -32603);
    assert.match(r2.error.message, /attachment 3/);
    await finish(p);
  });
});

describe('kv without attachments negotiated', () => {
  test('nothing is announced, values are base64, an attachment frame sent anyway is a parse error', async () => {
    const p = start();
    const init = await p.initialize();
    assert.deepEqual(init.result.capabilities, {});
    await p.call('kv.put', { key: 'k', value: 'AAEC' });
    const got = await p.call('kv.get', { key: 'k' });
    assert.deepEqual(got.result, { value: 'AAEC' });
    assert.equal(got.$atts, null);
    p.sendWithAttachments({ jsonrpc: '2.0', id: 9, method: 'kv.put', params: { key: 'k', value: { $bytes: 0 } } }, [Buffer.from('abc')]);
    const r = await p.next();
    assert.equal(r.error.code, -32700);
    assert.equal(r.id, null);
    // `{"$bytes": 0}` in a plain frame is not bytes either.
    assert.equal((await p.call('kv.put', { key: 'k', value: { $bytes: 0 } })).error.code, -32602);
    assert.deepEqual((await p.call('kv.get', { key: 'k' })).result, { value: 'AAEC' });
    await finish(p);
  });
});

// Issue 14: a value a handler keeps (a kv store) must keep its own bytes alive and no more: not
// the 64 KiB read it arrived in, Node's shared 8 KiB pool, or the frame's other attachments.
describe('a bytes value kept by a handler keeps only its own memory', () => {
  const call = (id, params) => ({ jsonrpc: '2.0', id, method: 'streamy.backing', params });
  const own = (n) => ({ length: n, backing: n });

  test('a small base64 value is not a view of the shared pool', async () => {
    const p = start(STREAMY);
    await p.initialize({ interfaces: { streamy: [1] } });
    const r = await p.call('streamy.backing', { a: Buffer.from('0123456789abcdef').toString('base64') });
    assert.deepEqual(r.result, { a: own(16), b: null });
    await finish(p);
  });

  test('a small attachment read with a large frame is not a view of that read', async () => {
    const p = start(STREAMY);
    await p.initialize({ interfaces: { streamy: [1] }, capabilities: WITH });
    // One write: a 48 KiB attachment frame, then a 16 B one, so that both usually arrive in
    // one read from the pipe (the 16 B value would then sit in a buffer of about 48 KiB).
    p.sendBytes(Buffer.concat([
      attachmentFrame(JSON.stringify(call(1, { a: { $bytes: 0 } })), [Buffer.alloc(48 * 1024, 7)]),
      attachmentFrame(JSON.stringify(call(2, { a: { $bytes: 0 } })), [Buffer.from('0123456789abcdef')]),
    ]));
    const big = (await p.response(1)).result.a;
    assert.equal(big.length, 48 * 1024);
    assert.ok(big.backing - big.length <= 4096, JSON.stringify(big));
    assert.deepEqual((await p.response(2)).result, { a: own(16), b: null });
    await finish(p);
  });

  test('a 100 KiB attachment beside a 1 MiB one in the same frame keeps 100 KiB, not the frame', async () => {
    const p = start(STREAMY);
    await p.initialize({ interfaces: { streamy: [1] }, capabilities: WITH });
    p.sendWithAttachments(call(3, { a: { $bytes: 0 }, b: { $bytes: 1 } }), [Buffer.alloc(1048576, 1), Buffer.alloc(102400, 2)]);
    const r = (await p.response(3, 30000)).result;
    assert.deepEqual(r.b, own(102400));
    assert.equal(r.a.length, 1048576);
    assert.ok(r.a.backing - r.a.length <= 4096, JSON.stringify(r.a));
    await finish(p);
  });
});
