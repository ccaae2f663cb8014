// tether.mjs: a Tether plugin SDK for Node.js 18+ (SPEC.md, protocol version 1).
//
// One file, no dependencies: copy it next to your plugin and `import { serve } from './tether.mjs'`.
// Types for editors are in tether.d.ts beside it.
//
// Importing this module redirects `console.log`/`console.info`/`console.debug` and
// `process.stdout.write` to stderr (SPEC.md §8.4.2): stdout carries frames only (unless the host
// announced the fds transport, §13: frames then travel on two inherited descriptors, and stdin,
// stdout and stderr stay the user's terminal). Node.js cannot
// move file descriptor 1, so this is best effort: `fs.writeSync(1, ...)` and child processes that
// inherit stdout still write to the frame stream. Start children with stdio ['ignore', 2, 2].

// No imports: `Buffer`, `TextDecoder`, `AbortController`, `ReadableStream`, `WritableStream` and
// `process` are globals, and each `import` of a built-in module costs start-up time (the SDK
// answers initialize within a few milliseconds of the bare interpreter's start).
//
// Protocol 1.1 features, used when the host announces them too: attachments (raw bytes after a
// frame's JSON, SPEC.md §2.8) and streams with credit-based flow control (§12), which handlers
// see as web streams.

// ---------------------------------------------------------------------------------------------
// Constants (SPEC.md §1.4, §2, Appendix A)

/** The core protocol version this SDK speaks. */
export const PROTOCOL_VERSION = 1;
/** The reference cookie of SPEC.md §1.4, used when `serve` is given no `cookie`. */
export const REFERENCE_COOKIE = Object.freeze({
  key: 'TETHER_MAGIC_COOKIE',
  value: '7c1e4b9a-tether-reference-plugin',
});
/** The maximum body length until the host announces its own (SPEC.md §2.5). */
export const DEFAULT_MAX_FRAME_SIZE = 33554432;
/** The smallest `maxFrameSize` a host may announce. */
export const MIN_MAX_FRAME_SIZE = 1048576;
/** The longest header block a reader accepts (SPEC.md §2.3). */
export const MAX_HEADER_BLOCK = 4096;

/** Every error code of SPEC.md Appendix A that the protocol itself defines. */
export const ErrorCode = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  UNSUPPORTED_VERSION: -32001,
  NOT_INITIALIZED: -32002,
  UNKNOWN_HANDLE: -32003,
  FRAME_TOO_LARGE: -32004,
  SHUTTING_DOWN: -32005,
  STREAM_ERROR: -32006,
  REQUEST_CANCELLED: -32800,
});
const E = ErrorCode;

const LEVELS = Object.freeze({ trace: 0, debug: 1, info: 2, warn: 3, error: 4 });
const OUR_PROTOCOL_VERSIONS = [PROTOCOL_VERSION];
const NAME_RE = /^[A-Za-z][A-Za-z0-9_]*$/;
/** How long a failed write waits for the end of stdin before it is fatal (SPEC.md §1.5). */
const HOST_LEAVING_WINDOW_MS = 1000;
/** The credit a peer has on each stream before any `$/stream.credit` (SPEC.md §12.3). */
export const DEFAULT_INITIAL_CREDIT = 1048576;
/** The largest `$/stream.data` chunk this SDK writes (the shared choice of the reference SDKs). */
const MAX_CHUNK = 1048576;
/** Bytes of frames waiting for stdout above which stream producers wait (memory stays bounded
 * even when the host grants a huge window). */
const OUT_HIGH_WATER = 4 * 1048576;

// ---------------------------------------------------------------------------------------------
// stdout protection (SPEC.md §8.4.2). Done at import, before the plugin's own code runs.

/** The environment variable that announces the transport (SPEC.md §13.2). */
const TRANSPORT_ENV = 'TETHER_TRANSPORT';
/** Whether frames travel on two inherited descriptors (SPEC.md §13): then stdout is the user's
 * (a terminal, say) and is left alone. An unknown value is refused by serve(). */
const fdsTransport = ![undefined, '', 'stdio'].includes(process.env[TRANSPORT_ENV]);

/** Where frames go: stdout, or the write descriptor of the fds transport (set by serve()). */
let stdout = process.stdout;
/** Where frames come from: stdin, or the read descriptor of the fds transport (set by serve()). */
let frameIn = null;
/** The real write of the frame stream: the private path for frames. */
let frameWrite = stdout.write;
/**
 * The frame descriptor for direct writes, `{ fs, fd }`, when it is a non-blocking pipe or socket
 * (libuv made it so when it opened it as a stream; checked in /proc/self/fdinfo on Linux), else
 * null: then every frame goes through the stream. Set by serve().
 */
let directOut = null;
/** The write descriptor of the fds transport (set by serve()). */
let frameOutFd = -1;
if (!fdsTransport) {
  stdout.write = function strayStdoutWrite(chunk, encoding, callback) {
    return process.stderr.write(chunk, encoding, callback);
  };
}

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * An error that travels to the peer as a JSON-RPC error object. Throw it from a handler for an
 * application error (use a code outside -32768..-32000, SPEC.md §5.5); calls to the peer reject
 * with it when the peer answers with an error.
 */
export class TetherError extends Error {
  /**
   * @param {number} code
   * @param {string} message one human sentence
   * @param {unknown} [data] details for programs
   */
  constructor(code, message, data) {
    super(message);
    this.name = 'TetherError';
    /** @type {number} */
    this.code = code;
    /** @type {unknown} */
    this.data = data;
  }

  /** The wire form `{code, message, data?}`. */
  toJSON() {
    const o = { code: this.code, message: this.message };
    if (this.data !== undefined) o.data = this.data;
    return o;
  }
}

/**
 * The rejection of a call this plugin made to the host (`handle.call`, `ctx.request`, ...): the
 * host's error, or -32800 when the call was cancelled. When a handler lets one escape, the SDK
 * does not pass the code on as its own answer (a -32601 from `sum` does not mean that
 * `counter.put` is unknown): it answers -32603 with the host's error in `data.cause`. Catch it,
 * or throw a TetherError of your own, to answer otherwise.
 */
export class RemoteError extends TetherError {
  /**
   * @param {string} method the method that was called (`sum` for an invoke)
   * @param {number} code @param {string} message @param {unknown} [data]
   */
  constructor(method, code, message, data) {
    super(code, message, data);
    this.name = 'RemoteError';
    /** @type {string} */
    this.method = method;
  }
}

const cancelledError = (method) =>
  method === undefined ? new TetherError(E.REQUEST_CANCELLED, 'request cancelled') : new RemoteError(method, E.REQUEST_CANCELLED, 'request cancelled');

// ---------------------------------------------------------------------------------------------
// Schemas: small helpers that write JSON Schema, and the validator used for params.

/** Helpers that write the JSON Schemas (draft 2020-12) a plugin declares for its methods. */
export const schema = Object.freeze({
  /**
   * An object schema. Every property is required unless listed in `optional`.
   * @param {Record<string, object>} [properties]
   * @param {{optional?: string[], additionalProperties?: boolean | object, description?: string}} [options]
   */
  object(properties = {}, options = {}) {
    const optional = new Set(options.optional ?? []);
    /** @type {Record<string, unknown>} */
    const s = { type: 'object', properties };
    const required = Object.keys(properties).filter((k) => !optional.has(k));
    if (required.length) s.required = required;
    if (options.additionalProperties !== undefined) s.additionalProperties = options.additionalProperties;
    if (options.description) s.description = options.description;
    return s;
  },
  /** @param {object} [extra] e.g. `{minLength: 1}` */
  string: (extra = {}) => ({ type: 'string', ...extra }),
  /**
   * Bytes: standard padded base64 on the wire (SPEC.md §5.3), or an attachment reference
   * `{"$bytes": i}` once attachments are negotiated (§2.8); a `Buffer` in your handler. The
   * schema is the spec's Bytes schema (`#/$defs/Bytes` of spec/interfaces/kv.json), so a plugin
   * declares exactly what an interface file allows.
   */
  bytes: (extra = {}) => ({ ...bytesSchema(), ...extra }),
  /** An integer (SPEC.md §5.4); this SDK accepts only exactly representable ones (±2^53-1). */
  integer: (extra = {}) => ({ type: 'integer', ...extra }),
  number: (extra = {}) => ({ type: 'number', ...extra }),
  boolean: (extra = {}) => ({ type: 'boolean', ...extra }),
  /** @param {object} items */
  array: (items, extra = {}) => ({ type: 'array', items, ...extra }),
  /**
   * A stream (SPEC.md §12.1). `'read'`: the sender produces and you consume it (a
   * `ReadableStream` in your handler); `'write'`: you produce (a `WritableStream`).
   * @param {'read' | 'write'} mode
   */
  stream: (mode) => ({
    type: 'object',
    properties: { $stream: { type: 'integer', minimum: 1 }, mode: { const: mode } },
    required: ['$stream', 'mode'],
    additionalProperties: false,
    description: mode === 'read' ? 'a stream of bytes that the sender produces' : 'a stream of bytes that the receiver produces',
  }),
  /** A handle to an object of `iface` that the peer serves (SPEC.md §6.1). */
  handle: (iface) => ({
    type: 'object',
    properties: { $handle: { type: 'string', minLength: 1 }, interface: { const: iface } },
    required: ['$handle', 'interface'],
    additionalProperties: false,
    description: `a handle to an object implementing ${iface}`,
  }),
  /** `{}`: a method without params or without result. */
  empty: () => ({ type: 'object' }),
});

/** The spec's Bytes schema: a base64 string, or an attachment reference (SPEC.md §2.8). */
function bytesSchema() {
  return {
    anyOf: [
      { type: 'string', contentEncoding: 'base64' },
      {
        type: 'object',
        properties: { $bytes: { type: 'integer', minimum: 0 } },
        required: ['$bytes'],
        additionalProperties: false,
      },
    ],
  };
}

const B64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
const B64_VALUE = (c) =>
  c >= 65 && c <= 90 ? c - 65 : c >= 97 && c <= 122 ? c - 71 : c >= 48 && c <= 57 ? c + 4 : c === 43 ? 62 : 63;

/**
 * Decodes strict base64 (standard alphabet, `=` padding, no line breaks, canonical final bits,
 * SPEC.md §5.3); `null` when the string is not that. Node's own decoder is lenient, hence this.
 * @param {string} s
 * @returns {Buffer | null}
 */
export function decodeBase64(s) {
  const n = s.length;
  if (n % 4 !== 0 || !B64_RE.test(s)) return null;
  if (n === 0) return Buffer.alloc(0);
  const pad = s.charCodeAt(n - 1) === 61 ? (s.charCodeAt(n - 2) === 61 ? 2 : 1) : 0;
  // Unused bits of the last data character must be zero, as in every strict decoder.
  if (pad === 2 && (B64_VALUE(s.charCodeAt(n - 3)) & 0x0f) !== 0) return null;
  if (pad === 1 && (B64_VALUE(s.charCodeAt(n - 2)) & 0x03) !== 0) return null;
  // Its own memory, exactly its size: Buffer.from(s, 'base64') puts a small value in Node's
  // shared 8 KiB pool, and a handler that keeps it (a kv store) would keep the whole slab.
  const out = Buffer.allocUnsafeSlow((n / 4) * 3 - pad);
  out.write(s, 0, 'base64');
  return out;
}

const typeOf = (v) =>
  v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'number' ? (Number.isInteger(v) ? 'integer' : 'number') : typeof v;

function typeMatches(want, v, actual) {
  switch (want) {
    case 'integer':
      return actual === 'integer';
    case 'number':
      return actual === 'integer' || actual === 'number';
    default:
      return want === actual;
  }
}

/**
 * Checks `value` (found at `holder[key]`) against the subset of JSON Schema that method schemas
 * use: type, properties, required, additionalProperties, items, const, enum, minLength,
 * maxLength, minimum, maximum, minItems, maxItems, allOf, anyOf, oneOf, local $ref (within
 * `root`, the method schema), contentEncoding base64 (the string is replaced by a Buffer) and
 * attachment references `{"$bytes": i}` where the schema allows them (replaced by the
 * attachment). Other keywords are ignored. Returns a problem, or null.
 * @returns {{path: string, problem: string} | null}
 */
function check(s, holder, key, path, root = s, atts = null) {
  if (s === true || s == null) return null;
  if (s === false) return { path, problem: 'no value is allowed here' };
  const v = holder[key];
  if (v instanceof Uint8Array) return null; // bytes this walk already decoded
  if ((s.contentEncoding === 'base64' || (s.properties && Object.hasOwn(s.properties, '$bytes'))) && isBytesRef(v)) {
    // `{"$bytes": i}`: attachment i of the frame, in place of the base64 string (SPEC.md §2.8).
    const bytes = attachment(atts, v.$bytes);
    if (bytes === null) return { path, problem: badRef(atts, v.$bytes) };
    holder[key] = bytes;
    return null;
  }
  if (typeof s.$ref === 'string') {
    const p = check(resolveRef(root, s.$ref), holder, key, path, root, atts);
    if (p) return p;
    if (holder[key] !== v) return null;
  }
  if (Array.isArray(s.allOf)) {
    for (const sub of s.allOf) {
      const p = check(sub, holder, key, path, root, atts);
      if (p) return p;
    }
  }
  for (const word of ['anyOf', 'oneOf']) {
    if (!Array.isArray(s[word]) || s[word].length === 0) continue;
    const p = checkUnion(s[word], word === 'oneOf', holder, key, path, root, atts);
    if (p) return p;
    if (holder[key] !== v) return null;
  }
  const actual = typeOf(v);
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? s.type : [s.type];
    if (!types.some((t) => typeMatches(t, v, actual))) {
      return { path, problem: `expected ${types.join(' or ')}, got ${actual}` };
    }
  }
  if (s.const !== undefined && !jsonEqual(s.const, v)) return { path, problem: `expected ${JSON.stringify(s.const)}` };
  if (s.enum !== undefined && !s.enum.some((x) => jsonEqual(x, v))) {
    return { path, problem: `expected one of ${JSON.stringify(s.enum)}` };
  }
  if (actual === 'integer' && !Number.isSafeInteger(v)) {
    return { path, problem: 'integer outside ±(2^53-1), which this plugin cannot represent exactly' };
  }
  if (actual === 'integer' || actual === 'number') {
    if (s.minimum !== undefined && v < s.minimum) return { path, problem: `must be at least ${s.minimum}` };
    if (s.maximum !== undefined && v > s.maximum) return { path, problem: `must be at most ${s.maximum}` };
  } else if (actual === 'string') {
    if (s.minLength !== undefined || s.maxLength !== undefined) {
      let len = 0;
      for (const _ of v) len++; // code points, as JSON Schema counts
      if (s.minLength !== undefined && len < s.minLength) {
        return { path, problem: s.minLength === 1 ? 'must not be empty' : `must be at least ${s.minLength} characters long` };
      }
      if (s.maxLength !== undefined && len > s.maxLength) return { path, problem: `must be at most ${s.maxLength} characters long` };
    }
    if (s.contentEncoding === 'base64') {
      const bytes = decodeBase64(v);
      if (bytes === null) return { path, problem: 'not valid padded standard base64' };
      holder[key] = bytes;
    }
  } else if (actual === 'array') {
    if (s.minItems !== undefined && v.length < s.minItems) return { path, problem: `needs at least ${s.minItems} items` };
    if (s.maxItems !== undefined && v.length > s.maxItems) return { path, problem: `allows at most ${s.maxItems} items` };
    if (s.items !== undefined) {
      for (let i = 0; i < v.length; i++) {
        const p = check(s.items, v, i, `${path}/${i}`, root, atts);
        if (p) return p;
      }
    }
  } else if (actual === 'object') {
    if (s.required) {
      for (const name of s.required) {
        if (!Object.hasOwn(v, name)) return { path: `${path}/${name}`, problem: 'missing' };
      }
    }
    const props = s.properties;
    if (props) {
      for (const name in props) {
        if (Object.hasOwn(v, name)) {
          const p = check(props[name], v, name, `${path}/${name}`, root, atts);
          if (p) return p;
        }
      }
    }
    const extra = s.additionalProperties;
    if (extra !== undefined && extra !== true) {
      for (const name of Object.keys(v)) {
        if (props && Object.hasOwn(props, name)) continue;
        if (extra === false) return { path: `${path}/${name}`, problem: 'unexpected member' };
        const p = check(extra, v, name, `${path}/${name}`, root, atts);
        if (p) return p;
      }
    }
  }
  return null;
}

