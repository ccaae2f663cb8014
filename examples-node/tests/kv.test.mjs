// The kv example (kv.mjs) driven as a subprocess: cookie, lifecycle, negotiation, the JSON-RPC
// profile, framing recovery, values, logs, concurrency, shutdown and end of file.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { COOKIE, NODE, PLUGINS, Plugin, frame, sleep } from './harness.mjs';

const live = new Set();
function start(script = 'kv', opts) {
  const p = new Plugin(script, opts);
  live.add(p);
  return p;
}
after(() => live.forEach((p) => p.kill()));

const b64 = (s) => Buffer.from(s).toString('base64');
const errorOf = (r) => r.error?.code;

/** Ends a session politely and checks the exit and the stdout stream. */
async function finish(p) {
  const { response, code } = await p.shutdown();
  assert.deepEqual(response.result, {});
  assert.equal(code, 0);
  assert.deepEqual(p.strictErrors, []);
}

describe('magic cookie (SPEC §1.3)', () => {
  for (const [label, opts] of [
    ['missing', { cookie: false }],
    ['wrong', { env: { TETHER_MAGIC_COOKIE: 'not-the-cookie' } }],
  ]) {
    test(`${label} cookie: exit 1 at once, a sentence on stderr, nothing on stdout, stdin left open`, async () => {
      const p = start('kv', opts);
      // stdin stays open and silent: the plugin must not wait for it. The bound only has to tell
      // "exits" from "waits for input"; node's own start-up takes over a second on a loaded CI box.
      const { code, at } = await p.exit(5000);
      assert.equal(code, 1);
      assert.ok(at - p.spawnedAt < 5000);
      assert.equal(p.stdoutBytes, 0);
      assert.match(p.stderr, /Tether plugin/);
      assert.match(p.stderr, /not meant to be run directly/);
      assert.match(p.stderr, /TETHER_MAGIC_COOKIE/);
    });
  }
});

