"""Bulk bytes through a Python plugin: 16 MiB `kv.put`/`kv.get` with attachments and with
base64 (SPEC.md §2.8), and 1 GiB through a stream of `blob.produce` and `blob.count` (§12).

The driver is stdlib Python (raw os.readv/os.writev, one buffer per frame), so its own cost is
part of every figure. `pipe echo` is the same bytes through `cat`, for scale.

    cd examples-python && /usr/bin/python3 bench/bulk.py [stream MiB] [repeats]
"""
import base64
import json
import os
import statistics
import subprocess
import sys
import time

ENV = dict(os.environ, TETHER_MAGIC_COOKIE="7c1e4b9a-tether-reference-plugin")
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20


def head(body: bytes, parts: list) -> bytes:
    if not parts:
        return b"Content-Length: %d\r\n\r\n" % len(body)
    sizes = [len(p) for p in parts]
    return b"Content-Length: %d\r\nTether-Attachments: %s\r\n\r\n" % (
        len(body) + sum(sizes), ",".join(map(str, sizes)).encode())


def write_all(fd: int, buffers: list) -> None:
    buffers = [memoryview(b) for b in buffers]
    while buffers:
        n = os.writev(fd, buffers)
        while buffers and n >= len(buffers[0]):
            n -= len(buffers[0])
            buffers.pop(0)
        if n:
            buffers[0] = buffers[0][n:]