/**
 * `anyOf` (the first branch that accepts the value converts it) or `oneOf` (exactly one branch
 * may accept it). Each branch checks its own copy, so a branch that fails half-way leaves no
 * Buffer behind for the next. A refusal names the problem of the one branch whose type fits
 * the value, or every branch's.
 */
function checkUnion(branches, exactlyOne, holder, key, path, root, atts) {
  const v = holder[key];
  let accepted;
  let found = false;
  const problems = [];
  for (const branch of branches) {
    const scratch = { v: copyJson(v) };
    const p = check(branch, scratch, 'v', path, root, atts);
    if (p) {
      problems.push({ p, fits: typeFits(branch, root, v) });
      continue;
    }
    if (found) return { path, problem: 'matches more than one alternative of a oneOf' };
    found = true;
    accepted = scratch.v;
    if (!exactlyOne) break;
  }
  if (found) {
    holder[key] = accepted;
    return null;
  }
  const fitting = problems.filter((x) => x.fits);
  if (fitting.length === 1) return fitting[0].p;
  return { path, problem: `matches none of the alternatives: ${problems.map((x, i) => `(${i + 1}) ${x.p.problem}`).join('; ')}` };
}

/** Whether `v` has a type the schema (a `$ref` followed) names; true when it names none. */
function typeFits(s, root, v) {
  for (let i = 0; i < 32 && s && typeof s.$ref === 'string'; i++) s = resolveRef(root, s.$ref);
  if (!s || s.type === undefined) return true;
  const actual = typeOf(v);
  return (Array.isArray(s.type) ? s.type : [s.type]).some((t) => typeMatches(t, v, actual));
}

/** A copy of a JSON value (Buffers already decoded are kept as they are). */
function copyJson(v) {
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return v;
  if (Array.isArray(v)) return v.map(copyJson);
  const out = {};
  // defineProperty: a member named `__proto__` stays a member.
  for (const k of Object.keys(v)) Object.defineProperty(out, k, { value: copyJson(v[k]), writable: true, enumerable: true, configurable: true });
  return out;
}

/** Whether `v` is an attachment reference: an object whose only member is `$bytes`. */
function isBytesRef(v) {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, '$bytes')) return false;
  for (const k in v) if (k !== '$bytes') return false;
  return true;
}

/** The most bytes an attachment handed to a handler may keep alive beyond its own. */
const ATTACHMENT_SLACK = 4096;

/**
 * Attachment `i` of a frame, or null when the frame has none such. An attachment is a view of
 * the memory it was read into: a 64 KiB read from the pipe, Node's shared 8 KiB pool, or the
 * whole frame with its other attachments. One that would keep more than ATTACHMENT_SLACK other
 * bytes alive is copied into memory of its own (not `Buffer.from`, which uses the pool again),
 * so that a handler keeping a value (a kv store) keeps that value's bytes and no more.
 * @param {Buffer[] | null} atts @param {unknown} i
 */
function attachment(atts, i) {
  if (!atts || !Number.isSafeInteger(i) || i < 0 || i >= atts.length) return null;
  const a = atts[i];
  if (a.buffer.byteLength - a.length <= ATTACHMENT_SLACK) return a;
  const own = Buffer.allocUnsafeSlow(a.length);
  a.copy(own);
  return own;
}

const badRef = (atts, i) =>
  !atts
    ? `an attachment reference ${safeStringify(i)}, but this frame has no attachments`
    : `refers to attachment ${safeStringify(i)}, but the frame has ${atts.length} (0 to ${atts.length - 1})`;

/** A local reference (`#/$defs/Bytes`) in `root`; undefined (anything goes) otherwise. */
function resolveRef(root, ref) {
  if (ref !== '#' && !ref.startsWith('#/')) return undefined; // `#anchor`s are not followed
  let node = root;
  for (const part of ref.slice(1).split('/').slice(1)) {
    const key = decodeURIComponent(part).replaceAll('~1', '/').replaceAll('~0', '~');
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, key)) return undefined;
    node = node[key];
  }
  return node;
}

function jsonEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
}

// ---------------------------------------------------------------------------------------------
// Interface files (spec/schema/interface.schema.json): an application's interface, its versions
// and their methods' schemas, read instead of repeated in code.

/** An interface file that cannot be served; the message names the file and the cause. */
export class InterfaceFileError extends Error {
  constructor(message) {
    super(message);
    this.name = 'InterfaceFileError';
  }
}

/**
 * Reads an interface file (`spec/interfaces/kv.json`) and returns the interface for `serve()`'s
 * `interfaces`, with the methods' params and result schemas of the file.
 * @param {string | URL} file
 * @param {{handlers: object, versions?: number | number[]}} options `versions`: those to serve
 *   (every version of the file by default)
 */
export async function interfaceFromFile(file, options) {
  // Imported here: plugins that never read a file do not pay for the module at start-up.
  const { readFile } = await import('node:fs/promises');
  const source = file instanceof URL ? file.pathname : String(file);
  let text;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const why = e?.code === 'ENOENT' ? 'no such file' : e?.message ?? String(e);
    throw new InterfaceFileError(`cannot read the interface file ${source}: ${why}`);
  }
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new InterfaceFileError(`${source}: not JSON: ${e.message}`);
  }
  return interfaceFromDocument(doc, { ...options, source });
}

/**
 * `interfaceFromFile` for a document already parsed. Throws an InterfaceFileError when the
 * document is not an interface document, a chosen version is not in it, a method of a chosen
 * version has no handler, a handler is no method of any chosen version, or a `$ref` of a
 * method schema points at nothing within that schema.
 * @param {any} doc
 * @param {{handlers: object, versions?: number | number[], source?: string}} options
 */
export function interfaceFromDocument(doc, options) {
  const source = options?.source ?? 'the interface document';
  const bad = (why) => new InterfaceFileError(`${source}: ${why}`);
  const isObject = (x) => x !== null && typeof x === 'object' && !Array.isArray(x);
  const name = doc?.name;
  if (!isObject(doc) || typeof name !== 'string' || !NAME_RE.test(name) || !Array.isArray(doc.versions) || doc.versions.length === 0) {
    throw bad('not an interface document (it needs a name and a non-empty versions list, spec/schema/interface.schema.json)');
  }
  const defined = new Map();
  for (const entry of doc.versions) {
    if (!isObject(entry) || !Number.isSafeInteger(entry.version) || entry.version < 1 || !isObject(entry.methods)) {
      throw bad(`interface ${name}: every version needs a positive version number and a methods object`);
    }
    defined.set(entry.version, entry.methods);
  }
  const wanted = options?.versions;
  const chosen = wanted === undefined ? [...defined.keys()] : [...new Set(Array.isArray(wanted) ? wanted : [wanted])];
  chosen.sort((a, b) => a - b);
  const missing = chosen.filter((v) => !defined.has(v));
  if (missing.length || chosen.length === 0) {
    throw bad(`interface ${name} defines the versions ${JSON.stringify([...defined.keys()].sort((a, b) => a - b))}, not ${JSON.stringify(missing)}`);
  }
  const handlers = options?.handlers;
  if (handlers === null || (typeof handlers !== 'object' && typeof handlers !== 'function')) {
    throw bad(`interface ${name} needs \`handlers\` (an object with a function per method)`);
  }
  const versions = {};
  const served = new Set();
  for (const v of chosen) {
    versions[v] = {};
    for (const [method, decl] of Object.entries(defined.get(v))) {
      for (const part of ['params', 'result']) {
        if (decl?.[part]?.type !== 'object') throw bad(`${name}.${method} (version ${v}) needs a ${part} schema of type object`);
        const dangling = danglingRef(decl[part], decl[part]);
        if (dangling) throw bad(`${name}.${method} (version ${v}) ${part}: $ref ${JSON.stringify(dangling)} points at nothing in its schema`);
      }
      if (typeof handlers[method] !== 'function') {
        throw bad(`${name} version ${v} defines the method ${method}, but the handlers have no function ${method}`);
      }
      versions[v][method] = { params: decl.params, result: decl.result };
      served.add(method);
    }
  }
  const extra = handlerNames(handlers).filter((h) => !served.has(h)).sort();
  if (extra.length) {
    throw bad(`the handlers ${JSON.stringify(extra)} are no method of ${name} version(s) ${JSON.stringify(chosen)} (its methods: ${JSON.stringify([...served].sort())})`);
  }
  return { name, versions, handlers };
}

/** The functions of a handlers object: its own, and the methods of its class (not `_private`). */
function handlerNames(handlers) {
  const names = new Set(Object.keys(handlers));
  const proto = Object.getPrototypeOf(handlers);
  if (proto && proto !== Object.prototype && proto !== Function.prototype) {
    for (const k of Object.getOwnPropertyNames(proto)) if (k !== 'constructor') names.add(k);
  }
  return [...names].filter((k) => !k.startsWith('_') && typeof handlers[k] === 'function');
}

/** The first `$ref` of `s` that is not a local reference resolving within `root`, or null. */
function danglingRef(s, root, depth = 0) {
  if (s === null || typeof s !== 'object' || depth > 64) return null;
  if (typeof s.$ref === 'string' && resolveRef(root, s.$ref) === undefined) return s.$ref;
  for (const sub of Array.isArray(s) ? s : Object.values(s)) {
    const found = danglingRef(sub, root, depth + 1);
    if (found) return found;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Wire values: bytes become base64 strings or attachments, handles `{"$handle", "interface"}`,
// streams `{"$stream", "mode"}`.

/**
 * Whether `v` is something this SDK sends as a stream: a web stream or an async iterable. The
 * shape is tested before the globals: the first touch of `ReadableStream` loads Node's web
 * streams (about 2 ms), which a plugin that never streams should not pay on its first answer.
 */
function isStreamSource(v) {
  if (typeof v[Symbol.asyncIterator] === 'function') return true; // ReadableStream too
  return typeof v.getWriter === 'function' && typeof WritableStream === 'function' && v instanceof WritableStream;
}

/**
 * Returns `v` ready for JSON.stringify, copying only the containers that change. `w` collects
 * what the value carries besides JSON: `handles` (local handles, for their lifetime), `atts`
 * (bytes sent as attachments, once negotiated; base64 otherwise) and `streams` (streams opened,
 * where a stream may appear); a null member means "not here".
 * @param {unknown} v
 * @param {{session?: Session, handles: LocalHandle[] | null, atts: Uint8Array[] | null, streams: any[] | null} | null} w
 */
function toWire(v, w) {
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Uint8Array) {
    if (w?.atts) {
      w.atts.push(v);
      return { $bytes: w.atts.length - 1 };
    }
    return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
  }
  if (v instanceof LocalHandle) {
    if (w?.handles) w.handles.push(v);
    return { $handle: v.id, interface: v.interface };
  }
  if (v instanceof RemoteHandle) return { $handle: v.id, interface: v.interface };
  if (Array.isArray(v)) {
    let out = null;
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      const y = toWire(x, w);
      if (y !== x) (out ??= v.slice())[i] = y;
    }
    return out ?? v;
  }
  if (w?.streams && isStreamSource(v)) return w.session._openStream(v, w);
  if (typeof v.toJSON === 'function') return v;
  let out = null;
  for (const k in v) {
    if (!Object.hasOwn(v, k)) continue;
    const x = v[k];
    if (x === null || typeof x !== 'object') continue;
    const y = toWire(x, w);
    if (y !== x) (out ??= { ...v })[k] = y;
  }
  return out ?? v;
}

/**
 * Makes objects of the handles and streams in incoming params or results, and resolves the
 * attachment references that no schema placed (the whole value when there is no schema).
 * Returns the new value; on a problem it sets `cx.problem` and stops.
 * @param {unknown} v
 * @param {{session: Session, rec: any, atts: Buffer[] | null, streams: any[], problem: any}} cx
 */
function adopt(v, cx, path) {
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length && !cx.problem; i++) v[i] = adopt(v[i], cx, `${path}/${i}`);
    return v;
  }
  const session = cx.session;
  if (session._attachments && isBytesRef(v)) {
    const bytes = attachment(cx.atts, v.$bytes);
    if (bytes === null) cx.problem = { path, problem: badRef(cx.atts, v.$bytes) };
    return bytes ?? v;
  }
  if (Object.hasOwn(v, '$stream')) return session._adoptStream(v, cx, path);
  const keys = Object.keys(v);
  if (keys.length === 2 && typeof v.$handle === 'string' && v.$handle !== '' && typeof v.interface === 'string') {
    return new RemoteHandle(session, v.$handle, v.interface, cx.rec);
  }
  for (const k of keys) {
    v[k] = adopt(v[k], cx, `${path}/${k}`);
    if (cx.problem) break;
  }
  return v;
}

/** Cancels the web streams and async iterables in a value that will not be sent. */
function discardStreams(v, depth = 0) {
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array || depth > 64) return;
  if (typeof v[Symbol.asyncIterator] === 'function') {
    if (typeof v.cancel === 'function') Promise.resolve(v.cancel()).catch(() => {});
    else Promise.resolve(v[Symbol.asyncIterator]().return?.()).catch(() => {});
    return;
  }
  for (const k in v) if (Object.hasOwn(v, k)) discardStreams(v[k], depth + 1);
}

