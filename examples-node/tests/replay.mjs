// A replayer for spec/transcripts/*.tether, following spec/transcripts/README.md exactly:
// it plays the host, writes the `-->` frames, reads each run of `<--` frames as one
// expectation group matched in any order, binds the ids of the plugin's requests and streams,
// and at the end closes stdin and expects exit 0 within 2 seconds with nothing more on stdout.
// Attachments and streams (the 1.1 rules): bytes compare equal as base64 or as `{"$bytes": i}`,
// the plugin's `$/stream.credit` is not an expectation, and the plugin's `$/stream.data` for a
// stream is compared as one concatenation, however it was chunked.

import { Plugin, PLUGINS, attachmentFrame, frame } from './harness.mjs';

/**
 * Parses a transcript. Throws on anything the format does not allow. A frame may carry
 * attachments (SPEC.md §2.8) in the writer form: `Tether-Attachments` right after
 * `Content-Length`; `body` is then its JSON and `atts` its attachments.
 * @param {Buffer} buf
 * @returns {{plugin: string, blocks: {dir: '-->' | '<--', body: Buffer, atts: Buffer[] | null, raw: Buffer, json: any, line: number}[]}}
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
  if (!m) fail('the first line must be "# plugin: <example>", e.g. "# plugin: kv"');
  const plugin = m[1];
  while (pos < buf.length) {
    const text = readLine();
    if (text.startsWith('#')) continue;
    if (text !== '-->' && text !== '<--') fail(`expected a comment or a direction line, got ${JSON.stringify(text.slice(0, 60))}`);
    const lineAt = line;
    const head = /^Content-Length: (0|[1-9][0-9]*)\r\n(?:Tether-Attachments: ((?:0|[1-9][0-9]*)(?:,(?:0|[1-9][0-9]*))*)\r\n)?\r\n/.exec(
      buf.toString('latin1', pos, pos + 4200),
    );
    if (!head) fail('expected a frame in writer form (Content-Length: N\\r\\n\\r\\n)');
    const frameStart = pos;
    pos += head[0].length;
    const n = Number(head[1]);
    if (pos + n > buf.length) fail(`the frame declares ${n} bytes but the file ends first`);
    const lengths = head[2] === undefined ? null : head[2].split(',').map(Number);
    const sum = lengths ? lengths.reduce((a, b) => a + b, 0) : 0;
    if (sum > n) fail(`the attachments (${sum} bytes) are longer than the frame (${n} bytes)`);
    const body = buf.subarray(pos, pos + n - sum);
    let at = pos + n - sum;
    const atts = lengths ? lengths.map((k) => buf.subarray(at, (at += k))) : null;
    pos += n;
    const raw = buf.subarray(frameStart, pos);
    if (buf[pos] !== 0x0a) fail('a frame must be followed by one \\n');
    pos++;
    // Count the lines the body spans, for messages.
    for (const c of buf.subarray(pos - n, pos)) if (c === 0x0a) line++;
    line++;
    let json;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      json = undefined; // a transcript may show a body that is not JSON (a parse error)
    }
    blocks.push({ dir: text, body, atts, raw, json, want: atts ? resolveBytes(json, atts) : json, line: lineAt });
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

/**
 * Rule (a): a copy of `v` in which every `{"$bytes": i}` is the base64 string of attachment i,
 * so that bytes compare equal however they were written. A reference to a missing attachment
 * is left as it is (and so matches nothing but itself).
 */
