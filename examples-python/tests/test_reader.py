"""The SDK's frame reader in process: random splits, garbage, limits (SPEC.md §2)."""

import json
import os
import random
import sys
import threading
import unittest
import unittest.mock

from harness import EXAMPLES

sys.path.insert(0, EXAMPLES)
import tether  # noqa: E402


def frames_of(data: bytes, max_frame: int = tether.DEFAULT_MAX_FRAME_SIZE,
              chunks: int = 0, seed: int = 0) -> list:
    """Everything a reader returns for ``data``, written in random pieces through a pipe."""
    r, w = os.pipe()
    rng = random.Random(seed)

    def write() -> None:
        view = memoryview(data)
        while view:
            n = rng.randint(1, max(1, len(data) // chunks)) if chunks else len(view)
            os.write(w, view[:n])
            view = view[n:]
        os.close(w)

    t = threading.Thread(target=write)
    t.start()
    reader = tether._Reader(r)
    reader.max_frame = max_frame
    out = []
    while True:
        frame = reader.next()
        if frame is None:
            break
        out.append((frame.size, frame.prefix[:20]) if isinstance(frame, tether._Oversized)
                   else bytes(frame))
    t.join()
    os.close(r)
    return out


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class ReaderTest(unittest.TestCase):
    def setUp(self) -> None:
        self.reports: list = []  # what the reader reports on stderr, collected instead
        real, tether._report = tether._report, self.reports.append
        self.addCleanup(setattr, tether, "_report", real)

    def test_random_splits(self) -> None:
        bodies = [json.dumps({"i": i, "pad": "x" * (i * 37 % 5000)}).encode()
                  for i in range(300)]
        data = b"".join(frame(b) for b in bodies)
        for seed in range(5):
            self.assertEqual(frames_of(data, chunks=400, seed=seed), bodies)

    def test_bodies_larger_than_a_read(self) -> None:
        bodies = [b"a" * 1_000_000, b"{}", b"b" * 300_000]
        self.assertEqual(frames_of(b"".join(frame(b) for b in bodies), chunks=7), bodies)

    def test_garbage_between_frames(self) -> None:
        rng = random.Random(1)
        bodies, data = [], b""
        for i in range(200):
            junk = bytes(rng.choice(b"abc \n\r:{}-") for _ in range(rng.randint(0, 50)))
            body = b'{"i":%d}' % i
            bodies.append(body)
            data += junk.replace(b"ength", b"") + b"\n" + frame(body)
        got = frames_of(data, chunks=300, seed=3)
        self.assertEqual([b for b in got if b in bodies], bodies)
        self.assertTrue(all("not a frame" in r for r in self.reports))

    def test_exact_limit(self) -> None:
        ok, big = b"x" * 1000, b"y" * 1001
        got = frames_of(frame(ok) + frame(big) + frame(b"{}"), max_frame=1000, chunks=50)
        self.assertEqual(got, [ok, (1001, b"y" * 20), b"{}"])

    def test_marker_split_across_reads(self) -> None:
        data = b"junk junk" + frame(b"[1]")
        for cut in range(len(data)):
            r, w = os.pipe()
            os.write(w, data[:cut])
            reader = tether._Reader(r)
            t = threading.Timer(0.01, lambda: (os.write(w, data[cut:]), os.close(w)))
            t.start()
            self.assertEqual(bytes(reader.next()), b"[1]", cut)
            t.join()
            os.close(r)

    def test_header_block_cap(self) -> None:
        long_header = b"X-Long: " + b"a" * 5000 + b"\r\nContent-Length: 2\r\n\r\n{}"
        self.assertEqual(frames_of(long_header + frame(b"[]")), [b"{}", b"[]"])

    def test_peek_members(self) -> None:
        peek = tether._peek_members
        self.assertEqual(peek(b'{"jsonrpc":"2.0","id":5,"method":"kv.put","params":{"v":"AAA'),
                         {"jsonrpc": "2.0", "id": 5, "method": "kv.put", "params": tether._MISSING})
        self.assertEqual(peek(b' { "id" : "x" , "result" : {"a'),
                         {"id": "x", "result": tether._MISSING})
        self.assertEqual(peek(b'[1,2'), {})
        self.assertEqual(peek(b'{"params":{"v":"AAAA'), {"params": tether._MISSING})

    def test_base64(self) -> None:
        for good, raw in (("", b""), ("AA==", b"\0"), ("AAA=", b"\0\0"), ("/+8=", b"\xff\xef")):
            self.assertEqual(tether._b64decode(good), raw)
        for bad in ("A", "AA=", "A===", "====", "AA=A", "AA==AA==", "-_==", "AA AA", "AAé="):
            with self.assertRaises(ValueError, msg=bad):
                tether._b64decode(bad)


if __name__ == "__main__":
    unittest.main()


class WriteBuffersTest(unittest.TestCase):
    """``_write_buffers``: one writev for what the pipe takes whole, and after a partial write
    (a signal, a non-blocking pipe) the rest from the exact byte where the pipe stopped."""

    BUFFERS = [b"Content-Length: 3\r\n\r\n", b"abc", b"", b"x" * 5000, memoryview(b"tail")]

    def written(self, take) -> tuple[bytes, int]:
        """What reaches the pipe when each writev writes ``take(wanted)`` bytes, and how many
        writev calls it took."""
        r, w = os.pipe()
        calls = []
        real_writev = os.writev

        def writev(fd: int, buffers: list) -> int:
            data = b"".join(bytes(b) for b in buffers)
            calls.append(len(data))
            return os.write(fd, data[: take(len(data))]) if take else real_writev(fd, buffers)

        try:
            with unittest.mock.patch.object(tether.os, "writev", writev):
                tether._write_buffers(w, list(self.BUFFERS))
        finally:
            os.close(w)
        with os.fdopen(r, "rb") as f:
            return f.read(), len(calls)

    def test_a_whole_write_is_one_call(self) -> None:
        data, calls = self.written(None)
        self.assertEqual(data, b"".join(bytes(b) for b in self.BUFFERS))
        self.assertEqual(calls, 1)

    def test_partial_writes_continue_where_the_pipe_stopped(self) -> None:
        expected = b"".join(bytes(b) for b in self.BUFFERS)
        rng = random.Random(7)
        for take in (lambda n: 1, lambda n: 7, lambda n: 21, lambda n: 24, lambda n: max(1, n - 1),
                     lambda n: rng.randint(1, n)):
            data, calls = self.written(take)
            self.assertEqual(data, expected)
            self.assertGreater(calls, 1)