/** The `$stream` ids of the stream objects in a (raw) value, for aborting a rejected message. */
function streamIdsIn(v, out = []) {
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return out;
  if (Array.isArray(v)) {
    for (const x of v) streamIdsIn(x, out);
    return out;
  }
  if (Object.hasOwn(v, '$stream')) {
    if (Number.isSafeInteger(v.$stream) && v.$stream > 0) out.push(v.$stream);
    return out;
  }
  for (const k in v) if (Object.hasOwn(v, k)) streamIdsIn(v[k], out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Handles (SPEC.md §6)

/** A handle the host passed in params: call its methods with `tether/invoke`. */
export class RemoteHandle {
  /** @internal */
  constructor(session, id, iface, rec) {
    /** @private */ this._session = session;
    /** @private */ this._rec = rec;
    /** The owner's id for the handle. @type {string} */
    this.id = id;
    /** The interface the object implements. @type {string} */
    this.interface = iface;
  }

  /**
   * Invokes `method` on the handle and resolves with its result. While the request that brought
   * the handle is being handled, the call is cancelled with it (SPEC.md §7.2); pass `signal` to
   * tie it to something else.
   * @param {string} method the short method name, e.g. `sum`
   * @param {object} [params]
   * @param {{signal?: AbortSignal, onProgress?: (p: object) => void}} [options] `onProgress` asks
   *   the owner for progress (SPEC.md §14.2.4)
   */
  call(method, params = {}, options = {}) {
    if (!options.signal && this._rec?.cancelled) return Promise.reject(cancelledError(method));
    const rec = options.signal || !this._rec || this._rec.answered ? null : this._rec;
    return this._session._request('tether/invoke', { handle: this.id, method, params }, rec, options.signal, method, options.onProgress);
  }

  /** Keeps the handle alive after the request that carried it (SPEC.md §6.3); call it before
   * that request's handler returns. */
  retain() {
    return this._session._request('tether/retain', { handle: this.id }, null, undefined);
  }

  /** Ends the life of a retained handle. */
  release() {
    this._session._notify('$/release', { handle: this.id });
  }

  toJSON() {
    return { $handle: this.id, interface: this.interface };
  }
}

/** An object this plugin serves to the host; put it in the params of a request to the host. */
export class LocalHandle {
  /** @internal */
  constructor(id, iface, target) {
    this.id = id;
    this.interface = iface;
    /** @private */ this._target = target;
    /** Outgoing request ids that carry it; it lives while any is pending, or while retained. */
    /** @private */ this._scopes = new Set();
    /** @private */ this._retained = false;
  }

  get live() {
    return this._retained || this._scopes.size > 0;
  }

  toJSON() {
    return { $handle: this.id, interface: this.interface };
  }
}

// ---------------------------------------------------------------------------------------------
// Streams (SPEC.md §12). The host's stream objects become web streams in handlers; web streams
// (and async iterables of bytes) in what the plugin sends become the plugin's streams.

/** A stream error (-32006) about stream `id`; `cause` is the peer's error when it aborted. */
const streamError = (id, message, cause) => new TetherError(E.STREAM_ERROR, message, cause === undefined ? { stream: id } : { stream: id, cause });

/** The stream list of messages of a session without streams: always empty. */
const NO_STREAMS = Object.freeze([]);

/** The `{code, message, data?}` to send in `$/stream.abort` for a local reason. */
function abortObject(id, reason) {
  if (reason instanceof TetherError) return reason.toJSON();
  const text = reason instanceof Error ? reason.message : reason === undefined ? 'the stream was aborted' : String(reason);
  return { code: E.STREAM_ERROR, message: text, data: { stream: id } };
}

/**
 * A stream this plugin consumes: the host produces, the application reads `readable`. It holds
 * at most the window it granted (SPEC.md §12.3) and grants more as the application reads, one
 * `$/stream.credit` per half window consumed, so a reader that stops stops the host, not the
 * connection.
 */
class InStream {
  constructor(session, id) {
    this.s = session;
    this.id = id;
    this.window = session._ourCredit;
    /** Bytes the host may still send. */
    this.allowed = this.window;
    /** Bytes handed to the application since the last grant. */
    this.consumed = 0;
    this.queue = [];
    /** `$/stream.end` arrived. */
    this.ended = false;
    /** Closed, errored or cancelled: nothing more is delivered. */
    this.done = false;
    /** The pending pull's resolve, while the application waits for data. */
    this.waiting = null;
    this.c = null;
    /** A WritableStream of the plugin's that this stream is piped into (a `mode: write` it sent). */
    this.sink = null;
    // highWaterMark 0: the web stream asks for a chunk only when the application reads, so the
    // chunks wait here, counted against the window, and credit follows real consumption.
    this.readable = new ReadableStream(
      {
        start: (c) => {
          this.c = c;
        },
        pull: () => this._pull(),
        cancel: (reason) => this._cancelled(reason),
      },
      { highWaterMark: 0 },
    );
  }

  _pull() {
    if (this.done) return undefined;
    if (this.queue.length) return this._deliver(this.queue.shift());
    if (this.ended) return this._close();
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }

  _deliver(chunk) {
    this.c.enqueue(chunk);
    this.consumed += chunk.length;
    if (!this.ended && this.consumed * 2 >= this.window) {
      const bytes = this.consumed;
      this.consumed = 0;
      this.allowed += bytes;
      this.s._notify('$/stream.credit', { stream: this.id, bytes });
    }
  }

  _close() {
    this.done = true;
    this.c.close();
  }

  _wake() {
    const w = this.waiting;
    if (!w) return;
    this.waiting = null;
    if (this.queue.length) this._deliver(this.queue.shift());
    else if (this.ended) this._close();
    w();
  }

  /** `$/stream.data` from the host. */
  onData(chunk) {
    if (this.done) return;
    if (this.ended) return this.fail(streamError(this.id, `the host sent data on stream ${this.id} after its end`), true);
    if (chunk.length > this.allowed) {
      const err = streamError(this.id, `the host sent ${chunk.length} bytes on stream ${this.id} with only ${this.allowed} bytes of credit left`);
      return this.fail(err, true);
    }
    this.allowed -= chunk.length;
    if (chunk.length === 0) return undefined;
    this.queue.push(chunk);
    this._wake();
    return undefined;
  }

  /** `$/stream.end` from the host: the producer is done, later messages about it are ignored. */
  onEnd() {
    if (this.done || this.ended) return;
    this.ended = true;
    this.s._forget(this);
    this._wake();
  }

  /**
   * Ends the stream with `err`: the application's reads fail with it. `tell` sends
   * `$/stream.abort` so that the host stops producing (not needed once it ended).
   */
  fail(err, tell) {
    if (this.done) return;
    this.done = true;
    this.queue = [];
    if (tell && !this.ended) this.s._notify('$/stream.abort', { stream: this.id, error: abortObject(this.id, err) });
    this.s._forget(this);
    this.c.error(err);
    const w = this.waiting;
    this.waiting = null;
    w?.();
  }

  /** The application cancelled the readable (or left a `for await` loop early). */
  _cancelled(reason) {
    if (this.done) return;
    this.done = true;
    this.queue = [];
    if (!this.ended) {
      const error = reason instanceof TetherError ? reason.toJSON() : { code: E.STREAM_ERROR, message: `the plugin stopped reading stream ${this.id}`, data: { stream: this.id } };
      this.s._notify('$/stream.abort', { stream: this.id, error });
    }
    this.s._forget(this);
  }

  /** Whether the application read it to its end (or it failed): nothing is left to abort. */
  get settled() {
    return this.done;
  }
}

/**
 * A stream this plugin produces: the host consumes. `write` sends within the credit the host
 * granted, in chunks of at most 1 MiB, and waits for more credit (or for stdout to drain).
 */
class OutStream {
  constructor(session, id) {
    this.s = session;
    this.id = id;
    this.credit = session._peerCredit;
    this.done = false;
    this.error = null;
    this.waiter = null;
    this.written = false;
    /** Stops whatever feeds the stream (a source being pumped, a WritableStream's controller). */
    this.onStop = null;
    /** The WritableStream a handler got for a `mode: write` stream. */
    this.writable = null;
  }

  /** Sends `chunk` (bytes, or a string as UTF-8); resolves once all of it is queued for stdout. */
  async write(chunk) {
    if (typeof chunk === 'string') chunk = Buffer.from(chunk);
    if (!(chunk instanceof Uint8Array)) {
      throw new TypeError(`a stream chunk must be a Uint8Array (or a string), not ${chunk === null ? 'null' : typeof chunk}`);
    }
    this.written = true;
    let off = 0;
    while (off < chunk.length) {
      if (this.done) throw this.error;
      if (this.credit === 0) {
        await new Promise((resolve) => {
          this.waiter = resolve;
        });
        continue;
      }
      const room = this.s._whenWritable();
      if (room) {
        await room;
        continue;
      }
      const n = Math.min(chunk.length - off, this.credit, this.s._maxChunk);
      this.s._sendChunk(this.id, chunk.subarray(off, off + n));
      this.credit -= n;
      off += n;
    }
    if (this.done && this.error) throw this.error;
  }

  _wake() {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** `$/stream.credit` from the host. */
  onCredit(bytes) {
    if (this.done) return;
    this.credit += bytes;
    this._wake();
  }

  /** Sends `$/stream.end`. */
  end() {
    if (this.done) return;
    this.done = true;
    this.error = streamError(this.id, `stream ${this.id} is already closed`);
    this.s._notify('$/stream.end', { stream: this.id });
    this.s._forget(this);
    this._wake();
  }

  /** Ends the stream early with `err`; `tell` sends `$/stream.abort` (false: the host aborted). */
  abort(err, tell = true) {
    if (this.done) return;
    this.done = true;
    this.error = err;
    if (tell) this.s._notify('$/stream.abort', { stream: this.id, error: abortObject(this.id, err) });
    this.s._forget(this);
    this._wake();
    try {
      this.onStop?.(err);
    } catch {
      // the source's own cancel failed: nothing more to stop
    }
  }

  get settled() {
    return this.done;
  }

  /** Feeds the stream from a ReadableStream or an async iterable of bytes, then ends it. */
  async pump(source) {
    let reader = null;
    let it = null;
    this.onStop = (err) => {
      if (reader) reader.cancel(err).catch(() => {});
      else if (it && typeof it.return === 'function') Promise.resolve(it.return()).catch(() => {});
    };
    try {
      if (typeof ReadableStream === 'function' && source instanceof ReadableStream) {
        reader = source.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done || this.done) break;
          await this.write(value);
        }
      } else {
        it = source[Symbol.asyncIterator]();
        for (;;) {
          const { done, value } = await it.next();
          if (done || this.done) break;
          await this.write(value);
        }
      }
      this.end();
    } catch (err) {
      if (this.done) return;
      stderrLine(`stream ${this.id} failed while producing: ${err?.stack ?? err}`);
      this.abort(err instanceof TetherError ? err : streamError(this.id, `the plugin's source for stream ${this.id} failed: ${err instanceof Error ? err.message : String(err)}`));
    }
  }

  /** The WritableStream a handler writes to (close ends the stream, abort aborts it). */
  makeWritable() {
    this.writable = new WritableStream({
      start: (c) => {
        this.onStop = (err) => c.error(err);
      },
      write: (chunk) => this.write(chunk),
      close: () => this.end(),
      abort: (reason) => this.abort(reason instanceof TetherError ? reason : streamError(this.id, `the plugin aborted stream ${this.id}: ${reason instanceof Error ? reason.message : String(reason ?? 'no reason given')}`)),
    });
    return this.writable;
  }
}

/**
 * A `ReadableStream` of `source`: bytes (one chunk), an iterable or an async iterable of bytes.
 * Put it in a result to send a stream, e.g. `return { data: streamFrom(buffer) }`.
 * @param {Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>} source
 */
export function streamFrom(source) {
  if (source instanceof Uint8Array) {
    return new ReadableStream({
      start(c) {
        c.enqueue(source);
        c.close();
      },
    });
  }
  let it;
  if (typeof source?.[Symbol.asyncIterator] === 'function') it = source[Symbol.asyncIterator]();
  else if (typeof source?.[Symbol.iterator] === 'function' && typeof source !== 'string') it = source[Symbol.iterator]();
  else throw new TypeError(`streamFrom needs bytes or an (async) iterable of bytes, not ${source === null ? 'null' : typeof source}`);
  return new ReadableStream(
    {
      async pull(c) {
        const { done, value } = await it.next();
        if (done) c.close();
        else c.enqueue(value);
      },
      async cancel(reason) {
        await it.return?.(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

// ---------------------------------------------------------------------------------------------
// Logging (SPEC.md §8)

/** Sends `$/log` notifications that respect the session's log level. */
export class Logger {
  /** @param {string} [target] @param {Record<string, unknown>} [fields] added to every message */
  constructor(target, fields) {
    this.target = target;
    /** @private */ this._fields = fields;
  }
  /** A logger whose messages carry `target`. @param {string} target */
  child(target) {
    return new Logger(target, this._fields);
  }
  /** Whether a message at `level` would be sent now. @param {keyof typeof LEVELS} level */
  enabled(level) {
    return current ? LEVELS[level] >= current._logLevel : LEVELS[level] >= LEVELS.info;
  }
  /** @param {string} message @param {Record<string, unknown>} [fields] */
  trace(message, fields) { emitLog('trace', message, this.target, withFields(this._fields, fields)); }
  /** @param {string} message @param {Record<string, unknown>} [fields] */
  debug(message, fields) { emitLog('debug', message, this.target, withFields(this._fields, fields)); }
  /** @param {string} message @param {Record<string, unknown>} [fields] */
  info(message, fields) { emitLog('info', message, this.target, withFields(this._fields, fields)); }
  /** @param {string} message @param {Record<string, unknown>} [fields] */
  warn(message, fields) { emitLog('warn', message, this.target, withFields(this._fields, fields)); }
  /** @param {string} message @param {Record<string, unknown>} [fields] */
  error(message, fields) { emitLog('error', message, this.target, withFields(this._fields, fields)); }
}

/** The plugin's logger. Before `serve` and after the session it writes to stderr. */
export const log = new Logger();

function withFields(base, fields) {
  if (base === undefined) return fields;
  return fields === undefined ? { ...base } : { ...base, ...fields };
}

/** Takes `_meta` out of request params (SPEC.md §14.1.2): it is about the call, not a
 * parameter. What it says, or undefined. */
function takeMeta(params) {
  if (params === null || typeof params !== 'object' || !Object.hasOwn(params, '_meta')) return undefined;
  const meta = params._meta;
  delete params._meta;
  return meta !== null && typeof meta === 'object' && !Array.isArray(meta) ? meta : undefined;
}

const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** The trace id and parent id of a W3C `traceparent` (SPEC.md §15), or undefined when it does
 * not follow the grammar. */
function parseTraceparent(text) {
  const m = typeof text === 'string' ? TRACEPARENT_RE.exec(text) : null;
  if (!m || m[1] === 'ff' || (m[1] === '00' && m[5] !== undefined)) return undefined;
  if (/^0+$/.test(m[2]) || /^0+$/.test(m[3])) return undefined;
  return { traceId: m[2], parentSpanId: m[3] };
}

function newSpanId() {
  for (;;) {
    const id = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, '0')).join('');
    if (id !== '0000000000000000') return id;
  }
}

function emitLog(level, message, target, fields) {
  const s = current;
  if (s ? LEVELS[level] < s._logLevel : LEVELS[level] < LEVELS.info) return;
  const params = { level, message: String(message) };
  if (target !== undefined) params.target = target;
  if (fields !== undefined) params.fields = fields;
  if (!s || !s._notify('$/log', params)) {
    const f = fields === undefined ? '' : ' ' + safeStringify(toWire(fields, null));
    stderrLine(`${level}${target ? ' ' + target : ''}: ${params.message}${f}`);
  }
}

function safeStringify(v) {
  try {
    return JSON.stringify(v);
  } catch {
    // JSON.stringify overflows the stack on a value nested thousands deep (the peer sent it), and
    // String() of a nested array recurses just the same: show only what it is.
    return v !== null && typeof v === 'object' ? `(${Array.isArray(v) ? 'an array' : 'an object'} nested too deeply to show)` : String(v);
  }
}

// ---------------------------------------------------------------------------------------------
// Reports on stderr

let reportName = 'tether plugin';
function stderrLine(text) {
  process.stderr.write(`${reportName}: ${text}\n`);
}

/** Shows bytes for a human: printable ASCII as is, the rest escaped, at most 512 bytes. */
function showBytes(buf, total = buf.length) {
  let out = '';
  const n = Math.min(buf.length, 512);
  for (let i = 0; i < n; i++) {
    const c = buf[i];
    if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x5c) out += '\\\\';
    else if (c >= 0x20 && c < 0x7f) out += String.fromCharCode(c);
    else out += '\\x' + c.toString(16).padStart(2, '0');
  }
  return `"${out}"${total > n ? ` (${total} bytes, first ${n} shown)` : ''}`;
}

// ---------------------------------------------------------------------------------------------
// Framing (SPEC.md §2)

const CRLFCRLF = Buffer.from('\r\n\r\n');
const CL_LOWER = Buffer.from('content-length:');
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const PREFIX_BYTES = 8192;

/** Finds `Content-Length:` (any case) in `buf` from `from`; -1 when absent. */
function findContentLength(buf, from) {
  const last = buf.length - CL_LOWER.length;
  outer: for (let i = from; i <= last; i++) {
    if ((buf[i] | 0x20) !== 0x63) continue;
    for (let j = 1; j < CL_LOWER.length; j++) {
      const c = buf[i + j];
      const want = CL_LOWER[j];
      if (c !== want && !(want >= 0x61 && want <= 0x7a && c === want - 0x20)) continue outer;
    }
    return i;
  }
  return -1;
}

/**
 * Parses a header block (without its final empty line). Returns the body length; a string
 * saying why the block is broken; or, for a well-delimited frame in a charset other than UTF-8,
 * `{skip, reason}`: its boundaries are known, so the reader drops exactly that frame.
 * @returns {number | string | {skip: number, reason: string}}
 */
function parseHeaderBlock(text, withAttachments) {
  // The writer form of SPEC.md §2.2, which is what every Tether host sends.
  if (text.startsWith('Content-Length: ') && /^[0-9]{1,15}$/.test(text.slice(16))) return Number(text.slice(16));
  if (withAttachments) {
    // The writer form of an attachment frame (SPEC.md §2.8.6).
    const m = ATTACHMENT_FRAME_RE.exec(text);
    if (m) return parseAttachments(m[2], Number(m[1]));
  }
  let length = -1;
  let badCharset = '';
  let atts;
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) return `not a header line: ${JSON.stringify(line.slice(0, 80))}`;
    const name = line.slice(0, colon);
    if (!TOKEN_RE.test(name)) return `not a header name: ${JSON.stringify(name.slice(0, 80))}`;
    const value = line.slice(colon + 1).trim();
    const lower = name.toLowerCase();
    if (lower === 'content-length') {
      if (length !== -1) return 'Content-Length appears twice';
      if (!/^[0-9]+$/.test(value)) return `Content-Length is not a decimal number: ${JSON.stringify(value.slice(0, 40))}`;
      length = Number(value);
    } else if (lower === 'tether-attachments') {
      atts = atts === undefined ? value : null; // null: the header appears twice
    } else if (lower === 'content-type') {
      for (const param of value.split(';').slice(1)) {
        const eq = param.indexOf('=');
        if (eq < 0 || param.slice(0, eq).trim().toLowerCase() !== 'charset') continue;
        const charset = param.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1').toLowerCase();
        if (charset !== 'utf-8' && charset !== 'utf8') badCharset ||= `unsupported charset ${JSON.stringify(charset)}`;
      }
    }
  }
  if (length === -1) return 'Content-Length is missing';
  if (badCharset) return { skip: length, reason: badCharset };
  // A reader that did not negotiate attachments ignores the header (SPEC.md §2.8.5).
  if (!withAttachments || atts === undefined) return length;
  if (atts === null) return { length, bad: 'the Tether-Attachments header appears twice' };
  return parseAttachments(atts, length);
}

const ATTACHMENT_FRAME_RE = /^Content-Length: ([0-9]{1,15})\r\nTether-Attachments: ([0-9,]{1,4000})$/;
const ATTACHMENT_LIST_RE = /^(?:0|[1-9][0-9]*)(?:,(?:0|[1-9][0-9]*))*$/;

/**
 * The attachment lengths of a frame of `total` bytes, checked against it before anything is
 * allocated: `{length, atts}`, or `{length, bad}` for a header that makes the frame unreadable.
 */
function parseAttachments(value, total) {
  if (!ATTACHMENT_LIST_RE.test(value)) {
    return { length: total, bad: `malformed Tether-Attachments header ${JSON.stringify(value.slice(0, 60))} (decimal lengths separated by commas)` };
  }
  const atts = value.split(',').map(Number);
  let sum = 0;
  for (const n of atts) {
    sum += n;
    if (n > total || sum > total) {
      return { length: total, bad: `the attachments of ${value.length > 60 ? 'this frame' : value} add up to more than the frame's ${total} bytes` };
    }
  }
  return { length: total, atts };
}

const HEADER = 0;
const BODY = 1;
const SKIP = 2;
const RESYNC = 3;
const DISCARD = 4;

/**
 * An incremental frame reader. `push` chunks as they arrive; it calls `onFrame(body)` for each
 * frame, `onOversized(size, prefix)` for a frame above the maximum (whose body it skipped), and
 * `onGarbage(bytes, total, reason)` for bytes that are not a frame.
 */
export class FrameReader {
  /**
   * `onFrame` gets the attachment lengths of a frame that has a `Tether-Attachments` header, once
   * `attachments()` says they were negotiated; `onUnreadable(reason)` is a frame skipped whole
   * because that header is malformed (a parse error, SPEC.md §2.8.5).
   * @param {{onFrame: (body: Buffer, attachments: number[] | null) => void, onOversized: (size: number, prefix: Buffer) => void,
   *   onGarbage: (bytes: Buffer, reason: string) => void, maxFrameSize: () => number,
   *   attachments?: () => boolean, onUnreadable?: (reason: string) => void}} sink
   */
  constructor(sink) {
    this.sink = sink;
    this.state = HEADER;
    /** Unparsed bytes kept between chunks in the HEADER and RESYNC states (bounded). */
    this.rest = Buffer.alloc(0);
    this.body = null;
    this.filled = 0;
    this.remaining = 0;
    this.size = 0;
    this.prefix = null;
    this.prefixLen = 0;
    /** The attachment lengths of the frame being read, or null. */
    this.atts = null;
    /** Why the frame being discarded is unreadable (reported when it is skipped), or null. */
    this.unreadable = null;
  }

  /** @param {Buffer} chunk */
  push(chunk) {
    let data = chunk;
    if (this.rest.length) {
      data = Buffer.concat([this.rest, chunk]);
      this.rest = Buffer.alloc(0);
    }
    let pos = 0;
    const n = data.length;
    while (pos < n) {
      if (this.state === BODY) {
        const take = Math.min(this.size - this.filled, n - pos);
        data.copy(this.body, this.filled, pos, pos + take);
        this.filled += take;
        pos += take;
        if (this.filled === this.size) {
          const body = this.body;
          this.body = null;
          this.state = HEADER;
          this.sink.onFrame(body, this.atts);
        }
      } else if (this.state === SKIP) {
        const take = Math.min(this.remaining, n - pos);
        if (this.prefixLen < PREFIX_BYTES) {
          const keep = Math.min(take, PREFIX_BYTES - this.prefixLen);
          data.copy(this.prefix, this.prefixLen, pos, pos + keep);
          this.prefixLen += keep;
        }
        this.remaining -= take;
        pos += take;
        if (this.remaining === 0) {
          const prefix = this.prefix.subarray(0, this.prefixLen);
          this.prefix = null;
          this.state = HEADER;
          this.sink.onOversized(this.size, prefix);
        }
      } else if (this.state === DISCARD) {
        const take = Math.min(this.remaining, n - pos);
        this.remaining -= take;
        pos += take;
        if (this.remaining === 0) this.discarded();
      } else if (this.state === RESYNC) {
        const at = findContentLength(data, pos);
        if (at < 0) {
          // Keep a tail that could be the start of a split `Content-Length:`.
          const keep = Math.min(n - pos, CL_LOWER.length - 1);
          this.rest = Buffer.from(data.subarray(n - keep));
          return;
        }
        pos = at;
        this.state = HEADER;
      } else {
        // HEADER
        const limit = Math.min(n, pos + MAX_HEADER_BLOCK);
        const end = data.indexOf(CRLFCRLF, pos);
        if (end < 0 || end + 4 > limit) {
          if (limit - pos < MAX_HEADER_BLOCK) {
            this.rest = Buffer.from(data.subarray(pos));
            return;
          }
          this.resync(data, pos, 'no end of header block within 4096 bytes');
          pos += 1;
          continue;
        }
        const parsed = parseHeaderBlock(data.toString('latin1', pos, end), this.sink.attachments?.() === true);
        if (typeof parsed === 'string') {
          this.resync(data, pos, parsed);
          pos += 1;
          continue;
        }
        const start = pos;
        pos = end + 4;
        if (typeof parsed === 'object' && parsed.skip !== undefined) {
          this.sink.onGarbage(data.subarray(start, Math.min(end, start + 512)), `${parsed.reason}; the frame of ${parsed.skip} bytes is dropped`);
          this.state = DISCARD;
          this.size = parsed.skip;
          this.remaining = parsed.skip;
          if (this.remaining === 0) this.discarded();
          continue;
        }
        const size = typeof parsed === 'number' ? parsed : parsed.length;
        this.atts = typeof parsed === 'number' ? null : parsed.atts ?? null;
        if (size > this.sink.maxFrameSize()) {
          this.state = SKIP;
          this.size = size;
          this.remaining = size;
          this.prefix = Buffer.allocUnsafe(Math.min(PREFIX_BYTES, size));
          this.prefixLen = 0;
        } else if (typeof parsed === 'object' && parsed.bad !== undefined) {
          // Skipped without keeping anything: its JSON cannot be told from its attachments.
          this.state = DISCARD;
          this.size = size;
          this.remaining = size;
          this.unreadable = parsed.bad;
          if (size === 0) this.discarded();
        } else if (n - pos >= size) {
          const body = data.subarray(pos, pos + size);
          pos += size;
          this.sink.onFrame(body, this.atts);
        } else {
          this.state = BODY;
          this.size = size;
          this.body = Buffer.allocUnsafe(size);
          this.filled = 0;
        }
      }
    }
  }

  /** @private The end of a discarded frame. */
  discarded() {
    this.state = HEADER;
    const why = this.unreadable;
    this.unreadable = null;
    if (why !== null) this.sink.onUnreadable?.(why);
  }

  /** @private */
  resync(data, pos, reason) {
    const sample = data.subarray(pos, Math.min(data.length, pos + 512));
    this.sink.onGarbage(sample, reason);
    this.state = RESYNC;
  }

  /** End of input: a description of the truncated frame, if one was cut short. */
  end() {
    if (this.state === BODY) return `a frame was cut short: ${this.filled} of ${this.size} body bytes arrived`;
    if (this.state === SKIP || this.state === DISCARD) return `a skipped frame was cut short: ${this.size - this.remaining} of ${this.size} body bytes arrived`;
    if (this.state === HEADER && this.rest.length) return `input ended inside a header block: ${showBytes(this.rest)}`;
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// A tiny scanner for the members of a JSON object whose text may be cut short: used to read the
// id of an oversized frame from a bounded prefix (SPEC.md §2.6), and the exact text of integer
// ids beyond 2^53 (SPEC.md §3.2: ids are echoed exactly).

function skipWs(s, i) {
  for (;;) {
    const c = s.charCodeAt(i);
    if (c === 32 || c === 9 || c === 10 || c === 13) i++;
    else return i;
  }
}

function skipString(s, i) {
  for (i++; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 92) i++;
    else if (c === 34) return i + 1;
  }
  return -1;
}

function skipValue(s, i) {
  const c = s.charCodeAt(i);
  if (c === 34) return skipString(s, i);
  if (c === 123 || c === 91) {
    let depth = 0;
    while (i < s.length) {
      const d = s.charCodeAt(i);
      if (d === 34) {
        i = skipString(s, i);
        if (i < 0) return -1;
        continue;
      }
      if (d === 123 || d === 91) depth++;
      else if ((d === 125 || d === 93) && --depth === 0) return i + 1;
      i++;
    }
    return -1;
  }
  for (let j = i; j < s.length; j++) {
    const d = s.charCodeAt(j);
    if (d === 44 || d === 125 || d === 93 || d === 32 || d === 9 || d === 10 || d === 13) return j === i ? -1 : j;
  }
  return -1;
}

/**
 * The raw text of the complete members of the JSON object `s` (which may be cut short).
 * @returns {Map<string, string>}
 */
function scanMembers(s) {
  const found = new Map();
  let i = skipWs(s, 0);
  if (s.charCodeAt(i) !== 123) return found;
  i = skipWs(s, i + 1);
  while (i < s.length && s.charCodeAt(i) === 34) {
    const k = skipString(s, i);
    if (k < 0) break;
    let key;
    try {
      key = JSON.parse(s.slice(i, k));
    } catch {
      break;
    }
    i = skipWs(s, k);
    if (s.charCodeAt(i) !== 58) break;
    i = skipWs(s, i + 1);
    const v = skipValue(s, i);
    if (v < 0) break;
    found.set(key, s.slice(i, v));
    i = skipWs(s, v);
    if (s.charCodeAt(i) !== 44) break;
    i = skipWs(s, i + 1);
  }
  return found;
}

const INVALID_ID = Symbol('invalid id');
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** An id from its raw JSON text: string, safe integer, BigInt for larger int64, or INVALID_ID. */
function idFromRaw(raw) {
  if (raw === undefined) return INVALID_ID;
  if (raw.charCodeAt(0) === 34) {
    try {
      return JSON.parse(raw);
    } catch {
      return INVALID_ID;
    }
  }
  if (raw === 'null') return null;
  if (!/^-?(0|[1-9][0-9]*)$/.test(raw)) return INVALID_ID;
  const big = BigInt(raw);
  if (big < INT64_MIN || big > INT64_MAX) return INVALID_ID;
  return Number.isSafeInteger(Number(raw)) ? Number(raw) : big;
}

/**
 * The id of a parsed message: a string, a number, a BigInt (int64 beyond 2^53, read from the
 * text so that it is echoed exactly), null, or INVALID_ID.
 * @param {unknown} v the parsed value
 * @param {() => string | undefined} raw the member's text, computed only when needed
 */
function readId(v, raw) {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v)) return v === 0 ? 0 : v; // no -0
    if (!Number.isInteger(v)) return INVALID_ID;
    return idFromRaw(raw());
  }
  if (v === null) return null;
  return INVALID_ID;
}