describe('lifecycle and version negotiation (SPEC §4)', () => {
  test('kv [1] chooses 1; kv.delete is refused with -32601 naming version 2', async () => {
    const p = start();
    const r = await p.initialize({ interfaces: { kv: [1] } });
    assert.equal(r.result.protocolVersion, 1);
    assert.equal(r.result.interfaces.kv.version, 1);
    assert.deepEqual(Object.keys(r.result.interfaces.kv.methods).sort(), ['get', 'put']);
    for (const m of Object.values(r.result.interfaces.kv.methods)) {
      assert.equal(m.params.type, 'object');
      assert.equal(m.result.type, 'object');
    }
    // The spec's Bytes schema: base64, or an attachment reference once negotiated (§2.8).
    assert.deepEqual(r.result.interfaces.kv.methods.put.params.properties.value.anyOf[0], { type: 'string', contentEncoding: 'base64' });
    assert.equal(r.result.plugin.name, 'kv-node');
    const d = await p.call('kv.delete', { key: 'a' });
    assert.equal(errorOf(d), -32601);
    assert.equal(d.error.data.method, 'kv.delete');
    assert.match(d.error.data.reason, /version 2/);
    await finish(p);
  });

  test('kv [1, 2, 9] chooses 2 with delete; unknown interfaces are left out', async () => {
    const p = start();
    const r = await p.initialize({ interfaces: { kv: [1, 2, 9], nosuch: [1] } });
    assert.equal(r.result.interfaces.kv.version, 2);
    assert.deepEqual(Object.keys(r.result.interfaces.kv.methods).sort(), ['delete', 'get', 'put']);
    assert.deepEqual(Object.keys(r.result.interfaces), ['kv']);
    assert.deepEqual((await p.call('kv.delete', { key: 'a' })).result, { existed: false });
    await finish(p);
  });

  test('kv [9] is -32001 with both lists; the session stays uninitialized and may retry', async () => {
    const p = start();
    const r = await p.initialize({ interfaces: { kv: [9] } });
    assert.equal(errorOf(r), -32001);
    assert.deepEqual(r.error.data, { interface: 'kv', host: [9], plugin: [1, 2] });
    assert.match(r.error.message, /host speaks \[9\], plugin speaks \[1, 2\]/);
    assert.equal(errorOf(await p.call('kv.get', { key: 'a' })), -32002);
    const again = await p.initialize({ interfaces: { kv: [2] } });
    assert.equal(again.result.interfaces.kv.version, 2);
    await finish(p);
  });

  test('core protocol [2] is -32001 for interface "tether"', async () => {
    const p = start();
    const r = await p.initialize({ protocolVersions: [2, 3] });
    assert.deepEqual(r.error.data, { interface: 'tether', host: [2, 3], plugin: [1] });
    p.closeStdin();
    assert.equal((await p.exit()).code, 0);
  });

  test('-32002 before initialize, notifications ignored, second initialize -32600', async () => {
    const p = start();
    p.notify('$/setLogLevel', { level: 'debug' });
    assert.equal(errorOf(await p.call('kv.get', { key: 'a' })), -32002);
    assert.equal(errorOf(await p.call('tether/ping')), -32002);
    await p.initialize();
    assert.equal(errorOf(await p.initialize()), -32600);
    // The ignored $/setLogLevel did not take effect: no debug log on put.
    await p.call('kv.put', { key: 'k', value: '' });
    assert.deepEqual(await p.drain(), []);
    await finish(p);
  });

  test('an interface that was not negotiated is -32601', async () => {
    const p = start();
    await p.initialize({ interfaces: { counter: [1] } });
    const r = await p.call('kv.get', { key: 'a' });
    assert.equal(errorOf(r), -32601);
    assert.equal(r.error.data.method, 'kv.get');
    assert.equal(errorOf(await p.call('nosuch.method')), -32601);
    assert.equal(errorOf(await p.call('tether/nosuch')), -32601);
    assert.deepEqual((await p.call('tether/ping')).result, {});
    await finish(p);
  });

  test('bad initialize params are -32602', async () => {
    const p = start();
    assert.equal(errorOf(await p.initialize({ maxFrameSize: 1000 })), -32602);
    assert.equal(errorOf(await p.initialize({ protocolVersions: [] })), -32602);
    assert.equal(errorOf(await p.initialize({ logLevel: 'loud' })), -32602);
    assert.equal((await p.initialize()).result.protocolVersion, 1);
    await finish(p);
  });
});

