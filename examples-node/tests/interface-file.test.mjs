// Interface files (spec/interfaces/*.json): interfaceFromFile and its errors, the spec's Bytes
// schema, and the JSON Schema keywords interface files use ($ref, $defs, anyOf, oneOf).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { Plugin, HERE, ROOT, NODE } from './harness.mjs';

const KV_FILE = path.resolve(ROOT, '..', 'spec', 'interfaces', 'kv.json');
const SCHEMA_FILE = path.resolve(ROOT, '..', 'spec', 'schema', 'interface.schema.json');
const KV = JSON.parse(readFileSync(KV_FILE, 'utf8'));
const live = new Set();
after(() => live.forEach((p) => p.kill()));

function load(file, handlers, versions) {
  const args = [path.join(HERE, 'fixtures', 'load-iface.mjs'), file, JSON.stringify(handlers)];
  if (versions !== undefined) args.push(JSON.stringify(versions));
  const r = spawnSync(NODE, args, { timeout: 10000 });
  assert.equal(r.status, 0, r.stderr.toString());
  return JSON.parse(r.stdout.toString());
}

test('interfaceFromFile serves the versions and methods of the file', () => {
  assert.deepEqual(load(KV_FILE, ['put', 'get', 'delete']), { name: 'kv', methods: { 1: ['get', 'put'], 2: ['delete', 'get', 'put'] } });
  assert.deepEqual(load(KV_FILE, ['put', 'get'], 1), { name: 'kv', methods: { 1: ['get', 'put'] } });
});

test('interfaceFromFile names the file and the cause of what it cannot serve', () => {
  const missing = path.join(HERE, 'no-such-interface.json');
  const cases = [
    [[missing, ['put']], `cannot read the interface file ${missing}: no such file`],
    [[KV_FILE, ['put', 'get']], `${KV_FILE}: kv version 2 defines the method delete, but the handlers have no function delete`],
    [[KV_FILE, ['put', 'get', 'delete', 'list']], `${KV_FILE}: the handlers ["list"] are no method of kv version(s) [1,2] (its methods: ["delete","get","put"])`],
    [[KV_FILE, ['put', 'get'], [1, 3]], `${KV_FILE}: interface kv defines the versions [1,2], not [3]`],
    [[SCHEMA_FILE, []], `${SCHEMA_FILE}: not an interface document (it needs a name and a non-empty versions list, spec/schema/interface.schema.json)`],
  ];
  for (const [args, message] of cases) {
    const got = load(...args);
    assert.deepEqual(got, { error: 'InterfaceFileError', message }, JSON.stringify(args));
  }
});

test('the bytes helper declares the spec Bytes schema, as kv.mjs shows', async () => {
  const p = new Plugin('kv');
  live.add(p);
  const r = await p.initialize({ interfaces: { kv: [2] } });
  const declared = r.result.interfaces.kv.methods;
  const fileBytes = KV.versions[1].methods.put.params.$defs.Bytes;
  assert.deepEqual(declared.put.params.properties.value, { anyOf: fileBytes.anyOf });
  assert.deepEqual(declared.get.result.properties.value, { anyOf: fileBytes.anyOf });
  await p.shutdown();
});

test('refs, oneOf, anyOf and Bytes from an interface document are checked and converted', async () => {
  const p = new Plugin(path.join(HERE, 'fixtures', 'iface.mjs'));
  live.add(p);
  await p.initialize({ interfaces: { lab: [1] } });
  const echo = async (params) => {
    const r = await p.call('lab.echo', params);
    return r.error ? r.error.message : r.result.got;
  };
  // A recursive $ref, with Bytes deep inside: base64 in, a Buffer in the handler, base64 out.
  assert.deepEqual(await echo({ tree: { kids: [{ kids: [], data: 'AAE=' }] } }), { tree: { kids: [{ kids: [], data: 'AAE=' }] } });
  assert.equal(await echo({ tree: { kids: [{ kids: [7] }] } }), 'invalid params: tree.kids.0.kids.0: expected object, got integer');
  assert.equal(await echo({ value: 'AAE' }), 'invalid params: value: not valid padded standard base64');
  assert.equal(await echo({ value: { $bytes: 0 } }), 'invalid params: value: an attachment reference 0, but this frame has no attachments');
  // oneOf: exactly one branch.
  assert.deepEqual(await echo({ size: 2.5 }), { size: 2.5 });
  assert.equal(await echo({ size: -1.5 }), 'invalid params: size: must be at least 0');
  assert.equal(await echo({ size: 3 }), 'invalid params: size: matches more than one alternative of a oneOf');
  // anyOf: the first branch that fits; the one branch of the value's type explains a refusal.
  assert.deepEqual(await echo({ name: null }), { name: null });
  assert.equal(await echo({ name: '' }), 'invalid params: name: must not be empty');
  assert.equal(await echo({ name: 5 }), 'invalid params: name: matches none of the alternatives: (1) expected string, got integer; (2) expected null, got integer');
  await p.shutdown();
});
