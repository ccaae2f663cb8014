// kv-node: the `kv` reference interface, versions 1 and 2 (SPEC.md §9.1, §9.2), in memory.
// Run by a host, e.g.: cargo run --release -p tether-conformance -- --plugin "/usr/bin/node examples-node/kv.mjs"
import { serve, schema as s, TetherError } from './tether.mjs';

const store = new Map(); // key -> Buffer

// A put of more than this many bytes reports its progress in steps of it (SPEC.md §9.1, §14).
const PROGRESS_STEP = 16384;

// The methods' JSON Schemas (SPEC.md §4.4); bytes are base64 on the wire, Buffers here.
const key = s.string({ minLength: 1 }); // any non-empty Unicode string
const put = { params: s.object({ key, value: s.bytes() }), result: s.empty() };
const get = { params: s.object({ key }), result: s.object({ value: s.bytes() }) };
const del = { params: s.object({ key }), result: s.object({ existed: s.boolean() }) };

serve({
  name: 'kv-node',
  version: '0.1.0',
  interfaces: [
    {
      name: 'kv',
      versions: { 1: { put, get }, 2: { put, get, delete: del } },
      handlers: {
        put({ key, value }, ctx) {
          ctx.log.debug('put', { key, bytes: value.length });
          store.set(key, value);
          if (ctx.wantsProgress && value.length > PROGRESS_STEP) {
            // Kept as received (no copy): the steps count bytes accepted, then the whole value.
            for (let done = PROGRESS_STEP; done < value.length; done += PROGRESS_STEP) ctx.progress(done, value.length);
            ctx.progress(value.length, value.length);
          }
        },
        get({ key }) {
          const value = store.get(key);
          if (value === undefined) throw new TetherError(1001, `key not found: ${key}`, { key });
          return { value };
        },
        delete({ key }) {
          return { existed: store.delete(key) };
        },
      },
    },
  ],
});