describe('JSON-RPC profile (SPEC §3)', () => {
  test('parse errors, batches, bad envelopes, notifications, ids', async () => {
    const p = start();
    await p.initialize();
    const expectNullIdError = async (code) => {
      const m = await p.next();
      assert.equal(m.id, null);
      assert.equal(m.error.code, code);
    };
    p.send('{nope');
    await expectNullIdError(-32700);
    p.send(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])); // invalid UTF-8
    await expectNullIdError(-32700);
    p.send('[{"jsonrpc":"2.0","id":1,"method":"tether/ping"},{"jsonrpc":"2.0","id":2,"method":"tether/ping"}]');
    await expectNullIdError(-32600);
    p.send('[]');
    await expectNullIdError(-32600);
    p.send('5');
    await expectNullIdError(-32600);
    p.send('{"jsonrpc":"2.0","id":null,"method":"tether/ping","params":{}}');
    await expectNullIdError(-32600);
    p.send('{"jsonrpc":"2.0","id":true,"method":"tether/ping","params":{}}');
    await expectNullIdError(-32600);
    p.send('{}');
    await expectNullIdError(-32600);
    // Malformed responses (a result or an error, no method) are never answered (§3.4.2).
    p.send('{"jsonrpc":"2.0","result":{}}');
    p.send('{"jsonrpc":"2.0","id":true,"result":{}}');
    p.send('{"jsonrpc":"2.0","id":40,"result":{},"error":{"code":1,"message":"x"}}');
    assert.deepEqual(await p.drain(150), []);
    p.send('{"id":41,"method":"tether/ping","params":{}}');
    assert.equal(errorOf(await p.response(41)), -32600);
    p.send('{"jsonrpc":"2.0","id":42,"method":"kv.get","params":["a"]}');
    assert.equal(errorOf(await p.response(42)), -32602);
    p.send('{"jsonrpc":"2.0","id":43,"method":7}');
    assert.equal(errorOf(await p.response(43)), -32600);
    // Notifications, even malformed or unknown ones, and unknown response ids: no answer.
    p.send('{"jsonrpc":"2.0","method":"$/nosuch","params":{}}');
    p.send('{"jsonrpc":"2.0","method":"kv.put","params":{"key":"n","value":""}}');
    p.send('{"jsonrpc":"1.0","method":"tether/ping"}');
    p.send('{"jsonrpc":"2.0","method":"tether/ping","params":5}');
    p.send('{"jsonrpc":"2.0","id":999,"result":{}}');
    p.send('{"jsonrpc":"2.0","id":998,"error":{"code":1,"message":"x"}}');
    p.send('{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}'); // §3.4.3
    p.send('{"jsonrpc":"2.0","id":null,"result":{}}');
    assert.deepEqual(await p.drain(150), []);
    // Ids are echoed exactly: type and value.
    for (const id of ['abc', '1', 0, -5, 9007199254740991, '']) {
      p.request('tether/ping', {}, id);
      const echoed = await p.response(id);
      assert.equal(typeof echoed.id, typeof id);
    }
    // Integer ids beyond 2^53 are echoed digit for digit.
    p.send('{"jsonrpc":"2.0","id":9223372036854775807,"method":"tether/ping","params":{}}');
    const big = await p.next();
    assert.match(big.$raw.toString(), /"id":9223372036854775807,/);
    p.send('{"jsonrpc":"2.0","id":-9223372036854775808,"method":"tether/ping"}'); // params absent
    assert.match((await p.next()).$raw.toString(), /"id":-9223372036854775808,"result":\{\}/);
    p.send('{"jsonrpc":"2.0","id":9223372036854775808,"method":"tether/ping","params":{}}'); // beyond int64
    await expectNullIdError(-32600);
    // Writer form: members in the order jsonrpc, id, then result/error.
    const r = await p.call('kv.get', { key: 'none' });
    assert.match(r.$raw.toString(), /^\{"jsonrpc":"2\.0","id":\d+,"error":/);
    await finish(p);
  });

  test('invalid params are -32602, with a description in data', async () => {
    const p = start();
    await p.initialize();
    const bad = [
      { key: 5, value: '' },
      { key: 'k' },
      { value: '' },
      { key: '', value: '' },
      { key: 'k', value: 'aGVsbG8' }, // no padding
      { key: 'k', value: 'aGVs\nbG8=' }, // line break
      { key: 'k', value: 'aGVs bG8=' },
      { key: 'k', value: 'a-_b' }, // URL-safe alphabet
      { key: 'k', value: 'QR==' }, // non-zero unused bits
      { key: 'k', value: 'QUI=x' },
      { key: 'k', value: '====' },
      { key: 'k', value: 5 },
      { key: 'k', value: null },
    ];
    for (const params of bad) {
      const r = await p.call('kv.put', params);
      assert.equal(errorOf(r), -32602, JSON.stringify(params));
      assert.equal(typeof r.error.data?.problem, 'string');
    }
    p.send('{"jsonrpc":"2.0","id":"noparams","method":"kv.get"}');
    assert.equal(errorOf(await p.response('noparams')), -32602);
    // Nothing was stored by the refused puts.
    assert.equal(errorOf(await p.call('kv.get', { key: 'k' })), 1001);
    await finish(p);
  });
});