const idJson = (id) => (typeof id === 'string' ? JSON.stringify(id) : id === null ? 'null' : String(id));

// ---------------------------------------------------------------------------------------------
// The session

const NEW = 0;
const OPEN = 1;
const SHUTTING_DOWN = 2;
const ENDED = 3;

/** @type {Session | null} */
let current = null;

/** Decodes a body, refusing bytes that are not UTF-8 (SPEC.md §2.4); a BOM is kept (and so is
 * a parse error, as in RFC 8259 parsers that do not skip it). */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The context a handler gets as its second argument. */
class RequestContext {
  constructor(session, rec, logger) {
    /** @private */ this._s = session;
    /** @private */ this._rec = rec;
    /** The request's id, as the host sent it. */
    this.id = rec.id;
    /** The full method name, e.g. `kv.put`. */
    this.method = rec.method;
    /** A logger whose target is the interface name. @type {Logger} */
    this.log = logger;
  }

  /** Aborted when the host cancels the request or the session ends (SPEC.md §7). */
  get signal() {
    const rec = this._rec;
    if (!rec.controller) {
      rec.controller = new AbortController();
      if (rec.cancelled) rec.controller.abort(cancelledError());
    }
    return rec.controller.signal;
  }

  /** Whether the request was cancelled. */
  get cancelled() {
    return this._rec.cancelled;
  }

