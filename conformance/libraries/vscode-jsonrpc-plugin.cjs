// A Tether plugin (kv v1/v2 and counter v1) written on vscode-jsonrpc 10, the way a user of that
// library would write it: the library frames, dispatches, answers unknown methods and handles
// $/cancelRequest; the plugin adds what Tether asks beyond JSON-RPC (the cookie, the initialize
// rules, shutdown, the exit at end of input). Run by `run.sh` beside it, which installs the
// library into a temporary directory; see examples-node/README.md for what the judge says of it.
'use strict';
const rpc = require('vscode-jsonrpc/node');

const COOKIE_KEY = 'TETHER_MAGIC_COOKIE';
const COOKIE_VALUE = '7c1e4b9a-tether-reference-plugin';
if (process.env[COOKIE_KEY] !== COOKIE_VALUE) {
  process.stderr.write('This program is a Tether plugin; it is not meant to be run directly.\n');
  process.exit(1);
}
// Keep stray console.log calls off the frame stream (SPEC.md §8.4).
console.log = (...args) => console.error(...args);

const connection = rpc.createMessageConnection(
  new rpc.StreamMessageReader(process.stdin),
  new rpc.StreamMessageWriter(process.stdout),
);

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];
const state = { initialized: false, shutdown: false, level: 'info', kv: 0, counter: false };
const store = new Map();
const counts = new Map();
let inflight = 0;
let idle = null;

function fail(code, message, data) {
  return new rpc.ResponseError(code, message, data);
}

function log(level, message, fields) {
  if (LEVELS.indexOf(level) >= LEVELS.indexOf(state.level)) {
    connection.sendNotification('$/log', { level, message, target: 'vscode-jsonrpc-plugin', fields });
  }
}

const KEY = { type: 'string', minLength: 1 };
const BYTES = { type: 'string', contentEncoding: 'base64' };
const obj = (properties, required) => ({ type: 'object', properties, required });
const KV = {
  put: { params: obj({ key: KEY, value: BYTES }, ['key', 'value']), result: { type: 'object' } },
  get: { params: obj({ key: KEY }, ['key']), result: obj({ value: BYTES }, ['value']) },
  delete: { params: obj({ key: KEY }, ['key']), result: obj({ existed: { type: 'boolean' } }, ['existed']) },
};
const HANDLE = obj({ $handle: { type: 'string' }, interface: { const: 'adder' } }, ['$handle', 'interface']);
const COUNTER = {
  put: { params: obj({ key: { type: 'string' }, value: { type: 'integer' }, adder: HANDLE }, ['key', 'value', 'adder']), result: { type: 'object' } },
  get: { params: obj({ key: { type: 'string' } }, ['key']), result: obj({ value: { type: 'integer' } }, ['value']) },
};

// Every application request goes through here: the Tether session rules first.
function guarded(method, handler) {
  connection.onRequest(method, async (params, token) => {
    if (!state.initialized) throw fail(-32002, 'not initialized');
    if (state.shutdown) throw fail(-32005, 'shutting down');
    inflight += 1;
    try {
      return await handler(params || {}, token);
    } finally {
      inflight -= 1;
      if (inflight === 0 && idle) idle();
    }
  });
}

connection.onRequest('tether/initialize', (params) => {
  if (state.initialized) throw fail(-32600, 'already initialized');
  const offered = (params && params.protocolVersions) || [];
  if (!offered.includes(1)) {
    throw fail(-32001, 'no common version for interface tether', { interface: 'tether', host: offered, plugin: [1] });
  }
  const interfaces = {};
  const wanted = (params && params.interfaces) || {};
  for (const [name, mine] of [['kv', [1, 2]], ['counter', [1]]]) {
    if (!(name in wanted)) continue;
    const common = wanted[name].filter((v) => mine.includes(v));
    if (common.length === 0) {
      throw fail(-32001, `no common version for interface ${name}`, { interface: name, host: wanted[name], plugin: mine });
    }
    const version = Math.max(...common);
    const methods = name === 'kv' ? { ...KV } : COUNTER;
    if (name === 'kv' && version < 2) delete methods.delete;
    interfaces[name] = { version, methods };
  }
  state.initialized = true;
  state.level = (params && params.logLevel) || 'info';
  state.kv = interfaces.kv ? interfaces.kv.version : 0;
  state.counter = Boolean(interfaces.counter);
  return { protocolVersion: 1, plugin: { name: 'vscode-jsonrpc-plugin', version: '0.1.0' }, capabilities: {}, interfaces };
});

