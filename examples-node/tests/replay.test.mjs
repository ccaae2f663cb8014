// Transcript replay (spec/transcripts/README.md): the replayer is checked on transcripts
// written here, then run on every spec/transcripts/*.tether against the plugin it names.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT } from './harness.mjs';
import { replay, parseTranscript } from './replay.mjs';

const TRANSCRIPTS = path.resolve(ROOT, '..', 'spec', 'transcripts');

/** Writes a transcript: a list of ['# comment'] / ['-->', message] / ['<--', message]. */
function transcript(plugin, items) {
  let out = `# plugin: ${plugin}\n`;
  for (const [dir, msg] of items) {
    if (dir.startsWith('#')) {
      out += `${dir}\n`;
      continue;
    }
    const body = typeof msg === 'string' ? msg : JSON.stringify(msg);
    out += `${dir}\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}\n`;
  }
  return Buffer.from(out);
}

const init = (id, interfaces, logLevel = 'info') => ({
  jsonrpc: '2.0', id, method: 'tether/initialize',
  params: { protocolVersions: [1], interfaces, host: { name: 'replay', version: '0' }, capabilities: {}, maxFrameSize: 33554432, logLevel },
});
const initResult = (id, iface, version, methods) => ({
  jsonrpc: '2.0', id,
  result: { protocolVersion: 1, plugin: { name: 'x', version: '0' }, capabilities: {}, interfaces: { [iface]: { version, methods: Object.fromEntries(methods.map((m) => [m, { params: { type: 'object' }, result: { type: 'object' } }])) } } },
});
const req = (id, method, params = {}) => ({ jsonrpc: '2.0', id, method, params });
const ok = (id, result = {}) => ({ jsonrpc: '2.0', id, result });
const err = (id, code, message, data) => ({ jsonrpc: '2.0', id, error: data === undefined ? { code, message } : { code, message, data } });

const kvSession = [
  ['# A kv session written by the Node tests.'],
  ['-->', init(1, { kv: [1, 2] }, 'debug')],
  ['<--', initResult(1, 'kv', 2, ['put', 'get', 'delete'])],
  ['-->', req(2, 'kv.put', { key: 'hello', value: 'd29ybGQ=' })],
  ['<--', { jsonrpc: '2.0', method: '$/log', params: { level: 'debug', message: 'whatever', fields: { key: 'hello' } } }],
  ['<--', ok(2)],
  ['-->', req('three', 'kv.get', { key: 'hello' })],
  ['-->', req(4, 'kv.get', { key: 'missing' })],
  ['<--', err(4, 1001, 'not compared', { key: 'missing' })],
  ['<--', ok('three', { value: 'd29ybGQ=' })],
  ['-->', '{not json'],
  ['<--', err(null, -32700, 'parse error')],
  ['-->', req(5, 'tether/shutdown')],
  ['<--', ok(5)],
];

const counterSession = [
  ['-->', init(1, { counter: [1] })],
  ['<--', initResult(1, 'counter', 1, ['put', 'get'])],
  ['-->', req(2, 'counter.put', { key: 'a', value: 2, adder: { $handle: 'h1', interface: 'adder' } })],
  ['# The plugin picks its own id; the transcript calls it 100.'],
  ['<--', req(100, 'tether/invoke', { handle: 'h1', method: 'sum', params: { a: 0, b: 2 } })],
  ['-->', req(3, 'counter.get', { key: 'a' })],
  ['<--', ok(3, { value: 0 })],
  ['-->', ok(100, { result: 2 })],
  ['<--', ok(2)],
  ['-->', req(4, 'counter.put', { key: 'a', value: 5, adder: { $handle: 'h2', interface: 'adder' } })],
  ['<--', req(200, 'tether/invoke', { handle: 'h2', method: 'sum', params: { a: 2, b: 5 } })],
  ['-->', { jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 4 } }],
  ['<--', { jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 200 } }],
  ['<--', err(4, -32800, 'request cancelled')],
  ['-->', ok(200, { result: 7 })],
  ['-->', req(5, 'counter.get', { key: 'a' })],
  ['<--', ok(5, { value: 2 })],
  ['-->', req(6, 'tether/shutdown')],
  ['<--', ok(6)],
];

describe('the replayer on transcripts written here', () => {
  test('parses the format and rejects what it does not allow', () => {
    const t = parseTranscript(transcript('kv', kvSession));
    assert.equal(t.plugin, 'kv');
    assert.equal(t.blocks.length, kvSession.filter(([d]) => !d.startsWith('#')).length);
    assert.throws(() => parseTranscript(Buffer.from('# plugin: kv\nhello\n')), /direction line/);
    assert.throws(() => parseTranscript(Buffer.from('-->\nContent-Length: 2\r\n\r\n{}\n')), /first line/);
    assert.throws(() => parseTranscript(Buffer.from('# plugin: kv\n-->\nContent-Length: 2\n\n{}\n')), /writer form/);
    assert.throws(() => parseTranscript(Buffer.from('# plugin: kv\n-->\nContent-Length: 2\r\n\r\n{}')), /followed by one/);
  });

  test('a kv session replays: logs, any order, ignored messages, parse error', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tether-replay-'));
    const file = path.join(dir, 'kv-basic.tether');
    writeFileSync(file, transcript('kv', kvSession));
    try {
      const r = await replay(readFileSync(file), { name: 'kv-basic' });
      assert.equal(r.groups, 5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a counter session replays: invoke id binding, cancellation rewrite', async () => {
    const r = await replay(transcript('counter', counterSession), { name: 'counter-cancel' });
    assert.equal(r.groups, 8);
  });

  test('mismatches fail the replay', async () => {
    const wrongValue = kvSession.map(([d, m]) => (d === '<--' && m?.id === 'three' ? [d, ok('three', { value: 'AAAA' })] : [d, m]));
    await assert.rejects(replay(transcript('kv', wrongValue)), /do not match/);
    const tooMany = kvSession.filter(([d, m]) => !(d === '<--' && m?.method === '$/log'));
    await assert.rejects(replay(transcript('kv', tooMany)), /more than the expectation group|do not match/);
    const tooFew = kvSession.flatMap((x) => (x[1]?.id === 4 && x[0] === '<--' ? [x, ['<--', ok(99)]] : [x]));
    await assert.rejects(replay(transcript('kv', tooFew), { frameTimeout: 500 }), /wants 3 frames, the plugin sent 2/);
    const wrongCancel = counterSession.map(([d, m]) => (d === '<--' && m?.method === '$/cancelRequest' ? [d, { ...m, params: { id: 100 } }] : [d, m]));
    await assert.rejects(replay(transcript('counter', wrongCancel)), /do not match/);
  });
});

describe('spec/transcripts/*.tether', () => {
  const files = existsSync(TRANSCRIPTS) ? readdirSync(TRANSCRIPTS).filter((f) => f.endsWith('.tether')).sort() : [];
  if (files.length === 0) {
    test('replay every transcript', { skip: `no *.tether files in ${TRANSCRIPTS} yet` }, () => {});
    return;
  }
  for (const f of files) {
    test(`replays ${f}`, async () => {
      await replay(readFileSync(path.join(TRANSCRIPTS, f)), { name: f });
    });
  }
});