describe('kv values (SPEC §9.1, §9.2)', () => {
  test('put/get/missing/empty/all 256 bytes/unicode/replace/delete', async () => {
    const p = start();
    await p.initialize();
    assert.deepEqual((await p.call('kv.put', { key: 'hello', value: b64('world') })).result, {});
    assert.deepEqual((await p.call('kv.get', { key: 'hello' })).result, { value: b64('world') });
    const missing = await p.call('kv.get', { key: 'missing' });
    assert.deepEqual(missing.error.code, 1001);
    assert.deepEqual(missing.error.data, { key: 'missing' });
    await p.call('kv.put', { key: 'empty', value: '' });
    assert.deepEqual((await p.call('kv.get', { key: 'empty' })).result, { value: '' });
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('base64');
    await p.call('kv.put', { key: 'all', value: all });
    assert.equal((await p.call('kv.get', { key: 'all' })).result.value, all);
    for (const key of ['ключ 🔑', '鍵', '\u0000nul', 'line\nbreak', '"quoted"', '\ud83d']) {
      await p.call('kv.put', { key, value: b64(key) });
      assert.equal((await p.call('kv.get', { key })).result.value, b64(key), JSON.stringify(key));
    }
    await p.call('kv.put', { key: 'hello', value: b64('again') });
    assert.equal((await p.call('kv.get', { key: 'hello' })).result.value, b64('again'));
    assert.deepEqual((await p.call('kv.delete', { key: 'hello' })).result, { existed: true });
    assert.deepEqual((await p.call('kv.delete', { key: 'hello' })).result, { existed: false });
    assert.equal(errorOf(await p.call('kv.get', { key: 'hello' })), 1001);
    await finish(p);
  });

  test('a 16 MiB value round-trips, and a large answer is written whole before exit', async () => {
    const p = start();
    await p.initialize();
    const value = randomBytes(16 * 1024 * 1024).toString('base64');
    assert.equal(value.length, 22369624);
    assert.deepEqual((await p.call('kv.put', { key: 'big', value }, 20000)).result, {});
    // Pipelined: the big answer and the small one after it both arrive complete.
    const id = p.request('kv.get', { key: 'big' });
    const ping = p.request('tether/ping');
    const got = await p.response(id, 20000);
    assert.equal(got.result.value, value);
    assert.deepEqual((await p.response(ping)).result, {});
    // Ask again and close stdin at once: the answer must still be flushed before the exit.
    const last = p.request('kv.get', { key: 'big' });
    p.closeStdin();
    const again = await p.response(last, 20000);
    assert.equal(again.result.value.length, value.length);
    assert.equal((await p.exit(5000)).code, 0);
    assert.deepEqual(p.strictErrors, []);
  });

  test('64 requests in flight, mixed id types, answered in any order', async () => {
    const p = start();
    await p.initialize();
    const ids = [];
    for (let i = 0; i < 64; i++) {
      const id = i % 2 ? `s${i}` : 1000 + i;
      ids.push(id);
      p.request(i < 32 ? 'kv.put' : 'kv.get', { key: `k${i % 32}`, value: b64(`v${i % 32}`) }, id);
    }
    const answers = await Promise.all(ids.map((id) => p.response(id)));
    answers.forEach((a, i) => {
      if (i < 32) assert.deepEqual(a.result, {});
      else assert.equal(a.result.value, b64(`v${i % 32}`));
    });
    await finish(p);
  });
});