  /** The negotiated version of the interface this method belongs to (undefined for handles). */
  get version() {
    return this._rec.version;
  }

  /** Whether the host asked for progress (gave `_meta.progressToken`, SPEC.md §14.1). */
  get wantsProgress() {
    return this._rec.progressToken !== undefined;
  }

  /**
   * Reports how far the request has come: `done` units of `total` (when known), as `$/progress`
   * to the host (SPEC.md §14.2). Does nothing when the host gave no token, or once the request
   * was answered or cancelled. `done` never goes back and never passes `total` (a smaller one is
   * sent as the last, a larger one as `total`); the first `total` given is kept. Returns whether
   * a notification was sent.
   * @param {number} done @param {number} [total] @param {string} [message]
   */
  progress(done, total, message) {
    const rec = this._rec;
    if (rec.progressToken === undefined || rec.answered || rec.cancelled) return false;
    const last = rec.progressLast ?? { done: 0, total: undefined };
    const t = last.total ?? (Number.isSafeInteger(total) && total >= 0 ? total : undefined);
    let d = Math.max(Number.isSafeInteger(done) ? done : 0, last.done, 0);
    if (t !== undefined) d = Math.min(d, t);
    rec.progressLast = { done: d, total: t };
    const params = { token: rec.progressToken };
    if (message !== undefined) params.message = String(message);
    params.done = d;
    if (t !== undefined) params.total = t;
    return this._s._notify('$/progress', params);
  }

  /** The caller's W3C trace context as sent (`_meta.traceparent`, SPEC.md §15), if any. */
  get traceparent() {
    return this._rec.trace?.traceparent;
  }

  /** The caller's `_meta.tracestate`, if any. */
  get tracestate() {
    return this._rec.trace?.tracestate;
  }

  /** The trace this request is handled in (the caller's trace id), when its traceparent was valid. */
  get traceId() {
    return this._rec.trace?.traceId;
  }

  /** This request's own span id (new, 16 hex digits), when traced. */
  get spanId() {
    return this._rec.trace?.spanId;
  }

  /** The caller's span id: the parent of this request's span, when traced. */
  get parentSpanId() {
    return this._rec.trace?.parentSpanId;
  }

  /**
   * Sends a request to the host; cancelled along with this request. `onProgress` asks the host
   * for progress (SPEC.md §14): it is called with the params of each `$/progress` for it.
   * @param {string} method @param {object} [params]
   * @param {{onProgress?: (p: {token: number, done?: number, total?: number, message?: string}) => void}} [options]
   */
  request(method, params = {}, options = {}) {
    if (this._rec.cancelled) return Promise.reject(cancelledError(method));
    return this._s._request(method, params, this._rec.answered ? null : this._rec, undefined, method, options.onProgress);
  }
}

class Session {
  constructor(options) {
    this._name = options.name;
    this._version = options.version;
    /** name -> {name, versions: number[], byVersion: Map<number, Map<string, method>>, impl} */
    this._interfaces = options.interfaces;
    this._state = NEW;
    this._maxFrameSize = DEFAULT_MAX_FRAME_SIZE;
    this._logLevel = LEVELS.info;
    /** @type {Map<string, {version: number, methods: Map<string, any>, logger: Logger}>} */
    this._negotiated = new Map();
    /** Requests from the host being handled: id -> record. */
    this._inflight = new Map();
    /** Our requests to the host awaiting an answer: id -> entry. */
    this._pending = new Map();
    /** Ids of our requests that we cancelled: late answers to them are expected. */
    this._cancelled = new Set();
    this._nextId = 1;
    this._shutdownId = undefined;
    /** Local handles by id. @type {Map<string, LocalHandle>} */
    this._handles = new Map();
    this._nextHandle = 1;
    this._out = [];
    this._outScheduled = false;
    /** True while a chunk of stdin is handled: its 'data' callback flushes what was queued. */
    this._reading = false;
    this._writing = 0;
    this._outBroken = false;
    this._exiting = false;
    this._stdinPaused = false;
    this._flushBound = () => this._flush();
    /** Attachments (SPEC.md §2.8) and streams (§12): on once both sides announced them. */
    this._attachments = false;
    this._streamsOn = false;
    this._progressOn = false; // whether both announced progress (SPEC.md §14)
    /** The credit we grant on each stream we consume, and the host's on each we produce. */
    this._ourCredit = options.initialCredit ?? DEFAULT_INITIAL_CREDIT;
    this._peerCredit = DEFAULT_INITIAL_CREDIT;
    this._maxChunk = MAX_CHUNK;
    /** Live streams by id: InStream (we consume) or OutStream (we produce). */
    this._streams = new Map();
    /** Ids of the host's streams that ended lately: a message reusing one is refused. */
    this._retired = new Set();
    this._nextStream = 2;
    /** Buffers queued in `_out`, and their bytes. */
    this._outBuffers = 0;
    this._outBufBytes = 0;
    /** Producers waiting for stdout to drain. */
    this._drainWaiters = [];
    this._reader = new FrameReader({
      onFrame: (body, atts) => this._onFrame(body, atts),
      onOversized: (size, prefix) => this._onOversized(size, prefix),
      onGarbage: (bytes, reason) => stderrLine(`ignored bytes on stdin that are not a frame (${reason}): ${showBytes(bytes)}`),
      maxFrameSize: () => this._maxFrameSize,
      attachments: () => this._attachments,
      onUnreadable: (reason) => this._error(null, E.PARSE_ERROR, `parse error: ${reason}`),
    });
  }

  _start() {
    stdout.on('error', (err) => this._onStdoutError(err));
    stdout.on('drain', () => {
      this._wakeDrainWaiters();
      if (this._stdinPaused) {
        this._stdinPaused = false;
        frameIn.resume();
      }
    });
    const stdin = frameIn;
    stdin.on('data', (chunk) => {
      // Answers of synchronous handlers go out now, one write per chunk read, without a
      // setImmediate: a pending immediate makes the event loop poll once more without
      // waiting, after the write, while the host already waits for this process's CPU. The
      // others are flushed at the end of this turn of the event loop.
      this._reading = true;
      try {
        this._reader.push(chunk);
      } finally {
        this._reading = false;
      }
      if (this._out.length) this._flush();
    });
    stdin.on('end', () => this._onEnd());
    stdin.on('error', (err) => {
      stderrLine(`cannot read stdin: ${err.message}`);
      this._onEnd();
    });
  }

  // ----- writing -----

  /**
   * Queues one frame; frames go out in order, batched per turn of the event loop. `atts` are
   * written after the JSON as they are, without copying them into one buffer.
   */
  _send(body, size = Buffer.byteLength(body), atts = null) {
    if (this._outBroken) return false;
    if (atts?.length) {
      let sum = 0;
      let lengths = '';
      for (const a of atts) {
        sum += a.byteLength;
        lengths += lengths ? ',' + a.byteLength : String(a.byteLength);
      }
      this._out.push(`Content-Length: ${size + sum}\r\nTether-Attachments: ${lengths}\r\n\r\n`, body);
      for (const a of atts) if (a.byteLength) this._out.push(a);
      this._outBuffers += atts.length;
      this._outBufBytes += sum;
    } else {
      this._out.push(`Content-Length: ${size}\r\n\r\n`, body);
    }
    if (!this._outScheduled && !this._reading) {
      this._outScheduled = true;
      setImmediate(this._flushBound);
    }
    return true;
  }

  _flush() {
    this._outScheduled = false;
    let out = this._out;
    if (out.length === 0 || this._outBroken) return;
    this._out = [];
    let buffers = this._outBuffers;
    this._outBuffers = 0;
    this._outBufBytes = 0;
    // Nothing in flight on the stream: write now, with one system call, and skip the stream's
    // write request, whose completion libuv reports on the next turn of the event loop (one
    // more pass through JS before this process sleeps again, while the host already waits).
    if (directOut && this._writing === 0 && stdout.writableLength === 0) {
      out = this._writeDirect(out, buffers);
      if (out === null) return;
      buffers = 1; // what is left is a list of Buffers
    }
    this._writing++;
    const done = (err) => {
      this._writing--;
      if (!err && this._exiting) setImmediate(() => this._maybeExit());
      if (this._drainWaiters.length) this._wakeDrainWaiters();
    };
    let ok;
    if (buffers === 0) {
      ok = frameWrite.call(stdout, out.length === 2 ? out[0] + out[1] : out.join(''), done);
    } else {
      // Attachments: the text runs and the buffers go out in one writev (cork/uncork), so that
      // a 16 MiB value is never copied into a frame-sized buffer on its way out.
      stdout.cork();
      let text = '';
      for (let i = 0; i < out.length; i++) {
        const x = out[i];
        if (typeof x === 'string') text += x;
        else {
          if (text) frameWrite.call(stdout, text);
          text = '';
          ok = frameWrite.call(stdout, x, i === out.length - 1 ? done : undefined);
        }
      }
      if (text) ok = frameWrite.call(stdout, text, done);
      stdout.uncork();
    }
    // Backpressure: when the host stops reading, stop reading its requests too (bounded memory).
    if (!ok && stdout.writableLength > Math.max(64 * 1048576, 2 * this._maxFrameSize) && !this._stdinPaused) {
      this._stdinPaused = true;
      frameIn.pause();
    }
  }

  /**
   * Writes the queued frames straight to the non-blocking frame descriptor. Returns null when
   * all of it went out (or the write failed, which is reported as the stream's error would
   * be), else the Buffers still to write: the pipe was full, and the stream queues the rest.
   */
  _writeDirect(out, buffers) {
    let written;
    let list = null;
    let text = null;
    try {
      if (buffers === 0) {
        text = out.length === 2 ? out[0] + out[1] : out.join('');
        written = directOut.fs.writeSync(directOut.fd, text);
        if (written === Buffer.byteLength(text)) written = -1;
      } else {
        list = [];
        let run = '';
        for (const x of out) {
          if (typeof x === 'string') run += x;
          else {
            if (run) list.push(Buffer.from(run));
            run = '';
            list.push(x);
          }
        }
        if (run) list.push(Buffer.from(run));
        written = list.length === 1 ? directOut.fs.writeSync(directOut.fd, list[0]) : directOut.fs.writevSync(directOut.fd, list);
      }
    } catch (err) {
      if (err?.code !== 'EAGAIN') {
        this._onStdoutError(err);
        return null;
      }
      written = 0;
    }
    if (list === null) list = written === -1 ? [] : [Buffer.from(text)];
    // What the pipe did not take, in order.
    const rest = [];
    for (const b of list) {
      if (written >= b.byteLength) written -= b.byteLength;
      else {
        rest.push(written ? b.subarray(written) : b);
        written = 0;
      }
    }
    if (rest.length === 0) {
      if (this._exiting) setImmediate(() => this._maybeExit());
      if (this._drainWaiters.length) this._wakeDrainWaiters();
      return null;
    }
    return rest;
  }

  _onStdoutError(err) {
    if (this._outBroken) return;
    this._outBroken = true;
    this._out = [];
    if (this._exiting) {
      process.exit(0);
    }
    // A host that closes both pipes at once races their two ends: give the end of stdin a
    // moment to arrive, and exit 0 when it does (_onEnd), since that is the host leaving
    // (SPEC.md §1.5). Otherwise the host stopped reading while still writing: exit 2.
    setTimeout(() => {
      stderrLine(`cannot write frames to stdout (${err.code ?? err.message}); giving up on the session`);
      process.exit(2);
    }, HOST_LEAVING_WINDOW_MS);
    if (this._stdinPaused) {
      this._stdinPaused = false;
      frameIn.resume();
    }
  }

  /** Writes a body, or fails when it exceeds the session's maximum frame size (JSON and
   * attachments together); returns the size that was too big, or 0. */
  _sendChecked(body, atts = null) {
    const size = Buffer.byteLength(body);
    let total = size;
    if (atts) for (const a of atts) total += a.byteLength;
    if (total > this._maxFrameSize) return total;
    this._send(body, size, atts);
    return 0;
  }

  /** What `toWire` collects for a message; `streams`: whether a stream may be opened in it. */
  _wire(handles, streams) {
    // Without the capability no stream is ever collected (`_openStream` throws): share one list.
    const list = streams ? (this._streamsOn ? [] : NO_STREAMS) : null;
    return { session: this, handles: handles ? [] : null, atts: this._attachments ? [] : null, streams: list };
  }

  _wakeDrainWaiters(force = false) {
    if (!force && stdout.writableLength + this._outBufBytes > OUT_HIGH_WATER) return;
    const waiters = this._drainWaiters;
    this._drainWaiters = [];
    for (const w of waiters) w();
  }

  /** null when stdout has room; otherwise a promise resolved once it drained enough. */
  _whenWritable() {
    if (this._outBroken || stdout.writableLength + this._outBufBytes <= OUT_HIGH_WATER) return null;
    return new Promise((resolve) => this._drainWaiters.push(resolve));
  }

  /** Queues one `$/stream.data` chunk (an attachment when negotiated, else base64). */
  _sendChunk(id, chunk) {
    if (this._attachments) {
      this._send(`{"jsonrpc":"2.0","method":"$/stream.data","params":{"stream":${id},"data":{"$bytes":0}}}`, undefined, [chunk]);
    } else {
      const b64 = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('base64');
      this._send(`{"jsonrpc":"2.0","method":"$/stream.data","params":{"stream":${id},"data":"${b64}"}}`);
    }
  }

  /** Registers the streams a message opened, once it is queued, and starts producing. */
  _commitStreams(w) {
    if (!w.streams) return;
    for (const st of w.streams) {
      this._streams.set(st.id, st);
      if (st instanceof OutStream) st.pump(st.source);
      else st.readable.pipeTo(st.sink).catch(() => {});
    }
  }

  /** Releases the sources of streams whose message could not be sent. */
  _dropStreams(w) {
    if (!w?.streams) return;
    for (const st of w.streams) {
      if (st instanceof OutStream) {
        const src = st.source;
        if (src instanceof ReadableStream) src.cancel().catch(() => {});
        else Promise.resolve(src[Symbol.asyncIterator]?.().return?.()).catch(() => {});
      }
    }
  }