export function resolveBytes(v, atts) {
  if (!atts || v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map((x) => resolveBytes(x, atts));
  const keys = Object.keys(v);
  if (keys.length === 1 && keys[0] === '$bytes' && Number.isInteger(v.$bytes) && v.$bytes >= 0 && v.$bytes < atts.length) {
    return atts[v.$bytes].toString('base64');
  }
  return Object.fromEntries(keys.map((k) => [k, resolveBytes(v[k], atts)]));
}

const idKey = (id) => JSON.stringify(id);
/** The error codes whose `data` SPEC.md Appendix A fixes, and so the replayer compares. */
const FIXED_DATA = new Set([-32001, -32003, -32004, 1001, 1002]);
const isRequest = (m) => has(m, 'method') && has(m, 'id');
const isStreamNote = (m) => isObj(m) && typeof m.method === 'string' && m.method.startsWith('$/stream.') && !has(m, 'id');
const isData = (m) => isStreamNote(m) && m.method === '$/stream.data';

/**
 * Stream ids under rule (b): an even id in an expected frame was chosen by the plugin, and is
 * bound to the id the plugin used, as request ids are (rule 4). `sb` holds the bindings so far,
 * `fresh` those this comparison makes.
 */
function streamIdEq(e, a, sb, fresh) {
  if (!Number.isSafeInteger(e) || e <= 0 || e % 2 === 1) return e === a;
  const bound = sb.get(e) ?? fresh.get(e);
  if (bound !== undefined) return a === bound;
  if (!Number.isSafeInteger(a) || a <= 0 || a % 2 === 1) return false;
  for (const x of [...sb.values(), ...fresh.values()]) if (x === a) return false;
  fresh.set(e, a);
  return true;
}

/** jsonEqual, with the `$stream` member of stream objects compared under rule (b). */
function eqStreams(e, a, sb, fresh) {
  if (e === a) return true;
  if (typeof e !== typeof a || e === null || a === null || typeof e !== 'object') return false;
  if (Array.isArray(e) !== Array.isArray(a)) return false;
  if (Array.isArray(e)) return e.length === a.length && e.every((x, i) => eqStreams(x, a[i], sb, fresh));
  const ke = Object.keys(e);
  if (ke.length !== Object.keys(a).length) return false;
  return ke.every((k) => Object.hasOwn(a, k) && (k === '$stream' ? streamIdEq(e[k], a[k], sb, fresh) : eqStreams(e[k], a[k], sb, fresh)));
}

/**
 * Whether an actual frame matches an expected one under the README's rules (rule 3), given the
 * ids bound so far (transcript id -> plugin id), the transcript ids of the initialize requests
 * and the stream bindings `sb`. Returns false, or the new stream bindings the match makes.
 */
export function framesMatch(exp, act, bindings, initIds, sb = new Map()) {
  const fresh = new Map();
  return matches(exp, act, bindings, initIds, sb, fresh) ? fresh : false;
}

function matches(exp, act, bindings, initIds, sb, fresh) {
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
    for (const k of keys) if (k !== 'id' && !eqStreams(exp[k], act[k], sb, fresh)) return false;
    return true;
  }
  // The plugin's $/cancelRequest names one of its own requests: rewrite through the bindings.
  if (exp.method === '$/cancelRequest' && has(exp.params, 'id')) {
    const bound = bindings.get(idKey(exp.params.id));
    const want = bound === undefined ? exp : { ...exp, params: { ...exp.params, id: bound } };
    return jsonEqual(want, act);
  }
  // $/stream.end and $/stream.abort name a stream: its id under rule (b); an abort's error as an
  // error response's is compared (its code).
  if (isStreamNote(exp) && has(exp.params, 'stream')) {
    if (act.method !== exp.method || has(act, 'id') || act.jsonrpc !== exp.jsonrpc || !isObj(act.params)) return false;
    if (!streamIdEq(exp.params.stream, act.params.stream, sb, fresh)) return false;
    if (exp.method === '$/stream.abort') return isObj(act.params.error) && act.params.error.code === exp.params.error?.code;
    const { stream: _e, ...eRest } = exp.params;
    const { stream: _a, ...aRest } = act.params;
    return jsonEqual(eRest, aRest);
  }
  return eqStreams(exp, act, sb, fresh);
}

