// blob-node: the `blob` reference interface (SPEC.md §9.5), a store of named byte strings moved
// by streams. Streams arrive in handlers as web ReadableStreams and leave as ones.
// Run by a host, e.g.: cargo run --release -p tether-conformance -- --plugin "/usr/bin/node examples-node/blob.mjs"
import { createHash } from 'node:crypto';
import { serve, schema as s, streamFrom, TetherError } from './tether.mjs';

const store = new Map(); // name -> Buffer

const digest = s.object({ size: s.integer({ minimum: 0 }), sha256: s.string() });
const upload = { params: s.object({ name: s.string(), data: s.stream('read') }), result: digest };
const download = { params: s.object({ name: s.string() }), result: s.object({ size: s.integer(), data: s.stream('read') }) };
const count = { params: s.object({ data: s.stream('read') }), result: digest };
const produce = { params: s.object({ size: s.integer({ minimum: 0, maximum: 2 ** 40 }) }), result: s.object({ data: s.stream('read') }) };

/** Reads a stream to its end: its size and SHA-256, and its chunks when `keep` is given. */
async function drain(data, keep) {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of data) {
    hash.update(chunk);
    size += chunk.length;
    keep?.push(chunk);
  }
  return { size, sha256: hash.digest('hex') };
}

// `produce` sends byte i = i mod 251: every chunk is a view of one pattern, nothing is allocated.
const CHUNK = 1 << 20;
const PATTERN = Buffer.alloc(CHUNK + 251, 0).map((_, i) => i % 251);

serve({
  name: 'blob-node',
  version: '0.1.0',
  interfaces: [
    {
      name: 'blob',
      versions: { 1: { upload, download, count, produce } },
      handlers: {
        // An aborted upload fails the read with a -32006 TetherError: it escapes, nothing is stored.
        async upload({ name, data }) {
          const chunks = [];
          const answer = await drain(data, chunks);
          store.set(name, Buffer.concat(chunks, answer.size));
          return answer;
        },
        download({ name }) {
          const value = store.get(name);
          if (value === undefined) throw new TetherError(1002, `blob not found: ${name}`, { name });
          return { size: value.length, data: streamFrom(value) };
        },
        count({ data }) {
          return drain(data);
        },
        produce({ size }) {
          let sent = 0;
          const data = new ReadableStream({
            pull(c) {
              if (sent === size) return c.close();
              const n = Math.min(CHUNK, size - sent);
              c.enqueue(PATTERN.subarray(sent % 251, (sent % 251) + n));
              sent += n;
            },
          });
          return { data };
        },
      },
    },
  ],
});
