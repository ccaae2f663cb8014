// A replayer for spec/transcripts/*.tether, following spec/transcripts/README.md exactly:
// it plays the host, writes the `-->` frames, reads each run of `<--` frames as one
// expectation group matched in any order, binds the ids of the plugin's requests, and at the
// end closes stdin and expects exit 0 within 2 seconds with nothing more on stdout.

import { Plugin, PLUGINS, frame } from './harness.mjs';

/**
 * Parses a transcript. Throws on anything the format does not allow.
 * @param {Buffer} buf
 * @returns {{plugin: string, blocks: {dir: '-->' | '<--', body: Buffer, json: any, line: number}[]}}
 */
export function parseTranscript(buf) {
  const blocks = [];
  let pos = 0;
  let line = 1;
  const fail = (why) => {
    throw new Error(`transcript line ${line}: ${why}`);
  };
  const readLine = () => {
    const nl = buf.indexOf(0x0a, pos);
    if (nl < 0) fail('a line does not end with \\n');
    const text = buf.toString('utf8', pos, nl);
    pos = nl + 1;
    line++;
    return text;
  };
  const first = buf.indexOf(0x0a);
  const m = /^# plugin: (\S+)$/.exec(buf.toString('utf8', 0, first < 0 ? buf.length : first));
  if (!m) fail('the first line must be "# plugin: kv" or "# plugin: counter"');
  const plugin = m[1];
  while (pos < buf.length) {
    const text = readLine();
    if (text.startsWith('#')) continue;
    if (text !== '-->' && text !== '<--') fail(`expected a comment or a direction line, got ${JSON.stringify(text.slice(0, 60))}`);
    const at = line;
    const head = /^Content-Length: (0|[1-9][0-9]*)\r\n\r\n/.exec(buf.toString('latin1', pos, pos + 40));
    if (!head) fail('expected a frame in writer form (Content-Length: N\\r\\n\\r\\n)');
    pos += head[0].length;
    const n = Number(head[1]);
    if (pos + n > buf.length) fail(`the frame declares ${n} bytes but the file ends first`);
    const body = buf.subarray(pos, pos + n);
    pos += n;
    if (buf[pos] !== 0x0a) fail('a frame must be followed by one \\n');
    pos++;
    // Count the lines the body spans, for messages.
    for (const c of body) if (c === 0x0a) line++;
    line++;
    let json;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      json = undefined; // a transcript may show a body that is not JSON (a parse error)
    }
    blocks.push({ dir: text, body, json, line: at });
  }
  return { plugin, blocks };
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const has = (o, k) => isObj(o) && Object.hasOwn(o, k);

export function jsonEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
}

const idKey = (id) => JSON.stringify(id);
/** The error codes whose `data` SPEC.md Appendix A fixes, and so the replayer compares. */
const FIXED_DATA = new Set([-32001, -32003, -32004, 1001]);
const isRequest = (m) => has(m, 'method') && has(m, 'id');

/**
 * Whether an actual frame matches an expected one under the README's rules (rule 3), given the
 * ids bound so far (transcript id -> plugin id) and the transcript ids of the initialize
 * requests.
 */
export function framesMatch(exp, act, bindings, initIds) {
  if (exp === undefined || !isObj(act)) return false;
  if (!isObj(exp)) return jsonEqual(exp, act);
  const keys = new Set([...Object.keys(exp), ...Object.keys(act)]);
  // A response to tether/initialize: protocolVersion, interface versions, method name sets.
  if (!has(exp, 'method') && has(exp, 'result') && initIds.has(idKey(exp.id))) {
    if (!jsonEqual(exp.id, act.id) || act.jsonrpc !== exp.jsonrpc || !has(act, 'result') || has(act, 'error')) return false;
    const e = exp.result;
    const a = act.result;
    if (!isObj(a) || a.protocolVersion !== e.protocolVersion || !isObj(a.interfaces)) return false;
    const ei = Object.keys(e.interfaces ?? {}).sort();
    const ai = Object.keys(a.interfaces).sort();
    if (!jsonEqual(ei, ai)) return false;
    return ei.every((name) => {
      const x = e.interfaces[name];
      const y = a.interfaces[name];
      return isObj(y) && x.version === y.version && isObj(y.methods) && jsonEqual(Object.keys(x.methods ?? {}).sort(), Object.keys(y.methods).sort());
    });
  }
  // $/log: level, presence of message, and fields.key when expected.
  if (exp.method === '$/log' && !has(exp, 'id')) {
    if (act.method !== '$/log' || has(act, 'id') || act.jsonrpc !== exp.jsonrpc) return false;
    if (!isObj(act.params) || act.params.level !== exp.params?.level || typeof act.params.message !== 'string') return false;
    if (has(exp.params?.fields, 'key')) return has(act.params.fields, 'key') && jsonEqual(exp.params.fields.key, act.params.fields.key);
    return true;
  }
  // Error responses: the code; `data` only where Appendix A fixes it; never the message.
  if (has(exp, 'error')) {
    if (!has(act, 'error') || has(act, 'result') || has(act, 'method')) return false;
    for (const k of keys) if (k !== 'error' && !jsonEqual(exp[k], act[k])) return false;
    if (!isObj(act.error) || act.error.code !== exp.error?.code || typeof act.error.message !== 'string') return false;
    return !FIXED_DATA.has(exp.error.code) || jsonEqual(exp.error.data, act.error.data);
  }
  // A request from the plugin: everything but the id.
  if (isRequest(exp)) {
    if (!isRequest(act)) return false;
    for (const k of keys) if (k !== 'id' && !jsonEqual(exp[k], act[k])) return false;
    return true;
  }
  // The plugin's $/cancelRequest names one of its own requests: rewrite through the bindings.
  if (exp.method === '$/cancelRequest' && has(exp.params, 'id')) {
    const bound = bindings.get(idKey(exp.params.id));
    const want = bound === undefined ? exp : { ...exp, params: { ...exp.params, id: bound } };
    return jsonEqual(want, act);
  }
  return jsonEqual(exp, act);
}