connection.onRequest('tether/ping', () => {
  if (!state.initialized) throw fail(-32002, 'not initialized');
  if (state.shutdown) throw fail(-32005, 'shutting down');
  return {};
});

connection.onRequest('tether/shutdown', async () => {
  if (!state.initialized) throw fail(-32002, 'not initialized');
  state.shutdown = true;
  if (inflight > 0) await new Promise((resolve) => { idle = resolve; });
  return {};
});

connection.onNotification('$/setLogLevel', (params) => {
  if (params && LEVELS.includes(params.level)) state.level = params.level;
});

function key(params) {
  if (typeof params.key !== 'string' || params.key === '') throw fail(-32602, 'invalid params: key must be a non-empty string');
  return params.key;
}

function bytes(text) {
  // Buffer.from(..., 'base64') skips what it does not understand: check the text first
  // (SPEC.md §5.3), without a regular expression that would recurse over a 22 MB string.
  const valid = typeof text === 'string' && text.length % 4 === 0
    && /^[A-Za-z0-9+/]*={0,2}$/.test(text) && !/=[^=]/.test(text);
  if (!valid) throw fail(-32602, 'invalid params: value is not padded base64');
  return Buffer.from(text, 'base64');
}

function kvOnly(version, handler) {
  return (params, token) => {
    if (state.kv < version) throw fail(-32601, 'method not found', { reason: state.kv ? 'needs kv version 2' : 'unknown' });
    return handler(params, token);
  };
}

guarded('kv.put', kvOnly(1, (params) => {
  const k = key(params);
  const value = bytes(params.value);
  log('debug', 'put', { key: k, bytes: value.length });
  store.set(k, value);
  return {};
}));
guarded('kv.get', kvOnly(1, (params) => {
  const k = key(params);
  if (!store.has(k)) throw fail(1001, `key not found: ${k}`, { key: k });
  return { value: store.get(k).toString('base64') };
}));
guarded('kv.delete', kvOnly(2, (params) => ({ existed: store.delete(key(params)) })));

guarded('counter.get', (params) => {
  if (!state.counter) throw fail(-32601, 'method not found');
  if (typeof params.key !== 'string') throw fail(-32602, 'invalid params: key must be a string');
  return { value: counts.get(params.key) || 0 };
});
guarded('counter.put', async (params, token) => {
  if (!state.counter) throw fail(-32601, 'method not found');
  const { key: k, value, adder } = params;
  if (typeof k !== 'string' || !Number.isInteger(value) || !adder || typeof adder.$handle !== 'string') {
    throw fail(-32602, 'invalid params');
  }
  const a = counts.get(k) || 0;
  let sum;
  try {
    // Cancelling `token` makes the library send $/cancelRequest for this invoke, but its promise
    // still waits for the host's answer: race it against the cancellation (SPEC.md §7.2).
    const invoke = connection.sendRequest('tether/invoke', { handle: adder.$handle, method: 'sum', params: { a, b: value } }, token);
    const cancelled = new Promise((_, reject) => token.onCancellationRequested(() => reject(new Error('cancelled'))));
    sum = await Promise.race([invoke, cancelled]);
  } catch (e) {
    if (token.isCancellationRequested) throw fail(-32800, 'request cancelled');
    const cause = { code: e.code, message: e.message };
    if (e.data !== undefined) cause.data = e.data;
    throw fail(-32603, `the adder failed: ${e.message}`, { cause });
  }
  counts.set(k, sum.result);
  return {};
});

// Handles: this plugin issues none.
for (const method of ['tether/invoke', 'tether/retain']) {
  connection.onRequest(method, (params) => {
    throw fail(-32003, 'unknown handle', { handle: params && params.handle });
  });
}

// SPEC.md §1.6: exit 0 at the end of input.
connection.onClose(() => process.exit(0));
process.stdin.on('end', () => process.exit(0));
connection.listen();