/** Finds a one-to-one matching of expected to actual frames (backtracking; groups are small). */
function matchGroup(expected, actual, bindings, initIds, sb) {
  const used = new Array(actual.length).fill(false);
  const pick = new Array(expected.length);
  let found = null;
  const go = (i, binds) => {
    if (i === expected.length) {
      found = binds;
      return true;
    }
    for (let j = 0; j < actual.length; j++) {
      if (used[j]) continue;
      const fresh = framesMatch(expected[i], actual[j], bindings, initIds, binds);
      if (!fresh) continue;
      used[j] = true;
      pick[i] = j;
      if (go(i + 1, new Map([...binds, ...fresh]))) return true;
      used[j] = false;
    }
    return false;
  };
  return go(0, sb) ? { pick, sb: found } : null;
}

/** Rewrites a `-->` frame per rule 4 and rule (b); returns the bytes to write. */
function outgoing(block, bindings, sb) {
  const m = block.json;
  if (!isObj(m)) return block.raw;
  let out = null;
  if (!has(m, 'method') && has(m, 'id') && bindings.has(idKey(m.id))) out = { ...m, id: bindings.get(idKey(m.id)) };
  if (m.method === '$/cancelRequest' && has(m.params, 'id') && bindings.has(idKey(m.params.id))) {
    out = { ...m, params: { ...m.params, id: bindings.get(idKey(m.params.id)) } };
  }
  if (isStreamNote(m) && has(m.params, 'stream') && sb.has(m.params.stream)) {
    out = { ...m, params: { ...m.params, stream: sb.get(m.params.stream) } };
  }
  // Rule (b) also rewrites `$stream` members that name one of the plugin's streams.
  const rebound = rebindStreams(out ?? m, sb);
  if (rebound !== (out ?? m)) out = rebound;
  if (!out) return block.raw; // unchanged frames go byte for byte
  return block.atts ? attachmentFrame(JSON.stringify(out), block.atts) : frame(JSON.stringify(out));
}

/** `v` with every bound even `$stream` member replaced by the plugin's id (a copy if any is). */
function rebindStreams(v, sb) {
  if (v === null || typeof v !== 'object' || sb.size === 0) return v;
  if (Array.isArray(v)) {
    const out = v.map((x) => rebindStreams(x, sb));
    return out.some((x, i) => x !== v[i]) ? out : v;
  }
  let out = null;
  for (const k of Object.keys(v)) {
    const x = v[k];
    const y = k === '$stream' && sb.has(x) ? sb.get(x) : rebindStreams(x, sb);
    if (y !== x) (out ??= { ...v })[k] = y;
  }
  return out ?? v;
}

/** The wait for the first frame of an expectation group (it may include the plugin's start-up). */
const GROUP_TIMEOUT = 10000;

