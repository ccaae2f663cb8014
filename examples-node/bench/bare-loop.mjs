// A bare zero-dependency Node loop that answers kv.get with a fixed value: no cookie check, no
// validation, no SDK. Only a yardstick for bench/latency.mjs, not an example to copy.
const value = Buffer.from('v').toString('base64');
let buf = Buffer.alloc(0);
process.stdin.on('data', (chunk) => {
  buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
  let out = '';
  for (;;) {
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) break;
    const n = Number(buf.toString('latin1', 16, end));
    if (buf.length < end + 4 + n) break;
    const msg = JSON.parse(buf.toString('utf8', end + 4, end + 4 + n));
    buf = buf.subarray(end + 4 + n);
    const result = msg.method === 'tether/initialize' ? { protocolVersion: 1, plugin: { name: 'bare', version: '0' }, capabilities: {}, interfaces: {} } : { value };
    const body = JSON.stringify({ jsonrpc: '2.0', id: msg.id, result });
    out += `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  }
  if (out) process.stdout.write(out);
});