describe('logs (SPEC §8, §9.1)', () => {
  test('put logs at debug with fields.key; level changes with $/setLogLevel', async () => {
    const p = start();
    await p.initialize({ logLevel: 'debug' });
    await p.call('kv.put', { key: 'logged', value: b64('x') });
    const logMsg = await p.waitFor((m) => m.method === '$/log', 1000);
    assert.equal(logMsg.params.level, 'debug');
    assert.equal(logMsg.params.fields.key, 'logged');
    assert.equal(typeof logMsg.params.message, 'string');
    assert.equal(logMsg.id, undefined);
    p.notify('$/setLogLevel', { level: 'info' });
    await p.call('kv.put', { key: 'quiet', value: '' });
    assert.deepEqual(await p.drain(), []);
    p.notify('$/setLogLevel', { level: 'trace' });
    await p.call('kv.put', { key: 'loud', value: '' });
    assert.equal((await p.waitFor((m) => m.method === '$/log', 1000)).params.fields.key, 'loud');
    await finish(p);
  });

  test('a level nested 100000 deep is ignored with a line on stderr, not a crash', async () => {
    // Found by `tether-conformance --fuzz`: the report of the unknown level overflowed the stack.
    const p = start();
    await p.initialize();
    const deep = '['.repeat(100000) + ']'.repeat(100000);
    p.sendBytes(frame(`{"jsonrpc":"2.0","method":"$/setLogLevel","params":{"level":${deep}}}`));
    assert.deepEqual((await p.call('tether/ping')).result, {});
    assert.match(p.stderr, /unknown level: \(an array nested too deeply to show\)/);
    await finish(p);
  });

  test('default level info: no debug log', async () => {
    const p = start();
    await p.initialize({ logLevel: undefined });
    await p.call('kv.put', { key: 'a', value: '' });
    assert.deepEqual(await p.drain(), []);
    await finish(p);
  });
});

describe('framing (SPEC §2)', () => {
  test('garbage, broken headers and lenient headers are survived', async () => {
    const p = start();
    await p.initialize();
    const ping = (id) => frame({ jsonrpc: '2.0', id, method: 'tether/ping', params: {} });
    p.sendBytes(Buffer.concat([Buffer.from('stray print output\n'), ping('a')]));
    assert.deepEqual((await p.response('a')).result, {});
    p.sendBytes(Buffer.concat([Buffer.from('no newline at all'), ping('b')]));
    assert.deepEqual((await p.response('b')).result, {});
    p.sendBytes(Buffer.concat([Buffer.from('Content-Length: abc\r\n\r\n'), ping('c')]));
    assert.deepEqual((await p.response('c')).result, {});
    p.sendBytes(Buffer.concat([Buffer.from('Content-Length: -4\r\n\r\n{}{}'), ping('d')]));
    assert.deepEqual((await p.response('d')).result, {});
    // A duplicated Content-Length is broken; resynchronising at the second one reads the body
    // `{}`, which is not a message: -32600 with a null id.
    p.sendBytes(Buffer.concat([Buffer.from('Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}'), ping('e')]));
    assert.equal((await p.next()).error.code, -32600);
    assert.deepEqual((await p.response('e')).result, {});
    p.sendBytes(Buffer.concat([Buffer.from(`X-Pad: ${'x'.repeat(5000)}\r\n`), ping('f')]));
    assert.deepEqual((await p.response('f')).result, {});
    const body = Buffer.from('{"jsonrpc":"2.0","id":"g","method":"tether/ping","params":{}}');
    p.sendBytes(Buffer.concat([Buffer.from(`content-TYPE: application/vscode-jsonrpc; charset=latin1\r\ncontent-length: ${body.length}\r\n\r\n`), body]));
    p.sendBytes(Buffer.concat([Buffer.from(`x-unknown: 1\r\ncontent-length:   ${body.length}  \r\nContent-Type: application/vscode-jsonrpc; charset=UTF8\r\n\r\n`), Buffer.from(body.toString().replace('"g"', '"h"'))]));
    assert.deepEqual((await p.response('h')).result, {});
    p.sendBytes(Buffer.from('\x00\xff\xfe binary junk \r\n\r\n'));
    // One frame delivered a byte at a time.
    for (const byte of ping('i')) {
      p.sendBytes(Buffer.from([byte]));
      await sleep(1);
    }
    assert.deepEqual((await p.response('i')).result, {});
    // 'g' had a foreign charset: the whole frame was dropped, never answered.
    assert.deepEqual(await p.drain(), []);
    assert.match(p.stderr, /not a frame/);
    await finish(p);
  });

  test('an oversized request is skipped and answered -32004; the session goes on', async () => {
    const p = start();
    await p.initialize({ maxFrameSize: 1048576 });
    const value = 'A'.repeat(1100000);
    const id = p.request('kv.put', { key: 'huge', value });
    const r = await p.response(id);
    assert.equal(errorOf(r), -32004);
    assert.deepEqual(r.error.data, { size: Buffer.byteLength(JSON.stringify({ jsonrpc: '2.0', id, method: 'kv.put', params: { key: 'huge', value } })), max: 1048576 });
    // An oversized notification and an oversized frame with no visible id: no answer.
    p.send({ jsonrpc: '2.0', method: 'kv.put', params: { key: 'huge', value } });
    p.send(`{"params":{"value":"${value}"},"id":77,"jsonrpc":"2.0","method":"kv.put"}`);
    assert.deepEqual((await p.call('tether/ping')).result, {});
    assert.deepEqual(await p.drain(), []);
    assert.equal(errorOf(await p.call('kv.get', { key: 'huge' })), 1001);
    await finish(p);
  });

  test('a frame cut short by end of file: exit 0', async () => {
    const p = start();
    await p.initialize();
    p.sendBytes(Buffer.from('Content-Length: 100\r\n\r\n{"jsonrpc"'));
    p.closeStdin();
    assert.equal((await p.exit()).code, 0);
    assert.match(p.stderr, /cut short/);
  });
});