  /** Opens a stream of ours for a web stream (or async iterable) in an outgoing message. */
  _openStream(v, w) {
    if (!this._streamsOn) {
      throw new TetherError(E.STREAM_ERROR, 'cannot send a stream: the host did not announce the streams capability (SPEC.md §12)');
    }
    const id = this._nextStream;
    this._nextStream += 2;
    if (typeof WritableStream === 'function' && v instanceof WritableStream) {
      // mode write: the host produces, we consume into the application's WritableStream.
      const st = new InStream(this, id);
      st.sink = v;
      w.streams.push(st);
      return { $stream: id, mode: 'write' };
    }
    const st = new OutStream(this, id);
    st.source = v;
    w.streams.push(st);
    return { $stream: id, mode: 'read' };
  }

  /** Makes the object for a host's stream in params or a result (SPEC.md §12.1). */
  _adoptStream(v, cx, path) {
    const bad = (problem) => {
      cx.problem = { path, problem };
      return v;
    };
    if (!this._streamsOn) return bad('a stream, but streams were not negotiated in this session');
    const keys = Object.keys(v);
    if (keys.length !== 2 || !Object.hasOwn(v, 'mode')) return bad('a stream object has exactly the members $stream and mode');
    const id = v.$stream;
    if (!Number.isSafeInteger(id) || id <= 0) return bad('$stream must be a positive integer');
    if (id % 2 === 0) return bad(`stream id ${id} is even, and the host's stream ids are odd`);
    if (this._streams.has(id) || this._retired.has(id) || cx.streams.some((x) => x.id === id)) return bad(`stream id ${id} is not new`);
    if (v.mode === 'read') {
      const st = new InStream(this, id);
      cx.streams.push(st);
      this._streams.set(id, st);
      return st.readable;
    }
    if (v.mode === 'write') {
      const st = new OutStream(this, id);
      cx.streams.push(st);
      this._streams.set(id, st);
      return st.makeWritable();
    }
    return bad(`mode must be "read" or "write", not ${safeStringify(v.mode)}`);
  }

  /** A stream is over: later messages about it are ignored; a host id is not accepted again. */
  _forget(st) {
    if (this._streams.get(st.id) === st) this._streams.delete(st.id);
    if (st.id % 2 === 1) {
      this._retired.add(st.id);
      if (this._retired.size > 4096) this._retired.delete(this._retired.values().next().value);
    }
  }

  /**
   * Aborts, with `err`, the streams a message carried that are not finished. `tell` sends
   * `$/stream.abort` for each; it is false where the host learns it from the same event (a
   * cancel, an error answer: SPEC.md §12.4.3).
   */
  _abortStreams(list, err, tell = true) {
    if (!list) return;
    for (const st of list) {
      if (st.settled) continue;
      if (st instanceof InStream) st.fail(err, tell);
      else st.abort(err, tell);
    }
  }

  /**
   * A message whose streams will not be used (a refused request, a late answer): aborts the
   * ones adopted so far and every other new host stream id in it (SPEC.md §12.4.4).
   */
  _rejectStreams(raw, adopted, err) {
    if (!this._streamsOn) return;
    this._abortStreams(adopted, err);
    for (const id of streamIdsIn(raw)) {
      if (id % 2 === 0 || this._streams.has(id) || this._retired.has(id)) continue;
      this._notify('$/stream.abort', { stream: id, error: { code: err.code, message: err.message, data: { stream: id } } });
      this._forget({ id });
    }
  }

  _respond(id, result) {
    let body;
    const w = this._wire(false, true);
    try {
      body = '{"jsonrpc":"2.0","id":' + idJson(id) + ',"result":' + JSON.stringify(toWire(result, w)) + '}';
    } catch (err) {
      this._dropStreams(w);
      stderrLine(`cannot encode the result of request ${idJson(id)}: ${err.message}`);
      return this._error(id, E.INTERNAL_ERROR, `internal error: the result cannot be sent (${err.message})`);
    }
    const tooBig = this._sendChecked(body, w.atts);
    if (tooBig) {
      this._dropStreams(w);
      this._tooLarge(id, tooBig);
      return;
    }
    this._commitStreams(w);
  }

  /**
   * Answers `id` with -32004 in place of an answer of `size` bytes that the maximum frame size
   * forbids (SPEC.md §2.2), and says so on stderr: the host sees only the sizes, the plugin's
   * author needs to know which answer it was.
   */
  _tooLarge(id, size) {
    const max = this._maxFrameSize;
    const what = `is ${size} bytes, above the session's maximum frame size of ${max}`;
    stderrLine(`the answer to request ${idJson(id).slice(0, 100)} ${what}; sent error -32004 (frame too large) in its place`);
    const err = { code: E.FRAME_TOO_LARGE, message: `frame too large: the answer ${what}`, data: { size, max } };
    this._send('{"jsonrpc":"2.0","id":' + idJson(id) + ',"error":' + JSON.stringify(err) + '}');
  }

  _error(id, code, message, data) {
    const err = { code, message };
    if (data !== undefined) err.data = data;
    let body;
    const w = this._wire(false, false);
    try {
      body = '{"jsonrpc":"2.0","id":' + idJson(id) + ',"error":' + JSON.stringify(toWire(err, w)) + '}';
    } catch {
      body = '{"jsonrpc":"2.0","id":' + idJson(id) + ',"error":' + JSON.stringify({ code, message }) + '}';
      w.atts = null;
    }
    const tooBig = this._sendChecked(body, w.atts);
    if (tooBig) this._tooLarge(id, tooBig);
  }

  /** Sends a notification; false when it could not be sent. */
  _notify(method, params) {
    if (this._outBroken || this._state === ENDED) return false;
    let body;
    const w = this._wire(false, false);
    try {
      body = '{"jsonrpc":"2.0","method":' + JSON.stringify(method) + ',"params":' + JSON.stringify(toWire(params, w)) + '}';
    } catch (err) {
      stderrLine(`cannot encode ${method}: ${err.message}`);
      return true;
    }
    const tooBig = this._sendChecked(body, w.atts);
    if (tooBig) stderrLine(`dropped a ${method} of ${tooBig} bytes: above the maximum frame size`);
    return true;
  }

  /**
   * Sends a request to the host. `rec` ties it to the handling of a host request (§7.2);
   * `label` names the call in errors (`sum` for an invoke of sum).
   */
  _request(method, params, rec, signal, label = method, onProgress = undefined) {
    if (this._state === NEW || this._state === ENDED || this._outBroken) {
      return Promise.reject(new Error(`cannot send ${method}: the session is ${this._state === NEW ? 'not initialized yet' : 'over'}`));
    }
    if (signal?.aborted) return Promise.reject(cancelledError(label));
    const id = this._nextId++;
    const meta = {};
    // The token is the request's id, unique among our pending requests (SPEC.md §14.1).
    const wantsProgress = typeof onProgress === 'function' && this._progressOn;
    if (wantsProgress) meta.progressToken = id;
    if (rec?.trace?.traceId !== undefined) {
      // Requests made while handling a traced request carry its span on (SPEC.md §15.3).
      meta.traceparent = `00-${rec.trace.traceId}-${rec.trace.spanId}-01`;
      if (rec.trace.tracestate !== undefined) meta.tracestate = rec.trace.tracestate;
    }
    if (Object.keys(meta).length) {
      // In the params of the method called: for a handle, the inner params (SPEC.md §14.2.4).
      if (method === 'tether/invoke' && params?.params !== null && typeof params?.params === 'object' && !Array.isArray(params.params)) params = { ...params, params: { ...params.params, _meta: meta } };
      else if (!method.startsWith('tether/') && !method.startsWith('$/')) params = { ...params, _meta: meta };
    }
    const w = this._wire(true, true);
    let body;
    try {
      body = '{"jsonrpc":"2.0","id":' + id + ',"method":' + JSON.stringify(method) + ',"params":' + JSON.stringify(toWire(params ?? {}, w)) + '}';
    } catch (err) {
      this._dropStreams(w);
      return Promise.reject(err);
    }
    const sent = w.handles;
    return new Promise((resolve, reject) => {
      const tooBig = this._sendChecked(body, w.atts);
      if (tooBig) {
        this._dropStreams(w);
        reject(new RemoteError(label, E.FRAME_TOO_LARGE, `the request of ${tooBig} bytes exceeds the maximum frame size of ${this._maxFrameSize}`, { size: tooBig, max: this._maxFrameSize }));
        return;
      }
      this._commitStreams(w);
      const entry = { resolve, reject, rec, signal, onAbort: null, handles: sent, label, streams: w.streams, onProgress: wantsProgress ? onProgress : undefined };
      for (const h of sent) {
        h._scopes.add(id);
        this._handles.set(h.id, h);
      }
      this._pending.set(id, entry);
      if (rec) (rec.outgoing ??= new Set()).add(id);
      if (signal) {
        entry.onAbort = () => this._cancelOutgoing(id);
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
    });
  }

  /** Removes a pending request of ours; returns its entry. */
  _settle(id) {
    const entry = this._pending.get(id);
    if (!entry) return undefined;
    this._pending.delete(id);
    if (entry.rec?.outgoing) entry.rec.outgoing.delete(id);
    if (entry.onAbort) entry.signal.removeEventListener('abort', entry.onAbort);
    for (const h of entry.handles) {
      h._scopes.delete(id);
      if (!h.live) this._handles.delete(h.id);
    }
    return entry;
  }

  /** Stops waiting for our request `id`: tells the host (§7.2) and rejects the caller. */
  _cancelOutgoing(id) {
    const entry = this._settle(id);
    if (!entry) return;
    this._cancelled.add(id);
    if (this._cancelled.size > 4096) this._cancelled.delete(this._cancelled.values().next().value);
    this._notify('$/cancelRequest', { id });
    const err = cancelledError(entry.label);
    this._abortStreams(entry.streams, err, false);
    entry.reject(err);
  }

  // ----- reading -----

  _onFrame(frame, lengths) {
    let body = frame;
    let atts = null;
    if (lengths) {
      // The JSON first, then each attachment: views of the frame, not copies (SPEC.md §2.8.1).
      let sum = 0;
      for (const n of lengths) sum += n;
      body = frame.subarray(0, frame.length - sum);
      atts = new Array(lengths.length);
      let at = body.length;
      for (let i = 0; i < lengths.length; i++) {
        atts[i] = frame.subarray(at, at + lengths[i]);
        at += lengths[i];
      }
    }
    let text;
    try {
      text = utf8.decode(body);
    } catch {
      return this._error(null, E.PARSE_ERROR, 'parse error: the body is not valid UTF-8');
    }
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      return this._error(null, E.PARSE_ERROR, `parse error: ${err.message}`);
    }
    if (msg === null || typeof msg !== 'object') {
      return this._error(null, E.INVALID_REQUEST, 'invalid request: a message must be a JSON object');
    }
    if (Array.isArray(msg)) return this._error(null, E.INVALID_REQUEST, 'invalid request: batches are not supported by Tether');

    const hasId = Object.hasOwn(msg, 'id');
    const id = hasId ? readId(msg.id, () => scanMembers(text).get('id')) : undefined;
    const hasMethod = Object.hasOwn(msg, 'method');
    const hasResult = Object.hasOwn(msg, 'result');
    const hasError = Object.hasOwn(msg, 'error');
    // A response with a null id (the host's answer to a body of ours it could not read) is
    // reported and never answered (SPEC.md §3.4.3).
    if (!hasMethod && (hasResult || hasError) && hasId && id === null) {
      stderrLine(`the host answered a message it could not read: ${showBytes(body)}`);
      return;
    }
    const invalid = (reason) => {
      // What looks like a notification (a method, no id) or a response (a result or an error,
      // no method) is never answered (SPEC.md §3.4.2); any other invalid body gets -32600 with
      // its id, or null when it has none we can read.
      if (!hasId && hasMethod) {
        stderrLine(`ignored an invalid notification (${reason}): ${showBytes(body)}`);
        return;
      }
      if (!hasMethod && (hasResult || hasError)) {
        stderrLine(`ignored an invalid response (${reason}): ${showBytes(body)}`);
        return;
      }
      this._error(id === INVALID_ID || id === undefined ? null : id, E.INVALID_REQUEST, `invalid request: ${reason}`);
    };
    if (msg.jsonrpc !== '2.0') return invalid('the jsonrpc member must be "2.0"');
    if (hasId && id === INVALID_ID) return invalid('the id must be an integer or a string');

    if (hasMethod) {
      const method = msg.method;
      if (typeof method !== 'string') return invalid('the method must be a string');
      if (hasResult || hasError) return invalid('a request cannot carry a result or an error');
      let params = msg.params;
      if (params === undefined) params = {};
      else if (Array.isArray(params) && hasId && id !== null) {
        // Valid JSON-RPC 2.0, but no Tether method takes positional params (SPEC.md §3.4.2).
        return this._error(id, E.INVALID_PARAMS, 'invalid params: params must be a JSON object, not an array');
      } else if (params === null || typeof params !== 'object' || Array.isArray(params)) return invalid('params must be a JSON object');
      if (!hasId) return this._onNotification(method, params, text, atts);
      if (id === null) return invalid('a request id must not be null');
      return this._onRequest(id, method, params, atts);
    }
    if (!hasId || id === null) return invalid('a message needs a method, or an id and a result or an error');
    if (hasResult === hasError) {
      if (hasResult) {
        const entry = this._settle(id);
        entry?.reject(new RemoteError(entry.label, E.INTERNAL_ERROR, 'the host answered with both a result and an error'));
      }
      return invalid(hasResult ? 'a response cannot carry both a result and an error' : 'a response needs a result or an error');
    }
    if (hasError) {
      const e = msg.error;
      // An object (not an array, SPEC.md §3.4.4) with an integer code and a string message.
      if (e === null || typeof e !== 'object' || Array.isArray(e) || !Number.isInteger(e.code) || typeof e.message !== 'string') {
        const entry = this._settle(id);
        if (entry) entry.reject(new RemoteError(entry.label, E.INTERNAL_ERROR, 'the host answered with a malformed error object', { error: e }));
        return invalid('the error member is malformed');
      }
      return this._onResponse(id, undefined, e, atts);
    }
    return this._onResponse(id, msg.result, undefined, atts);
  }

  _onOversized(size, prefix) {
    const members = scanMembers(prefix.toString('utf8'));
    const id = idFromRaw(members.get('id'));
    const max = this._maxFrameSize;
    if (id !== INVALID_ID && id !== null && members.has('method')) {
      stderrLine(`skipped a request frame of ${size} bytes (maximum ${max})`);
      return this._error(id, E.FRAME_TOO_LARGE, `frame of ${size} bytes exceeds the maximum of ${max}`, { size, max });
    }
    if (id !== INVALID_ID && id !== null && typeof id === 'number' && this._pending.has(id)) {
      const entry = this._settle(id);
      entry.reject(new RemoteError(entry.label, E.FRAME_TOO_LARGE, `the host's answer of ${size} bytes exceeds the maximum frame size of ${max}`, { size, max }));
      return;
    }
    stderrLine(`skipped a frame of ${size} bytes (maximum ${max}): ${showBytes(prefix, size)}`);
  }