/** Rule (d): the expected data of each stream in a group, concatenated. */
function expectedData(group) {
  const data = new Map();
  for (const g of group) {
    if (!isData(g.want)) continue;
    const id = g.want.params.stream;
    const bytes = Buffer.from(typeof g.want.params.data === 'string' ? g.want.params.data : '', 'base64');
    data.set(id, Buffer.concat([data.get(id) ?? Buffer.alloc(0), bytes]));
  }
  return data;
}

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
  // Rule (c): the plugin's credit grants are not expectations; they are skipped wherever they come.
  p.onMessage = (m) => isStreamNote(m) && m.method === '$/stream.credit';
  const bindings = new Map();
  let sb = new Map();
  const initIds = new Set();
  let groups = 0;
  try {
    let i = 0;
    while (i < blocks.length) {
      const b = blocks[i];
      if (b.dir === '-->') {
        if (isObj(b.json) && b.json.method === 'tether/initialize' && has(b.json, 'id')) {
          initIds.add(idKey(b.json.id));
          // The harness's strict reader accepts attachment frames once both sides announced them.
          p.initIds.add(b.json.id);
          p.hostCaps = b.json.params?.capabilities ?? {};
        }
        p.sendBytes(outgoing(b, bindings, sb));
        i++;
        continue;
      }
      const group = [];
      while (i < blocks.length && blocks[i].dir === '<--') group.push(blocks[i++]);
      // Rule (d): data frames are compared per stream as one concatenation; the other frames
      // one to one. Read until every other frame came and as many data bytes as expected.
      const wantData = expectedData(group);
      // Rule (c): a `$/stream.credit` written in the transcript is not waited for either.
      const others = group.filter((g) => !isData(g.want) && !(isStreamNote(g.want) && g.want.method === '$/stream.credit'));
      let dataBytes = 0;
      for (const d of wantData.values()) dataBytes += d.length;
      const actual = [];
      const gotData = new Map(); // plugin stream id -> {chunks, lastAt}
      let gotBytes = 0;
      let arrived = 0;
      while (actual.length < others.length || gotBytes < dataBytes) {
        let m;
        try {
          m = await p.next(arrived === 0 ? Math.max(timeout, GROUP_TIMEOUT) : timeout);
        } catch {
          throw new Error(
            `${name}: expectation group at line ${group[0].line} wants ${others.length} frames and ${dataBytes} bytes of stream data, ` +
              `the plugin sent ${actual.length} frames and ${gotBytes} bytes:\n` +
              `  got: ${actual.map((x) => JSON.stringify(x)).join('\n       ')}\n  want: ${group.map((g) => g.body.toString()).join('\n        ')}\n  stderr: ${p.stderr.slice(-800)}`,
          );
        }
        arrived++;
        if (isData(m)) {
          const bytes = Buffer.from(resolveBytes(m, m.$atts).params.data ?? '', 'base64');
          const entry = gotData.get(m.params.stream) ?? { chunks: [], lastAt: 0 };
          entry.chunks.push(bytes);
          entry.lastAt = arrived;
          gotData.set(m.params.stream, entry);
          gotBytes += bytes.length;
          continue;
        }
        Object.defineProperty(m, '$at', { value: arrived, enumerable: false });
        actual.push(m);
      }
      if (p.strictErrors.length) throw new Error(`${name}: the plugin's stdout is not clean: ${p.strictErrors.join('; ')}`);
      const resolved = actual.map((m) => (m.$atts ? resolveBytes(m, m.$atts) : m));
      const match = matchGroup(
        others.map((g) => g.want),
        resolved,
        bindings,
        initIds,
        sb,
      );
      const mismatch = (why) =>
        new Error(
          `${name}: frames of the expectation group at line ${group[0].line} do not match${why ? ` (${why})` : ''}.\n` +
            `  want (any order):\n    ${group.map((g) => g.body.toString()).join('\n    ')}\n` +
            `  got:\n    ${actual.map((m) => JSON.stringify(m)).join('\n    ')}${gotData.size ? `\n    and stream data on ${[...gotData.keys()].join(', ')}` : ''}`,
        );
      if (!match) throw mismatch();
      // Rule (d): each expected stream's data, on the plugin's id for it, as one concatenation,
      // all of it before that stream's end.
      for (const [eid, want] of wantData) {
        const aid = eid % 2 === 0 ? match.sb.get(eid) ?? sb.get(eid) : eid;
        const got = gotData.get(aid);
        if (!got || !Buffer.concat(got.chunks).equals(want)) throw mismatch(`the data of stream ${eid} differs`);
        gotData.delete(aid);
        const end = actual.find((m) => m.method === '$/stream.end' && m.params?.stream === aid);
        if (end && end.$at < got.lastAt) throw mismatch(`data of stream ${eid} came after its end`);
      }
      if (gotData.size) throw mismatch(`unexpected data on stream ${[...gotData.keys()].join(', ')}`);
      // Rule 2: a frame already waiting now is beyond the group (the next `-->` is not sent yet).
      if (p.queue.length) throw new Error(`${name}: the plugin sent more than the expectation group at line ${group[0].line}: ${JSON.stringify(p.queue[0])}`);
      // Rule 4: bind the transcript's request ids to the ids the plugin used; rule (b) its streams.
      others.forEach((g, k) => {
        if (isRequest(g.want)) bindings.set(idKey(g.want.id), actual[match.pick[k]].id);
      });
      sb = match.sb;
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