class Plugin:
    """A plugin process and a frame reader on its stdout."""

    def __init__(self, script: str, capabilities: dict) -> None:
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, script)], env=ENV,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=HERE)
        self.out, self.inp = self.proc.stdout.fileno(), self.proc.stdin.fileno()
        self.buf = bytearray()
        self.next_id = 0
        self.send({"jsonrpc": "2.0", "id": 0, "method": "tether/initialize", "params": {
            "protocolVersions": [1], "interfaces": {"kv": [2], "blob": [1]},
            "host": {"name": "bulk-bench", "version": "0"}, "capabilities": capabilities,
            "maxFrameSize": 64 * MiB}})
        self.frame()

    def send(self, msg: dict, parts: list = ()) -> None:
        body = json.dumps(msg, separators=(",", ":")).encode()
        write_all(self.inp, [head(body, list(parts)), body, *parts])

    def request(self, method: str, params: dict, parts: list = ()) -> int:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params},
                  parts)
        return self.next_id

    def frame(self) -> tuple:
        """The next message and its attachments (memoryviews of one buffer)."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            self.buf += os.read(self.out, 1 << 16)
        lines = bytes(self.buf[:end]).split(b"\r\n")
        total = int(lines[0][16:])
        sizes = [int(x) for x in lines[1][20:].split(b",")] if len(lines) > 1 else []
        data = bytearray(total)
        have = min(total, len(self.buf) - end - 4)
        data[:have] = self.buf[end + 4: end + 4 + have]
        del self.buf[: end + 4 + have]
        view = memoryview(data)
        while have < total:
            n = os.readv(self.out, [view[have:]])
            if not n:
                raise EOFError("the plugin closed stdout")
            have += n
        at = total - sum(sizes)
        msg, parts = json.loads(bytes(view[:at])), []
        for n in sizes:
            parts.append(view[at: at + n])
            at += n
        return msg, parts

    def value(self, msg: dict, parts: list, name: str) -> bytes:
        v = msg["result"][name]
        return bytes(parts[v["$bytes"]]) if isinstance(v, dict) else base64.b64decode(v)

    def peak_rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(5)


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def kv(attachments: bool, repeats: int) -> tuple:
    p = Plugin("kv.py", {"attachments": {}} if attachments else {})
    value = os.urandom(16 * MiB)

    def put() -> None:
        if attachments:
            p.request("kv.put", {"key": "k", "value": {"$bytes": 0}}, [value])
        else:
            p.request("kv.put", {"key": "k", "value": base64.b64encode(value).decode()})
        msg, _ = p.frame()
        assert msg["result"] == {}, msg

    def get() -> None:
        p.request("kv.get", {"key": "k"})
        msg, parts = p.frame()
        assert len(p.value(msg, parts, "value")) == len(value)

    put_s, get_s = timed(put, repeats), timed(get, repeats)
    p.close()
    return 16 * MiB / put_s / 1e6, 16 * MiB / get_s / 1e6


def produce(size: int, credit: int) -> tuple:
    """blob.produce: the plugin writes, this host reads and grants half its window at a time."""
    p = Plugin("blob.py", {"attachments": {}, "streams": {"initialCredit": credit}})
    start = time.perf_counter()
    rid = p.request("blob.produce", {"size": size})
    msg, _ = p.frame()
    assert msg["id"] == rid, msg
    sid = msg["result"]["data"]["$stream"]
    got = unacked = 0
    while True:
        msg, parts = p.frame()
        if msg.get("method") == "$/stream.end":
            break
        n = len(parts[0]) if parts else len(base64.b64decode(msg["params"]["data"]))
        got += n
        unacked += n
        if unacked * 2 >= credit:
            p.send({"jsonrpc": "2.0", "method": "$/stream.credit",
                    "params": {"stream": sid, "bytes": unacked}})
            unacked = 0
    elapsed = time.perf_counter() - start
    assert got == size
    rss = p.peak_rss()
    p.close()
    return size / elapsed / 1e6, rss


def count(size: int) -> tuple:
    """blob.count: this host writes 1 MiB chunks within the credit the plugin grants."""
    p = Plugin("blob.py", {"attachments": {}, "streams": {}})
    chunk = bytes(range(256)) * 4096
    start = time.perf_counter()
    rid = p.request("blob.count", {"data": {"$stream": 1, "mode": "read"}})
    credit, sent, answer = MiB, 0, None  # the plugin's default initialCredit
    while sent < size:
        n = min(credit, len(chunk), size - sent)
        if n == 0:
            msg, _ = p.frame()
            if msg.get("method") == "$/stream.credit":
                credit += msg["params"]["bytes"]
            continue
        p.send({"jsonrpc": "2.0", "method": "$/stream.data",
                "params": {"stream": 1, "data": {"$bytes": 0}}}, [memoryview(chunk)[:n]])
        credit -= n
        sent += n
    p.send({"jsonrpc": "2.0", "method": "$/stream.end", "params": {"stream": 1}})
    while answer is None:
        msg, _ = p.frame()
        if msg.get("id") == rid:
            answer = msg
    elapsed = time.perf_counter() - start
    assert answer["result"]["size"] == size, answer
    rss = p.peak_rss()
    p.close()
    return size / elapsed / 1e6, rss


def pipe_echo(size: int) -> float:
    """The same bytes through `cat` and back, for scale."""
    proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    data, buf = os.urandom(size), bytearray(size)
    import threading

    start = time.perf_counter()
    t = threading.Thread(target=lambda: (write_all(proc.stdin.fileno(), [data]),
                                         proc.stdin.close()))
    t.start()
    view, have = memoryview(buf), 0
    while have < size:
        have += os.readv(proc.stdout.fileno(), [view[have:]])
    elapsed = time.perf_counter() - start
    t.join()
    proc.wait()
    return size / elapsed / 1e6


def main() -> None:
    stream_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    echo = statistics.median(pipe_echo(16 * MiB) for _ in range(repeats))
    print(f"pipe echo 16 MiB (cat):        {echo:8.0f} MB/s")
    for attachments in (False, True):
        put, get = kv(attachments, repeats)
        name = "attachments" if attachments else "base64     "
        print(f"kv 16 MiB {name} put/get: {put:6.0f} / {get:4.0f} MB/s "
              f"({put / echo:.2f} / {get / echo:.2f} of pipe echo)")
    rate, rss = produce(stream_mib * MiB, MiB)
    print(f"blob.produce {stream_mib} MiB:          {rate:8.0f} MB/s, plugin peak RSS "
          f"{rss / MiB:.0f} MiB (window 1 MiB)")
    rate, rss = count(stream_mib * MiB)
    print(f"blob.count {stream_mib} MiB:            {rate:8.0f} MB/s, plugin peak RSS "
          f"{rss / MiB:.0f} MiB (window 1 MiB)")


if __name__ == "__main__":
    main()