  _onResponse(id, result, error, atts) {
    const entry = this._settle(id);
    if (!entry) {
      if (!this._cancelled.delete(id)) stderrLine(`ignored a response for unknown request id ${idJson(id)}`);
      // Nobody will read or write the streams of a late answer (SPEC.md §12.4.4).
      if (result !== undefined) this._rejectStreams(result, null, streamError(undefined, 'nobody waits for this answer any more'));
      return;
    }
    if (error) {
      const err = new RemoteError(entry.label, error.code, error.message, error.data);
      this._abortStreams(entry.streams, err, false);
      return entry.reject(err);
    }
    if (result !== null && typeof result === 'object' && (this._attachments || this._streamsOn)) {
      const cx = { session: this, rec: null, atts, streams: [], problem: null };
      result = adopt(result, cx, '');
      if (cx.problem) {
        const where = cx.problem.path ? ` at ${cx.problem.path.slice(1).replaceAll('/', '.')}` : '';
        const err = new RemoteError(entry.label, E.INTERNAL_ERROR, `the host's answer is invalid${where}: ${cx.problem.problem}`, cx.problem);
        this._rejectStreams(result, cx.streams, err);
        this._abortStreams(entry.streams, err);
        return entry.reject(err);
      }
    }
    entry.resolve(result);
  }

  _onNotification(method, params, text, atts) {
    if (this._state === NEW) return;
    switch (method) {
      case '$/stream.data': {
        const st = this._streams.get(params.stream);
        if (!(st instanceof InStream)) return; // unknown, finished, or ours to produce: ignored
        const d = params.data;
        let bytes = null;
        if (typeof d === 'string') bytes = decodeBase64(d);
        else if (this._attachments && isBytesRef(d)) bytes = attachment(atts, d.$bytes);
        if (bytes === null) {
          const what = typeof d === 'string' ? 'data that is not padded base64' : isBytesRef(d) ? badRef(atts, d.$bytes) : 'no data';
          return st.fail(streamError(st.id, `the host wrote a chunk on stream ${st.id} with ${what}`), true);
        }
        return st.onData(bytes);
      }
      case '$/stream.end': {
        const st = this._streams.get(params.stream);
        if (st instanceof InStream) st.onEnd();
        return;
      }
      case '$/stream.credit': {
        const st = this._streams.get(params.stream);
        if (!(st instanceof OutStream)) return;
        if (!Number.isSafeInteger(params.bytes) || params.bytes <= 0) {
          return st.abort(streamError(st.id, `the host granted ${safeStringify(params.bytes)} bytes on stream ${st.id}, not a positive integer`));
        }
        return st.onCredit(params.bytes);
      }
      case '$/stream.abort': {
        const st = this._streams.get(params.stream);
        if (!st) return;
        const e = params.error;
        const cause = e !== null && typeof e === 'object' ? e : undefined;
        const why = typeof cause?.message === 'string' ? `: ${cause.message}` : '';
        const err = streamError(st.id, `the host aborted stream ${st.id}${why}`, cause);
        if (st instanceof InStream) st.fail(err, false);
        else st.abort(err, false);
        return;
      }
      case '$/cancelRequest': {
        const id = readId(params.id, () => {
          const raw = scanMembers(text).get('params');
          return raw === undefined ? undefined : scanMembers(raw).get('id');
        });
        const rec = this._inflight.get(id);
        if (rec) this._cancelRecord(rec);
        return;
      }
      case '$/progress': {
        // Progress for one of our requests that waits (SPEC.md §14.2); any other is ignored.
        const entry = Number.isSafeInteger(params.token) ? this._pending.get(params.token) : undefined;
        if (entry?.onProgress) {
          try {
            entry.onProgress(params);
          } catch (err) {
            stderrLine(`the progress callback of request ${params.token} failed: ${err instanceof Error ? err.message : String(err)}`);
          }
        }
        return;
      }
      case '$/setLogLevel': {
        const level = typeof params.level === 'string' ? normalizeLevel(params.level) : undefined;
        if (level === undefined) stderrLine(`ignored $/setLogLevel with an unknown level: ${safeStringify(params.level)}`);
        else this._logLevel = LEVELS[level];
        return;
      }
      case '$/release': {
        const h = typeof params.handle === 'string' ? this._handles.get(params.handle) : undefined;
        if (h && h._retained) {
          h._retained = false;
          if (!h.live) this._handles.delete(h.id);
        }
        return;
      }
      default:
        return; // unknown notifications are ignored (SPEC.md §3.5)
    }
  }

  _onRequest(id, method, params, atts) {
    // A request that runs no handler of ours reads and writes none of its streams: abort them.
    if (!this._dispatch(id, method, params, atts) && this._streamsOn) {
      this._rejectStreams(params, null, streamError(undefined, `the request ${idJson(id)} (${method}) that carried the stream was not accepted`));
    }
  }

  /** Answers or starts a request; true when a handler took it (with its streams). */
  _dispatch(id, method, params, atts) {
    if (this._inflight.has(id)) {
      return this._error(id, E.INVALID_REQUEST, `invalid request: id ${idJson(id)} is already in use by an unanswered request`);
    }
    const state = this._state;
    if (state === NEW) {
      if (method === 'tether/initialize') return this._initialize(id, params);
      return this._error(id, E.NOT_INITIALIZED, 'the session is not initialized: send tether/initialize first');
    }
    if (state !== OPEN) {
      // Calls on our live handles still serve the requests that are finishing.
      const live = (method === 'tether/invoke' || method === 'tether/retain') && this._pending.size > 0;
      if (!live || state === ENDED) return this._error(id, E.SHUTTING_DOWN, 'shutting down: no new requests are accepted');
    }
    if (method.startsWith('tether/')) {
      switch (method) {
        case 'tether/ping':
          return this._respond(id, {});
        case 'tether/initialize':
          return this._error(id, E.INVALID_REQUEST, 'invalid request: the session is already initialized');
        case 'tether/shutdown':
          this._state = SHUTTING_DOWN;
          this._shutdownId = id;
          return this._maybeFinishShutdown();
        case 'tether/invoke':
          return this._invoke(id, params, atts);
        case 'tether/retain': {
          const h = typeof params.handle === 'string' ? this._handles.get(params.handle) : undefined;
          if (typeof params.handle !== 'string') return this._error(id, E.INVALID_PARAMS, 'invalid params: handle must be a string', { path: '/handle', problem: 'expected string' });
          if (!h || !h.live) return this._error(id, E.UNKNOWN_HANDLE, `unknown or expired handle ${JSON.stringify(params.handle)}`, { handle: params.handle });
          h._retained = true;
          return this._respond(id, {});
        }
        default:
          return this._error(id, E.METHOD_NOT_FOUND, `method not found: ${method}`, { method, reason: 'not a method of Tether protocol version 1' });
      }
    }
    const dot = method.indexOf('.');
    const iface = dot > 0 ? method.slice(0, dot) : '';
    const short = method.slice(dot + 1);
    const neg = this._negotiated.get(iface);
    const m = neg?.methods.get(short);
    if (!m) return this._methodNotFound(id, method, iface, short, neg);
    const meta = takeMeta(params);
    const problem = check(m.params, { params }, 'params', '', m.params, atts);
    if (problem) return this._invalidParams(id, problem);
    return this._startHandler(id, method, neg.version, params, atts, m.fn, m.self, neg.logger, meta);
  }

  _invalidParams(id, problem) {
    const where = problem.path ? problem.path.slice(1).replaceAll('/', '.') : 'params';
    this._error(id, E.INVALID_PARAMS, `invalid params: ${where}: ${problem.problem}`, problem);
  }

  /** Adopts the handles and streams of params and runs the handler; true when it started. */
  _startHandler(id, method, version, params, atts, fn, self, logger, meta) {
    const rec = this._newRecord(id, method, version);
    if (meta) {
      const token = meta.progressToken;
      if (this._progressOn && (typeof token === 'string' || Number.isSafeInteger(token))) rec.progressToken = token;
      if (typeof meta.traceparent === 'string') {
        const ids = parseTraceparent(meta.traceparent);
        rec.trace = {
          traceparent: meta.traceparent,
          tracestate: typeof meta.tracestate === 'string' ? meta.tracestate : undefined,
          traceId: ids?.traceId,
          parentSpanId: ids?.parentSpanId,
          spanId: ids ? newSpanId() : undefined,
        };
        // The handler's log names the trace and span it was handled in (SPEC.md §15).
        if (ids) logger = new Logger(logger.target, { ...logger._fields, trace_id: ids.traceId, span_id: rec.trace.spanId });
      }
    }
    const cx = { session: this, rec, atts, streams: [], problem: null };
    const adopted = adopt(params, cx, '');
    if (cx.problem) {
      this._inflight.delete(id);
      rec.answered = true;
      this._invalidParams(id, cx.problem);
      this._rejectStreams(params, cx.streams, streamError(undefined, `the params of request ${idJson(id)} are invalid: ${cx.problem.problem}`));
      return true;
    }
    rec.streams = cx.streams.length ? cx.streams : null;
    this._run(rec, fn, self, adopted, logger);
    return true;
  }

  _methodNotFound(id, method, iface, short, neg) {
    const impl = this._interfaces.get(iface);
    let reason;
    if (!impl) reason = iface ? `this plugin does not implement interface ${iface}` : 'a method name is <interface>.<method>';
    else if (!neg) reason = `interface ${iface} was not negotiated in this session`;
    else {
      const has = impl.versions.filter((v) => impl.byVersion.get(v).has(short));
      reason = has.length
        ? `${method} needs ${iface} version ${has.join(' or ')}; this session uses ${iface} version ${neg.version}`
        : `interface ${iface} has no method ${short}`;
    }
    this._error(id, E.METHOD_NOT_FOUND, `method not found: ${method} (${reason})`, { method, reason });
  }

  _invoke(id, params, atts) {
    const { handle, method } = params;
    let p = params.params;
    if (typeof handle !== 'string' || typeof method !== 'string') {
      return this._error(id, E.INVALID_PARAMS, 'invalid params: tether/invoke needs a handle and a method (strings)');
    }
    if (p === undefined) p = {};
    if (p === null || typeof p !== 'object' || Array.isArray(p)) return this._error(id, E.INVALID_PARAMS, 'invalid params: params must be a JSON object', { path: '/params', problem: 'expected object' });
    const h = this._handles.get(handle);
    if (!h || !h.live) return this._error(id, E.UNKNOWN_HANDLE, `unknown or expired handle ${JSON.stringify(handle)}`, { handle });
    const fn = NAME_RE.test(method) && !(method in Object.prototype) ? h._target[method] : undefined;
    if (typeof fn !== 'function') {
      return this._error(id, E.METHOD_NOT_FOUND, `method not found: ${method} on a handle of ${h.interface}`, { method, reason: `interface ${h.interface} has no method ${method}` });
    }
    return this._startHandler(id, 'tether/invoke', undefined, p, atts, fn, h._target, log, takeMeta(p));
  }

  _newRecord(id, method, version) {
    const rec = { id, method, version, answered: false, cancelled: false, controller: null, outgoing: null, streams: null, progressToken: undefined, progressLast: null, trace: undefined };
    this._inflight.set(id, rec);
    return rec;
  }

  /** Runs a handler; answers its request when it settles (unless cancelled first). */
  _run(rec, fn, self, params, logger) {
    const ctx = new RequestContext(this, rec, logger);
    let ret;
    try {
      ret = fn.call(self, params, ctx);
    } catch (err) {
      return this._finish(rec, undefined, err, true);
    }
    if (ret !== null && typeof ret === 'object' && typeof ret.then === 'function') {
      ret.then(
        (r) => this._finish(rec, r, undefined, false),
        (e) => this._finish(rec, undefined, e, true),
      );
    } else {
      this._finish(rec, ret, undefined, false);
    }
  }

  _finish(rec, result, err, failed) {
    if (rec.answered) {
      // Cancelled first: a stream in the late result will never be sent.
      if (!failed) discardStreams(result);
      return;
    }
    rec.answered = true;
    this._inflight.delete(rec.id);
    if (rec.outgoing?.size) for (const oid of [...rec.outgoing]) this._cancelOutgoing(oid);
    if (rec.streams) this._settleParamStreams(rec, failed ? err : undefined);
    if (failed) {
      if (err instanceof RemoteError) {
        const cause = err.toJSON();
        this._error(rec.id, E.INTERNAL_ERROR, `internal error: ${err.method} failed: ${err.message} (code ${err.code})`, { cause });
      } else if (err instanceof TetherError) this._error(rec.id, err.code, err.message, err.data);
      else {
        const text = err instanceof Error ? err.stack ?? err.message : String(err);
        stderrLine(`${rec.method} (request ${idJson(rec.id)}) failed: ${text}`);
        this._error(rec.id, E.INTERNAL_ERROR, `internal error: ${err instanceof Error ? err.message : String(err)}`);
      }
    } else if (result === undefined || result === null) {
      this._respond(rec.id, {});
    } else if (typeof result !== 'object' || Array.isArray(result) || result instanceof Uint8Array) {
      stderrLine(`${rec.method} returned ${typeOf(result)}; a result must be an object`);
      this._error(rec.id, E.INTERNAL_ERROR, 'internal error: the handler returned something other than an object');
    } else {
      this._respond(rec.id, result);
    }
    if (this._shutdownId !== undefined) this._maybeFinishShutdown();
  }

  /**
   * The handler of `rec` is done (`err`: it failed). Its params' streams that are not finished
   * are aborted with its error (SPEC.md §12.4.3, silently: the answer says it), and, when it
   * returned, the readables it did not read to their end (§12.4.1) and the writables it never
   * touched, with `$/stream.abort`. A writable it is writing to stays open: a handler may answer
   * first and produce afterwards (§12.5).
   */
  _settleParamStreams(rec, err) {
    for (const st of rec.streams) {
      if (st.settled) continue;
      if (err !== undefined) {
        // The error answer tells the host (SPEC.md §12.4.3): no `$/stream.abort`.
        const e = err instanceof TetherError && !(err instanceof RemoteError) ? err : streamError(st.id, `${rec.method} failed: ${err instanceof Error ? err.message : String(err)}`);
        this._abortStreams([st], e, false);
      } else if (st instanceof InStream) {
        st.fail(streamError(st.id, `${rec.method} returned before reading stream ${st.id} to its end`), true);
      } else if (!st.written && !st.writable?.locked) {
        st.abort(streamError(st.id, `${rec.method} returned without writing to stream ${st.id}`));
      }
    }
  }

  /** Cancels the handling of a host request (SPEC.md §7): abort, cancel its calls, answer. */
  _cancelRecord(rec) {
    if (rec.answered) return;
    rec.answered = true;
    rec.cancelled = true;
    this._inflight.delete(rec.id);
    if (rec.outgoing?.size) for (const oid of [...rec.outgoing]) this._cancelOutgoing(oid);
    // The host cancelled: it aborts these streams itself (SPEC.md §12.4.3).
    if (rec.streams) this._abortStreams(rec.streams, cancelledError(), false);
    this._error(rec.id, E.REQUEST_CANCELLED, 'request cancelled');
    if (rec.controller) {
      try {
        rec.controller.abort(cancelledError());
      } catch (err) {
        stderrLine(`an abort listener of ${rec.method} threw: ${err?.stack ?? err}`);
      }
    }
    if (this._shutdownId !== undefined) this._maybeFinishShutdown();
  }

