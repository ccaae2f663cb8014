"""Round-trip latency and pipelined throughput of small `kv.get` calls on a Python plugin.

The driver is itself stdlib Python (pre-encoded frames, raw os.read/os.write), so its own cost
is part of every figure; a lean native host sees less.

    cd examples-python && /usr/bin/python3 bench/latency.py [plugin.py] [calls]
"""
import json
import os
import statistics
import subprocess
import sys
import time

ENV = dict(os.environ, TETHER_MAGIC_COOKIE="7c1e4b9a-tether-reference-plugin")


def frame(obj: dict) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


class Pipe:
    """Reads whole frames from the plugin's stdout."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buf = fd, b""

    def frames(self, n: int) -> list:
        out = []
        while len(out) < n:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                length = int(self.buf[16:end])
                if len(self.buf) >= end + 4 + length:
                    out.append(self.buf[end + 4: end + 4 + length])
                    self.buf = self.buf[end + 4 + length:]
                    continue
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise SystemExit("plugin closed stdout")
            self.buf += chunk
        return out


def main() -> None:
    script = sys.argv[1] if len(sys.argv) > 1 else "kv.py"
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    p = subprocess.Popen(["/usr/bin/python3", script], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, env=ENV)
    w, r = p.stdin.fileno(), Pipe(p.stdout.fileno())
    os.write(w, frame({"jsonrpc": "2.0", "id": 0, "method": "tether/initialize", "params": {
        "protocolVersions": [1], "interfaces": {"kv": [2]}, "host": {"name": "b", "version": "0"},
        "capabilities": {}, "maxFrameSize": 33554432, "logLevel": "info"}}))
    r.frames(1)
    os.write(w, frame({"jsonrpc": "2.0", "id": 1, "method": "kv.put",
                       "params": {"key": "k", "value": "aGVsbG8="}}))
    r.frames(1)
    gets = [frame({"jsonrpc": "2.0", "id": i, "method": "kv.get", "params": {"key": "k"}})
            for i in range(2, calls + 2)]
    # Sequential: one call at a time.
    lat = []
    for f in gets[: calls // 4]:
        t = time.perf_counter()
        os.write(w, f)
        r.frames(1)
        lat.append(time.perf_counter() - t)
    lat.sort()
    print(f"sequential kv.get: median {statistics.median(lat) * 1e6:.0f} us, "
          f"p99 {lat[int(len(lat) * 0.99)] * 1e6:.0f} us over {len(lat)} calls")
    # Pipelined: keep 64 requests in flight.
    window = 64
    t = time.perf_counter()
    os.write(w, b"".join(gets[:window]))
    sent, done = window, 0
    while done < calls:
        got = len(r.frames(1)) + 0
        extra = r.buf.count(b"Content-Length: ")  # frames already buffered
        got += len(r.frames(extra)) if extra else 0
        done += got
        more = min(got, calls - sent)
        if more > 0:
            os.write(w, b"".join(gets[sent: sent + more]))
            sent += more
    elapsed = time.perf_counter() - t
    print(f"pipelined kv.get, {window} in flight: {calls / elapsed:,.0f} calls/s "
          f"({calls} calls in {elapsed:.2f} s)")
    os.write(w, frame({"jsonrpc": "2.0", "id": "end", "method": "tether/shutdown"}))
    r.frames(1)
    p.stdin.close()
    p.wait()


if __name__ == "__main__":
    main()
