// Transcript replay (spec/transcripts/README.md): the replayer is checked on transcripts
// written here, then run on every spec/transcripts/*.tether against the plugin it names.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { ROOT } from './harness.mjs';
import { replay, parseTranscript } from './replay.mjs';

const TRANSCRIPTS = path.resolve(ROOT, '..', 'spec', 'transcripts');

/**
 * Writes a transcript: a list of ['# comment'] / ['-->', message] / ['<--', message] /
 * [dir, message, attachments] (a frame with attachments, SPEC.md §2.8).
 */
function transcript(plugin, items) {
  const out = [Buffer.from(`# plugin: ${plugin}\n`)];
  for (const [dir, msg, atts] of items) {
    if (dir.startsWith('#')) {
      out.push(Buffer.from(`${dir}\n`));
      continue;
    }
    const body = Buffer.from(typeof msg === 'string' ? msg : JSON.stringify(msg));
    if (atts) {
      const total = atts.reduce((n, a) => n + a.length, body.length);
      out.push(Buffer.from(`${dir}\nContent-Length: ${total}\r\nTether-Attachments: ${atts.map((a) => a.length).join(',')}\r\n\r\n`), body, ...atts, Buffer.from('\n'));
    } else {
      out.push(Buffer.from(`${dir}\nContent-Length: ${body.length}\r\n\r\n`), body, Buffer.from('\n'));
    }
  }
  return Buffer.concat(out);
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
    await assert.rejects(replay(transcript('kv', tooFew), { frameTimeout: 500 }), /wants 3 frames.*the plugin sent 2 frames/);
    const wrongCancel = counterSession.map(([d, m]) => (d === '<--' && m?.method === '$/cancelRequest' ? [d, { ...m, params: { id: 100 } }] : [d, m]));
    await assert.rejects(replay(transcript('counter', wrongCancel)), /do not match/);
  });
});

// The 1.1 rules: bytes as base64 or attachments (a), the plugin's stream ids bound (b), its
// credit grants skipped (c), and its data compared per stream as one concatenation (d).
const caps = { attachments: {}, streams: {} };
const init11 = (id, interfaces) => ({ ...init(id, interfaces), params: { ...init(id, interfaces).params, capabilities: caps } });
const b64 = (b) => Buffer.from(b).toString('base64');
const sha = (b) => createHash('sha256').update(b).digest('hex');
const note = (method, params) => ({ jsonrpc: '2.0', method, params });
const big = Buffer.alloc(600000, 'z');
const produced = Buffer.from(Array.from({ length: 300 }, (_, i) => i % 251));

const kvAttachments = [
  ['-->', init11(1, { kv: [2] })],
  ['<--', initResult(1, 'kv', 2, ['put', 'get', 'delete'])],
  ['-->', req(2, 'kv.put', { key: 'k', value: { $bytes: 0 } }), [Buffer.from('raw bytes')]],
  ['<--', ok(2)],
  ['# The plugin answers with an attachment; the transcript writes the same bytes in base64.'],
  ['-->', req(3, 'kv.get', { key: 'k' })],
  ['<--', ok(3, { value: b64('raw bytes') })],
  ['-->', req(4, 'kv.put', { key: 'e', value: '' })],
  ['<--', ok(4)],
  ['-->', req(5, 'kv.get', { key: 'e' })],
  ['<--', ok(5, { value: { $bytes: 0 } }), [Buffer.alloc(0)]],
  ['-->', req(6, 'tether/shutdown')],
  ['<--', ok(6)],
];

const blobSession = [
  ['-->', init11(1, { blob: [1] })],
  ['<--', initResult(1, 'blob', 1, ['upload', 'download', 'count', 'produce'])],
  ['-->', req(2, 'blob.upload', { name: 'a', data: { $stream: 1, mode: 'read' } })],
  ['-->', note('$/stream.data', { stream: 1, data: { $bytes: 0 } }), [Buffer.from('hello ')]],
  ['-->', note('$/stream.data', { stream: 1, data: b64('world') })],
  ['-->', note('$/stream.end', { stream: 1 })],
  ['<--', ok(2, { size: 11, sha256: sha('hello world') })],
  ['# The transcript says the plugin chose stream 6; the plugin chooses its own even id.'],
  ['-->', req(3, 'blob.download', { name: 'a' })],
  ['<--', ok(3, { size: 11, data: { $stream: 6, mode: 'read' } })],
  ['<--', note('$/stream.data', { stream: 6, data: b64('hel') })],
  ['<--', note('$/stream.data', { stream: 6, data: { $bytes: 0 } }), [Buffer.from('lo world')]],
  ['<--', note('$/stream.end', { stream: 6 })],
  ['# A window-sized upload: the plugin grants credit back, which is not an expectation.'],
  ['-->', req(4, 'blob.count', { data: { $stream: 3, mode: 'read' } })],
  ['-->', note('$/stream.data', { stream: 3, data: { $bytes: 0 } }), [big]],
  ['-->', note('$/stream.end', { stream: 3 })],
  ['<--', note('$/stream.credit', { stream: 3, bytes: 600000 })],
  ['<--', ok(4, { size: big.length, sha256: sha(big) })],
  ['-->', req(5, 'blob.produce', { size: 300 })],
  ['<--', ok(5, { data: { $stream: 8, mode: 'read' } })],
  ['<--', note('$/stream.data', { stream: 8, data: b64(produced) })],
  ['<--', note('$/stream.end', { stream: 8 })],
  ['-->', req(6, 'blob.download', { name: 'nope' })],
  ['<--', err(6, 1002, 'not compared', { name: 'nope' })],
  ['-->', req(7, 'tether/shutdown')],
  ['<--', ok(7)],
];

describe('the replayer on attachments and streams (rules a to d)', () => {
  test('a kv session with attachments replays whether bytes are base64 or attachments', async () => {
    const r = await replay(transcript('kv', kvAttachments), { name: 'kv-attachments' });
    assert.equal(r.groups, 6);
  });

  test('a blob session replays: stream ids bound, credit skipped, data compared as concatenations', async () => {
    const r = await replay(transcript('blob', blobSession), { name: 'blob-streams' });
    assert.equal(r.groups, 7);
  });

  test('wrong stream data, or a wrong size, fails the replay', async () => {
    const wrongData = blobSession.map((x) => (x[1]?.params?.stream === 6 && x[2] ? ['<--', x[1], [Buffer.from('lo WORLD')]] : x));
    await assert.rejects(replay(transcript('blob', wrongData)), /data of stream 6 differs/);
    const shortData = blobSession.map((x) => (x[1]?.params?.stream === 8 && x[1].method === '$/stream.data' ? ['<--', note('$/stream.data', { stream: 8, data: b64(produced.subarray(0, 200)) })] : x));
    await assert.rejects(replay(transcript('blob', shortData)), /more than the expectation group|do not match/);
    const wrongBytes = kvAttachments.map((x) => (x[1]?.id === 3 && x[0] === '<--' ? ['<--', ok(3, { value: b64('other bytes') })] : x));
    await assert.rejects(replay(transcript('kv', wrongBytes)), /do not match/);
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