  _maybeFinishShutdown() {
    if (this._inflight.size > 0 || this._state !== SHUTTING_DOWN) return;
    const id = this._shutdownId;
    this._state = ENDED_AFTER_SHUTDOWN;
    this._respond(id, {});
  }

  _initialize(id, p) {
    const bad = (problem) => this._error(id, E.INVALID_PARAMS, `invalid params: ${problem}`);
    const isVersions = (a) => Array.isArray(a) && a.every((v) => Number.isSafeInteger(v) && v > 0);
    if (!isVersions(p.protocolVersions) || p.protocolVersions.length === 0) return bad('protocolVersions must be a non-empty array of positive integers');
    if (p.interfaces === null || typeof p.interfaces !== 'object' || Array.isArray(p.interfaces)) return bad('interfaces must be an object');
    for (const [name, versions] of Object.entries(p.interfaces)) {
      if (!isVersions(versions)) return bad(`interfaces.${name} must be an array of positive integers`);
    }
    if (p.host === null || typeof p.host !== 'object' || typeof p.host.name !== 'string' || typeof p.host.version !== 'string') {
      return bad('host must be an object {name, version} of strings');
    }
    const caps = p.capabilities ?? {};
    if (caps === null || typeof caps !== 'object' || Array.isArray(caps)) return bad('capabilities must be an object');
    const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
    const credit = isObject(caps.streams) ? caps.streams.initialCredit ?? DEFAULT_INITIAL_CREDIT : DEFAULT_INITIAL_CREDIT;
    if (!Number.isSafeInteger(credit) || credit < 0) return bad('capabilities.streams.initialCredit must be a non-negative integer');
    if (!Number.isSafeInteger(p.maxFrameSize) || p.maxFrameSize < MIN_MAX_FRAME_SIZE) {
      return bad(`maxFrameSize must be an integer of at least ${MIN_MAX_FRAME_SIZE}`);
    }
    let level = LEVELS.info;
    if (p.logLevel !== undefined) {
      const name = typeof p.logLevel === 'string' ? normalizeLevel(p.logLevel) : undefined;
      if (name === undefined) return bad('logLevel must be one of trace, debug, info, warn, error');
      level = LEVELS[name];
    }
    const mismatch = (iface, host, plugin) =>
      this._error(
        id,
        E.UNSUPPORTED_VERSION,
        `no common version for interface ${iface}: host speaks [${host.join(', ')}], plugin speaks [${plugin.join(', ')}]`,
        { interface: iface, host, plugin },
      );
    const core = highestCommon(p.protocolVersions, OUR_PROTOCOL_VERSIONS);
    if (core === undefined) return mismatch('tether', p.protocolVersions, OUR_PROTOCOL_VERSIONS);
    const negotiated = new Map();
    const answer = {};
    for (const [name, offered] of Object.entries(p.interfaces)) {
      const impl = this._interfaces.get(name);
      if (!impl) continue;
      const v = highestCommon(offered, impl.versions);
      if (v === undefined) return mismatch(name, offered, impl.versions);
      const methods = impl.byVersion.get(v);
      negotiated.set(name, { version: v, methods, logger: impl.logger });
      const schemas = {};
      for (const [short, m] of methods) schemas[short] = { params: m.params, result: m.result };
      answer[name] = { version: v, methods: schemas };
    }
    this._negotiated = negotiated;
    this._maxFrameSize = p.maxFrameSize;
    this._logLevel = level;
    this._state = OPEN;
    // Each capability is announced back only when the host announced it (SPEC.md §10.2).
    const capabilities = {};
    if (isObject(caps.attachments)) capabilities.attachments = {};
    if (isObject(caps.streams)) capabilities.streams = { initialCredit: this._ourCredit };
    // Progress and trace context (SPEC.md §14, §15): this SDK implements both.
    if (isObject(caps.progress)) capabilities.progress = {};
    if (isObject(caps.traceContext)) capabilities.traceContext = {};
    this._progressOn = capabilities.progress !== undefined;
    this._respond(id, {
      protocolVersion: core,
      plugin: { name: this._name, version: this._version },
      capabilities,
      interfaces: answer,
    });
    // In use from the frame after this answer on (SPEC.md §2.8.3).
    this._attachments = capabilities.attachments !== undefined;
    this._streamsOn = capabilities.streams !== undefined;
    this._peerCredit = credit;
    // A chunk's frame must fit the maximum frame size: base64 takes 4 bytes for 3.
    const room = p.maxFrameSize - 256;
    this._maxChunk = Math.min(MAX_CHUNK, this._attachments ? room : Math.floor(room / 4) * 3);
  }

  // ----- the end -----

  _onEnd() {
    if (this._exiting) return;
    const cut = this._reader.end();
    if (cut) stderrLine(`stdin ended in the middle of a frame: ${cut}`);
    // Cancel what is still running (SPEC.md §1.6, §7.2), answer it, then exit once written.
    // Every stream still open fails with the reason (SPEC.md §12.4.5), before the handlers
    // reading them are cancelled; nobody is left to tell.
    for (const st of [...this._streams.values()]) {
      const err = streamError(st.id, `stream ${st.id} failed: the session ended (the host closed stdin)`);
      if (st instanceof InStream) st.fail(err, false);
      else st.abort(err, false);
    }
    this._wakeDrainWaiters(true);
    for (const rec of [...this._inflight.values()]) this._cancelRecord(rec);
    for (const id of [...this._pending.keys()]) this._cancelOutgoing(id);
    this._exiting = true;
    this._state = ENDED;
    this._flush();
    const timer = setTimeout(() => process.exit(0), 1500);
    timer.unref?.();
    // One turn first: handlers whose streams just failed see it (and may log) before the exit.
    setImmediate(() => this._maybeExit());
  }

  _maybeExit() {
    if (this._writing === 0 && this._out.length === 0) process.exit(0);
  }

  // ----- public API -----

  /** The negotiated version of `iface`, or undefined. @param {string} iface */
  version(iface) {
    return this._negotiated.get(iface)?.version;
  }

  /**
   * Sends a request to the host (after initialize). Pass `signal` to cancel it.
   * @param {string} method @param {object} [params] @param {{signal?: AbortSignal}} [options]
   */
  request(method, params = {}, options = {}) {
    return this._request(method, params, null, options.signal, method, options.onProgress);
  }

  /** Sends a notification to the host. @param {string} method @param {object} [params] */
  notify(method, params = {}) {
    if (this._state === NEW) throw new Error('cannot notify before the session is initialized');
    this._notify(method, params);
  }

  /**
   * Wraps `target` as a handle to pass in a request to the host: the host calls its methods
   * with `tether/invoke` while that request is pending, or until released if it retains it.
   * @param {object} target @param {string} iface
   */
  handle(target, iface) {
    return new LocalHandle(`p${this._nextHandle++}`, iface, target);
  }
}

// The state after shutdown was answered: like SHUTTING_DOWN, requests get -32005.
const ENDED_AFTER_SHUTDOWN = 4;

function highestCommon(offered, spoken) {
  let best;
  for (const v of offered) if (spoken.includes(v) && (best === undefined || v > best)) best = v;
  return best;
}

function normalizeLevel(s) {
  const l = s.toLowerCase();
  if (l === 'warning') return 'warn';
  return Object.hasOwn(LEVELS, l) ? l : undefined;
}

// ---------------------------------------------------------------------------------------------
// serve

function fail(message) {
  // A short write to a pipe, a file or a terminal is done before write() returns.
  try {
    process.stderr.write(`${reportName}: ${message}\n`);
  } catch {
    // stderr is closed: the exit status still says it.
  }
  process.exit(1);
}

function buildInterfaces(list) {
  if (!Array.isArray(list) || list.length === 0) fail('cannot start: serve() needs a non-empty `interfaces` array');
  const out = new Map();
  for (const def of list) {
    const name = def?.name;
    if (typeof name !== 'string' || !NAME_RE.test(name)) fail(`cannot start: interface name ${JSON.stringify(name)} is not letters, digits and _ beginning with a letter`);
    if (out.has(name)) fail(`cannot start: interface ${name} is declared twice`);
    const impl = def.handlers;
    if (impl === null || (typeof impl !== 'object' && typeof impl !== 'function')) fail(`cannot start: interface ${name} needs \`handlers\` (an object with a method per method name)`);
    const byVersion = new Map();
    for (const [key, methods] of Object.entries(def.versions ?? {})) {
      const v = Number(key);
      if (!Number.isSafeInteger(v) || v <= 0) fail(`cannot start: interface ${name} has a version ${JSON.stringify(key)} that is not a positive integer`);
      const ms = new Map();
      for (const [short, decl] of Object.entries(methods)) {
        if (!NAME_RE.test(short)) fail(`cannot start: method name ${name}.${short} is not letters, digits and _ beginning with a letter`);
        for (const part of ['params', 'result']) {
          if (decl?.[part]?.type !== 'object') fail(`cannot start: ${name}.${short} (version ${v}) needs a ${part} schema of type object`);
        }
        const fn = impl[short];
        if (typeof fn !== 'function') fail(`cannot start: interface ${name} version ${v} has method ${short} but its handlers have no function ${short}`);
        const withDialect = (x) => (x.$schema ? x : { $schema: 'https://json-schema.org/draft/2020-12/schema', ...x });
        ms.set(short, { params: withDialect(decl.params), result: withDialect(decl.result), fn, self: impl });
      }
      byVersion.set(v, ms);
    }
    if (byVersion.size === 0) fail(`cannot start: interface ${name} declares no versions`);
    const versions = [...byVersion.keys()].sort((a, b) => a - b);
    out.set(name, { name, versions, byVersion, logger: new Logger(name) });
  }
  return out;
}

/**
 * Runs the plugin: checks the magic cookie (exit 1 with a message when it is wrong, before
 * reading stdin), then serves the session on stdin/stdout until stdin ends (exit 0).
 *
 * @param {{
 *   name: string, version: string,
 *   interfaces: Array<{name: string, versions: Record<number, Record<string, {params: object, result: object}>>, handlers: object}>,
 *   cookie?: {key: string, value: string},
 *   hostName?: string,
 *   streams?: {initialCredit?: number},
 * }} options
 * @returns {Session}
 */
export function serve(options) {
  if (current) throw new Error('serve() was already called: a plugin process serves one session');
  reportName = typeof options?.name === 'string' && options.name ? options.name : reportName;
  const cookie = options.cookie ?? REFERENCE_COOKIE;
  const got = process.env[cookie.key];
  if (got !== cookie.value) {
    const host = options.hostName ? `by ${options.hostName}` : 'by its host application';
    fail(
      `this program is a Tether plugin and is not meant to be run directly: it is started ${host}, ` +
        `which sets ${cookie.key} (${got === undefined ? 'not set here' : 'set here to another value'}).`,
    );
  }
  if (typeof options.version !== 'string') fail('cannot start: serve() needs a `version` string');
  const fds = parseTransport(process.env[TRANSPORT_ENV]);
  // Our own children must not read an announcement meant for us.
  delete process.env[TRANSPORT_ENV];
  const interfaces = buildInterfaces(options.interfaces);
  const initialCredit = options.streams?.initialCredit ?? DEFAULT_INITIAL_CREDIT;
  if (!Number.isSafeInteger(initialCredit) || initialCredit < 1) fail('cannot start: streams.initialCredit must be a positive integer (bytes)');
  const session = new Session({ name: options.name, version: options.version, interfaces, initialCredit });
  current = session;
  if (process.listenerCount('uncaughtException') === 0) {
    process.on('uncaughtException', (err) => {
      stderrLine(`crashed: ${err?.stack ?? err}`);
      process.exit(70);
    });
  }
  if (process.listenerCount('unhandledRejection') === 0) {
    process.on('unhandledRejection', (reason) => {
      stderrLine(`a promise was rejected and nobody handled it: ${reason?.stack ?? reason}`);
    });
  }
  if (fds) openFrameFds(fds);
  else frameIn = process.stdin;
  directOut = directFrameOut(fds ? frameOutFd : 1);
  session._start();
  return session;
}

/**
 * `{ fs, fd }` when `fd` can take direct writes: Linux, Node.js 20.16+ (process.getBuiltinModule)
 * and the descriptor non-blocking, as libuv leaves a pipe or socket it opened as a stream (a full
 * pipe then refuses a write with EAGAIN instead of stopping the event loop). Otherwise null.
 */
function directFrameOut(fd) {
  if (process.platform !== 'linux') return null;
  const fs = process.getBuiltinModule?.('node:fs');
  if (!fs) return null;
  try {
    const flags = /^flags:\s*([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'));
    const O_NONBLOCK = 0o4000;
    if (!flags || (parseInt(flags[1], 8) & O_NONBLOCK) === 0) return null;
  } catch {
    return null;
  }
  return { fs, fd };
}

/**
 * The (read, write) descriptors of `TETHER_TRANSPORT` (SPEC.md §13.2), or null for stdio; exits 1
 * with a sentence on an unknown value.
 */
function parseTransport(value) {
  if (value === undefined || value === '' || value === 'stdio') return null;
  const m = /^fds:([1-9][0-9]{0,9}),([1-9][0-9]{0,9})$/.exec(value);
  const fds = m ? [Number(m[1]), Number(m[2])] : null;
  if (!fds || fds[0] < 3 || fds[1] < 3 || fds[0] === fds[1] || fds[0] > 2147483647 || fds[1] > 2147483647) {
    fail(`unknown transport ${JSON.stringify(value)} in ${TRANSPORT_ENV} (expected \`stdio\` or \`fds:<read fd>,<write fd>\`, two distinct descriptors of 3 or more)`);
  }
  return fds;
}

/**
 * Opens the two descriptors of the fds transport as the frame streams (SPEC.md §13.3). Node
 * cannot mark a descriptor it did not open close-on-exec, so on Linux each is reopened through
 * /proc/self/fd (libuv opens every file close-on-exec; for a pipe this is the same pipe) and the
 * inherited one is closed: the plugin's children then inherit neither. `net.Socket` reads and
 * writes a pipe descriptor through libuv's event loop, as `process.stdin` does for a pipe.
 */
function openFrameFds([r, w]) {
  const net = process.getBuiltinModule?.('node:net');
  const fs = process.getBuiltinModule?.('node:fs');
  if (!net || !fs) fail(`the fds transport of ${TRANSPORT_ENV} needs Node.js 20.16 or later (process.getBuiltinModule)`);
  const reopen = (fd, flags) => {
    try {
      fs.fstatSync(fd);
      if (process.platform !== 'linux') return fd;
      const fresh = fs.openSync(`/proc/self/fd/${fd}`, flags);
      fs.closeSync(fd);
      return fresh;
    } catch (err) {
      return fail(`cannot use descriptor ${fd} of ${TRANSPORT_ENV} (${err.code ?? err.message}): the host did not pass it`);
    }
  };
  const rfd = reopen(r, fs.constants.O_RDONLY);
  const wfd = reopen(w, fs.constants.O_WRONLY);
  frameIn = new net.Socket({ fd: rfd, readable: true, writable: false });
  stdout = new net.Socket({ fd: wfd, readable: false, writable: true });
  frameOutFd = wfd;
  frameWrite = stdout.write;
}