describe('shutdown and end of file (SPEC §1.6, §4.6)', () => {
  test('shutdown answers {}, later requests get -32005, then exit 0 on close', async () => {
    const p = start();
    await p.initialize();
    assert.deepEqual((await p.call('tether/shutdown')).result, {});
    assert.equal(errorOf(await p.call('kv.get', { key: 'a' })), -32005);
    assert.equal(errorOf(await p.call('tether/shutdown')), -32005);
    p.closeStdin();
    assert.equal((await p.exit()).code, 0);
    assert.deepEqual(p.strictErrors, []);
    assert.deepEqual(p.queue, []);
  });

  test('end of file without shutdown: exit 0 promptly', async () => {
    const p = start();
    await p.initialize();
    const closed = performance.now();
    p.closeStdin();
    const { code, at } = await p.exit(2000);
    assert.equal(code, 0);
    assert.ok(at - closed < 1000, `exited after ${at - closed} ms`);
  });

  test('end of file before initialize: exit 0', async () => {
    const p = start();
    p.closeStdin();
    assert.equal((await p.exit()).code, 0);
    assert.equal(p.stdoutBytes, 0);
  });
});

describe('a host that stops reading (SPEC §1.5)', () => {
  // A raw child process: the host side closes its end of the plugin's stdout first.
  const ping = frame({ jsonrpc: '2.0', id: 1, method: 'tether/ping' });
  function startDeaf() {
    const child = spawn(NODE, [PLUGINS.kv], { env: { ...process.env, ...COOKIE }, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise((resolve) => child.on('exit', (code) => resolve({ code, stderr: () => stderr })));
    return { child, exited };
  }

  test('stdout closed while stdin stays open: exit 2 with a reason on stderr', async () => {
    const { child, exited } = startDeaf();
    child.stdin.write(ping); // its answer (-32002) is a write that fails
    const { code, stderr } = await withTimeout(exited, 10000);
    child.stdin.destroy();
    assert.equal(code, 2);
    assert.match(stderr(), /giving up on the session/);
  });

  test('both pipes closed at once: the failed write is the host leaving, exit 0', async () => {
    const { child, exited } = startDeaf();
    child.stdin.end(ping);
    const { code, stderr } = await withTimeout(exited, 10000);
    assert.equal(code, 0, stderr());
  });
});

function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no exit within ${ms} ms`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