/** Finds a one-to-one matching of expected to actual frames (backtracking; groups are small). */
function matchGroup(expected, actual, bindings, initIds) {
  const used = new Array(actual.length).fill(false);
  const pick = new Array(expected.length);
  const go = (i) => {
    if (i === expected.length) return true;
    for (let j = 0; j < actual.length; j++) {
      if (used[j] || !framesMatch(expected[i].json, actual[j], bindings, initIds)) continue;
      used[j] = true;
      pick[i] = j;
      if (go(i + 1)) return true;
      used[j] = false;
    }
    return false;
  };
  return go(0) ? pick : null;
}

/** Rewrites a `-->` frame per rule 4; returns the bytes to write. */
function outgoing(block, bindings) {
  const m = block.json;
  if (!isObj(m)) return frame(block.body);
  let out = null;
  if (!has(m, 'method') && has(m, 'id') && bindings.has(idKey(m.id))) out = { ...m, id: bindings.get(idKey(m.id)) };
  if (m.method === '$/cancelRequest' && has(m.params, 'id') && bindings.has(idKey(m.params.id))) {
    out = { ...m, params: { ...m.params, id: bindings.get(idKey(m.params.id)) } };
  }
  return out ? frame(JSON.stringify(out)) : frame(block.body); // unchanged frames go byte for byte
}

/** The wait for the first frame of an expectation group (it may include the plugin's start-up). */
const GROUP_TIMEOUT = 10000;

/**
 * Replays a transcript against a plugin script (default: the example its first line names).
 * Resolves with a summary; rejects with an explanation on the first mismatch. `frameTimeout`
 * bounds the wait for each further frame of a group once its first frame came (a test proving a
 * missing frame sets it short); the first frame of a group always gets at least GROUP_TIMEOUT.
 * @param {Buffer} buf
 * @param {{script?: string, frameTimeout?: number, name?: string}} [opts]
 */
export async function replay(buf, opts = {}) {
  const { plugin, blocks } = parseTranscript(buf);
  const script = opts.script ?? PLUGINS[plugin];
  if (!script) throw new Error(`no example plugin for "# plugin: ${plugin}"`);
  const name = opts.name ?? 'transcript';
  const timeout = opts.frameTimeout ?? GROUP_TIMEOUT;
  const p = new Plugin(script);
  const bindings = new Map();
  const initIds = new Set();
  let groups = 0;
  try {
    let i = 0;
    while (i < blocks.length) {
      const b = blocks[i];
      if (b.dir === '-->') {
        if (isObj(b.json) && b.json.method === 'tether/initialize' && has(b.json, 'id')) initIds.add(idKey(b.json.id));
        p.sendBytes(outgoing(b, bindings));
        i++;
        continue;
      }
      const group = [];
      while (i < blocks.length && blocks[i].dir === '<--') group.push(blocks[i++]);
      const actual = [];
      for (let k = 0; k < group.length; k++) {
        try {
          actual.push(await p.next(k === 0 ? Math.max(timeout, GROUP_TIMEOUT) : timeout));
        } catch {
          throw new Error(
            `${name}: expectation group at line ${group[0].line} wants ${group.length} frames, the plugin sent ${actual.length}:\n` +
              `  got: ${actual.map((m) => JSON.stringify(m)).join('\n       ')}\n  want: ${group.map((g) => g.body.toString()).join('\n        ')}\n  stderr: ${p.stderr.slice(-800)}`,
          );
        }
      }
      if (p.strictErrors.length) throw new Error(`${name}: the plugin's stdout is not clean: ${p.strictErrors.join('; ')}`);
      const pick = matchGroup(group, actual, bindings, initIds);
      if (!pick) {
        throw new Error(
          `${name}: frames of the expectation group at line ${group[0].line} do not match.\n` +
            `  want (any order):\n    ${group.map((g) => g.body.toString()).join('\n    ')}\n` +
            `  got:\n    ${actual.map((m) => JSON.stringify(m)).join('\n    ')}`,
        );
      }
      // Rule 2: a frame already waiting now is beyond the group (the next `-->` is not sent yet).
      if (p.queue.length) throw new Error(`${name}: the plugin sent more than the expectation group at line ${group[0].line}: ${JSON.stringify(p.queue[0])}`);
      // Rule 4: bind the transcript's request ids to the ids the plugin used.
      group.forEach((g, k) => {
        if (isRequest(g.json)) bindings.set(idKey(g.json.id), actual[pick[k]].id);
      });
      groups++;
    }
    // Rule 5: close stdin; exit 0 within 2 s; nothing more on stdout.
    p.closeStdin();
    const { code, signal } = await p.exit(2000);
    if (code !== 0) throw new Error(`${name}: the plugin exited with ${code ?? signal}, not 0; stderr: ${p.stderr.slice(-800)}`);
    if (p.queue.length || p.strictErrors.length) {
      throw new Error(`${name}: the plugin wrote more after the last block: ${JSON.stringify(p.queue).slice(0, 800)} ${p.strictErrors.join('; ')}`);
    }
    return { plugin, blocks: blocks.length, groups };
  } finally {
    p.kill();
  }
}
