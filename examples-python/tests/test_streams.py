"""Streams (SPEC.md §12) with credit, through blob.py (§9.5) and the lab plugin."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import unittest
from typing import Any

from harness import TESTS, Plugin, data_of, precompile

LAB = os.path.join(TESTS, "plugins", "lab.py")
MiB = 1 << 20


def setUpModule() -> None:
    precompile()


def pattern(size: int) -> bytes:
    return bytes(i % 251 for i in range(251)) * (size // 251) + bytes(range(size % 251))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class StreamHost:
    """The host's side of streams: sends data in the plugin's credit, reads the plugin's data
    checking that every chunk stays within the credit it was granted."""

    def __init__(self, p: Plugin, credit: int) -> None:
        self.p = p
        self.credit = credit  # the host's initialCredit: what the plugin may send per stream
        self.remaining: dict[int, int] = {}  # per plugin-written stream: credit left
        self.plugin_credit = 0  # the plugin's initialCredit, read from its initialize answer

    def initialize(self, interfaces: dict[str, list[int]], attachments: bool = True,
                   **kw: Any) -> dict[str, Any]:
        caps: dict[str, Any] = {"streams": {"initialCredit": self.credit}}
        if attachments:
            caps["attachments"] = {}
        result = self.p.initialize(interfaces, capabilities=caps, **kw)["result"]
        self.plugin_credit = result["capabilities"]["streams"]["initialCredit"]
        return result

    def data(self, sid: int, data: bytes) -> None:
        self.p.notify("$/stream.data", {"stream": sid, "data": b64(data)})

    def end(self, sid: int) -> None:
        self.p.notify("$/stream.end", {"stream": sid})

    def next(self, sid: int, others: list[dict[str, Any]] | None = None) -> Any:
        """The next frame about stream ``sid``: its data (bytes, checked against the credit),
        or the message (end, abort); other frames go to ``others``."""
        while True:
            msg = self.p.recv()
            if msg.get("params", {}).get("stream") != sid or "id" in msg:
                if others is None:
                    raise AssertionError(f"unexpected frame: {msg!r}")
                others.append(msg)
                continue
            if msg["method"] == "$/stream.data":
                chunk = data_of(msg)
                left = self.remaining.setdefault(sid, self.credit)
                if len(chunk) > left:
                    raise AssertionError(f"stream {sid}: a chunk of {len(chunk)} bytes with "
                                         f"{left} bytes of credit")
                self.remaining[sid] = left - len(chunk)
                return chunk
            return msg

    def grant(self, sid: int, n: int) -> None:
        self.remaining[sid] = self.remaining.setdefault(sid, self.credit) + n
        self.p.notify("$/stream.credit", {"stream": sid, "bytes": n})

    def read_stream(self, sid: int, grant: int, others: list | None = None) -> bytes:
        """Everything up to the end, granting ``grant`` bytes whenever the credit runs out."""
        out = bytearray()
        while True:
            got = self.next(sid, others)
            if isinstance(got, bytes):
                out += got
                if self.remaining[sid] == 0:
                    self.grant(sid, grant)
                continue
            if got["method"] != "$/stream.end":
                raise AssertionError(f"stream {sid} did not end: {got!r}")
            return bytes(out)


def peak_rss(pid: int) -> tuple[int, int]:
    """VmHWM and VmRSS of a process, in bytes."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                fields[name] = int(value.split()[0]) * 1024
    return fields["VmHWM"], fields["VmRSS"]


class BlobTest(unittest.TestCase):
    """The blob example with a host that grants a small window."""

    attachments = True

    def setUp(self) -> None:
        self.p = Plugin("blob.py")
        self.addCleanup(self.p.kill)
        self.h = StreamHost(self.p, credit=4096)
        self.h.initialize({"blob": [1]}, attachments=self.attachments)

    def tearDown(self) -> None:
        if self.p.proc.poll() is None:
            self.p.shutdown()

    def upload(self, name: str, data: bytes, sid: int) -> dict[str, Any]:
        rid = self.p.request("blob.upload", {"name": name, "data": {"$stream": sid,
                                                                     "mode": "read"}})
        for i in range(0, len(data), 1000):
            self.h.data(sid, data[i: i + 1000])
        self.h.end(sid)
        return self.p.response(rid)

    def test_upload_download(self) -> None:
        data = os.urandom(20000)
        answer = self.upload("x", data, 1)["result"]
        self.assertEqual(answer, {"size": 20000, "sha256": hashlib.sha256(data).hexdigest()})
        msg = self.p.call("blob.download", {"name": "x"})
        sid = msg["result"]["data"]["$stream"]
        self.assertEqual(msg["result"], {"size": 20000, "data": {"$stream": sid,
                                                                   "mode": "read"}})
        self.assertEqual(sid % 2, 0)  # the plugin opens even ids
        self.assertEqual(self.h.read_stream(sid, grant=3000), data)
        self.assertEqual(self.p.error("blob.download", {"name": "nope"}),
                         {"code": 1002, "message": "blob not found: nope",
                          "data": {"name": "nope"}})

    def test_produce_respects_the_credit(self) -> None:
        # Every chunk is checked against the credit left (StreamHost.next); grants are small.
        msg = self.p.call("blob.produce", {"size": 100000})
        sid = msg["result"]["data"]["$stream"]
        self.assertEqual(self.h.read_stream(sid, grant=777), pattern(100000))
        msg = self.p.call("blob.produce", {"size": 0})
        self.assertNotEqual(msg["result"]["data"]["$stream"], sid)  # never reused
        self.assertEqual(self.h.read_stream(msg["result"]["data"]["$stream"], grant=1), b"")

    def test_count_and_an_aborted_upload(self) -> None:
        rid = self.p.request("blob.count", {"data": {"$stream": 1, "mode": "read"}})
        self.h.data(1, b"")
        self.h.data(1, b"abc")
        self.h.end(1)
        self.assertEqual(self.p.response(rid)["result"]["sha256"],
                         hashlib.sha256(b"abc").hexdigest())
        rid = self.p.request("blob.upload", {"name": "partial",
                                             "data": {"$stream": 3, "mode": "read"}})
        self.h.data(3, b"part")
        self.p.notify("$/stream.abort", {"stream": 3, "error": {"code": -32006,
                                                                "message": "source failed"}})
        err = self.p.response(rid)["error"]
        self.assertEqual((err["code"], err["data"]),
                         (-32006, {"stream": 3, "cause": {"code": -32006,
                                                          "message": "source failed"}}))
        self.assertIn("source failed", err["message"])
        self.assertEqual(self.p.error("blob.download", {"name": "partial"})["code"], 1002)

    def test_invalid_stream_objects(self) -> None:
        self.upload("a", b"x", 1)
        for data in ({"$stream": 1, "mode": "read"},  # not new
                     {"$stream": 2, "mode": "read"},  # even: the plugin's
                     {"$stream": 5, "mode": "sideways"}, {"$stream": 0, "mode": "read"},
                     {"$stream": "7", "mode": "read"}, {"$stream": 9, "mode": "read", "x": 1},
                     {"$stream": 11, "mode": "write"}):  # the wrong mode for this method
            with self.subTest(data=data):
                self.assertEqual(self.p.error("blob.count", {"data": data})["code"], -32602)
        # New odd ids of refused requests are aborted at once (§12.4.4): 9 (an extra member)
        # and 11 (the wrong mode), and a stream sent to a method that does not exist; never
        # the ids that were not new or not the host's.
        self.assertEqual(self.p.error("blob.nope", {"data": {"$stream": 13, "mode": "read"}})
                         ["code"], -32601)
        self.assertEqual([(n["method"], n["params"]["stream"]) for n in self.p.notifications],
                         [("$/stream.abort", 9), ("$/stream.abort", 11),
                          ("$/stream.abort", 13)])

    def test_unknown_streams_are_ignored(self) -> None:
        for method in ("data", "end", "credit", "abort"):
            self.p.notify(f"$/stream.{method}", {"stream": 99, "data": "", "bytes": 5,
                                                 "error": {"code": 1, "message": "m"}})
        self.assertEqual(self.p.result("tether/ping"), {})


class BlobBase64Test(BlobTest):
    """The same with streams but without attachments: chunks travel as base64."""

    attachments = False


class LabStreamsTest(unittest.TestCase):
    """Both modes, credit granted by the plugin, aborts, and a stream nobody reads."""

    def setUp(self) -> None:
        self.p = Plugin(LAB, env={"LAB_CREDIT": "8192"})
        self.addCleanup(self.p.kill)
        self.h = StreamHost(self.p, credit=1000)
        self.h.initialize({"lab": [1]})
        self.assertEqual(self.h.plugin_credit, 8192)

    def tearDown(self) -> None:
        if self.p.proc.poll() is None:
            self.p.shutdown()

    def test_the_plugin_grants_as_it_reads(self) -> None:
        rid = self.p.request("lab.read_all", {"data": {"$stream": 1, "mode": "read"},
                                              "chunk": 1000})
        allowed, sent, grants = self.h.plugin_credit, 0, []
        while sent < 100000:  # never more than the plugin granted
            n = min(allowed, 1500, 100000 - sent)
            if n == 0:
                msg = self.p.recv()
                self.assertEqual((msg["method"], msg["params"]["stream"]),
                                 ("$/stream.credit", 1))
                grants.append(msg["params"]["bytes"])
                allowed += msg["params"]["bytes"]
                continue
            self.h.data(1, b"x" * n)
            allowed -= n
            sent += n
        self.h.end(1)
        others: list = []
        while True:
            msg = self.p.recv()
            if msg.get("id") == rid:
                break
            others.append(msg)
        self.assertEqual(msg["result"], {"size": 100000, "reads": {"1000": 100}})
        # Grants come when the application has read at least half of the window.
        self.assertTrue(all(g >= 4096 for g in grants), grants)

    def test_more_than_granted_is_aborted(self) -> None:
        rid = self.p.request("lab.hold", {"data": {"$stream": 1, "mode": "read"}})
        self.h.data(1, b"y" * 8192)  # the whole window: fine
        self.h.data(1, b"z")  # one byte beyond
        abort = self.p.recv()
        self.assertEqual(abort["method"], "$/stream.abort")
        self.assertEqual(abort["params"]["stream"], 1)
        self.assertEqual(abort["params"]["error"]["code"], -32006)
        self.p.notify("$/cancelRequest", {"id": rid})
        self.assertEqual(self.p.response(rid)["error"]["code"], -32800)

    def test_a_chunk_that_is_not_bytes_is_aborted(self) -> None:
        for sid, data in ((1, "not base64!"), (3, {"$bytes": 0}), (5, 42)):
            with self.subTest(data=data):
                rid = self.p.request("lab.block_reading", {"data": {"$stream": sid,
                                                                    "mode": "read"}})
                self.p.notify("$/stream.data", {"stream": sid, "data": data})
                got = [self.p.recv(), self.p.recv()]  # the abort, and the failed read's answer
                abort = [m for m in got if m.get("method") == "$/stream.abort"]
                self.assertEqual(abort[0]["params"]["stream"], sid)
                self.assertEqual(abort[0]["params"]["error"]["code"], -32006)
                answer = [m for m in got if m.get("id") == rid]
                self.assertEqual(answer[0]["error"]["code"], -32006)

    def test_early_return_aborts_the_rest(self) -> None:
        rid = self.p.request("lab.sink", {"data": {"$stream": 1, "mode": "read"},
                                          "stop_after": 10})
        self.h.data(1, b"0123456789abcdef")
        got = [self.p.recv(), self.p.recv()]
        abort = [m for m in got if m.get("method") == "$/stream.abort"]
        answer = [m for m in got if m.get("id") == rid]
        self.assertEqual(abort[0]["params"]["stream"], 1)
        self.assertEqual(abort[0]["params"]["error"]["code"], -32006)
        self.assertEqual(answer[0]["result"]["got"], 10)
        self.h.data(1, b"late")  # crosses the abort: ignored
        self.assertEqual(self.p.result("tether/ping"), {})

    def test_cancel_aborts_with_32800(self) -> None:
        rid = self.p.request("lab.hold", {"data": {"$stream": 1, "mode": "read"}})
        self.assertEqual(self.p.result("tether/ping"), {})  # the handler is running
        self.p.notify("$/cancelRequest", {"id": rid})
        got = [self.p.recv(), self.p.recv()]
        abort = [m for m in got if m.get("method") == "$/stream.abort"]
        self.assertEqual(abort[0]["params"]["stream"], 1)
        self.assertEqual(abort[0]["params"]["error"]["code"], -32800)
        self.assertEqual([m["error"]["code"] for m in got if m.get("id") == rid], [-32800])

    def test_a_stream_nobody_reads_does_not_stall_other_calls(self) -> None:
        hold = self.p.request("lab.hold", {"data": {"$stream": 1, "mode": "read"}})
        self.h.data(1, b"w" * 8192)  # a full window that nobody reads
        self.assertEqual(self.p.result("tether/ping"), {})
        # A stream the plugin writes and the host grants no more credit for: the same.
        rid = self.p.request("lab.write_to", {"out": {"$stream": 3, "mode": "write"},
                                              "size": 5000})
        first = self.h.next(3)
        self.assertEqual(len(first), 1000)  # the host's whole credit, then nothing
        for i in range(3):
            self.assertEqual(self.p.result("tether/ping"), {}, i)
        self.h.grant(3, 4000)
        self.assertEqual(len(first) + len(self.h.read_stream(3, grant=1000)), 5000)
        self.assertEqual(self.p.response(rid)["result"], {"written": 5000})
        self.p.notify("$/cancelRequest", {"id": hold})
        self.assertEqual(self.p.response(hold)["error"]["code"], -32800)

    def test_reads_fill_what_they_ask_for(self) -> None:
        # read(1000) on chunks of 300 bytes returns 1000 bytes (the last read fewer, at the
        # end), so lab.read_all sees every byte; the end alone answers b"".
        rid = self.p.request("lab.read_all", {"data": {"$stream": 1, "mode": "read"},
                                              "chunk": 1000})
        for _ in range(10):
            self.h.data(1, b"r" * 300)
        self.h.end(1)
        others: list = []
        while True:
            msg = self.p.recv()
            if msg.get("id") == rid:
                break
            others.append(msg)
        self.assertEqual(msg["result"], {"size": 3000, "reads": {"1000": 3}})
        self.assertTrue(all(m["method"] == "$/stream.credit" for m in others), others)

    def test_write_mode(self) -> None:
        rid = self.p.request("lab.write_to", {"out": {"$stream": 1, "mode": "write"},
                                              "size": 70000})
        others: list = []
        data = self.h.read_stream(1, grant=2500, others=others)
        self.assertEqual(data, (bytes(range(256)) * 256 * 2)[:70000])
        answer = others or [self.p.recv()]
        self.assertEqual(answer[0]["id"], rid)
        self.assertEqual(answer[0]["result"], {"written": 70000})

    def test_a_failing_writer_aborts_with_its_error(self) -> None:
        rid = self.p.request("lab.write_to", {"out": {"$stream": 1, "mode": "write"},
                                              "size": 10, "fail": True})
        self.assertEqual(self.h.next(1), bytes(range(10)))
        abort = self.h.next(1)
        self.assertEqual((abort["method"], abort["params"]["error"]["code"]),
                         ("$/stream.abort", 4243))
        self.assertEqual(self.p.response(rid)["error"]["code"], 4243)

    def test_stream_in_the_result_of_the_plugins_own_call(self) -> None:
        rid = self.p.request("lab.fetch", {"method": "host.open"})
        ask = self.p.recv()
        self.p.reply(ask["id"], {"data": {"$stream": 5, "mode": "read"}, "value": 1})
        self.h.data(5, b"from the host")
        self.h.end(5)
        msg = self.p.response(rid)
        self.assertEqual(msg.parts, [b"from the host"])

    def test_session_end_fails_open_streams(self) -> None:
        rid = self.p.request("lab.block_reading", {"data": {"$stream": 1, "mode": "read"}})
        self.assertEqual(self.p.result("tether/ping"), {})
        self.p.close_stdin()
        err = self.p.response(rid)["error"]
        self.assertEqual((err["code"], err["data"]), (-32006, {"stream": 1}))
        self.assertIn("closed the plugin's input", err["message"])
        self.p.expect_exit(0)


class MemoryTest(unittest.TestCase):
    """A producer much faster than its reader keeps its memory within the window (§12.3)."""

    def test_slow_reader_bounds_the_producers_memory(self) -> None:
        p = Plugin("blob.py")
        self.addCleanup(p.kill)
        window = MiB
        h = StreamHost(p, credit=window)
        h.initialize({"blob": [1]})
        baseline, _ = peak_rss(p.proc.pid)
        size = 256 * MiB
        sid = p.call("blob.produce", {"size": size})["result"]["data"]["$stream"]
        received, granted_at = 0, 0
        sha = hashlib.sha256()
        start = time.monotonic()
        while True:
            got = h.next(sid)
            if not isinstance(got, bytes):
                self.assertEqual(got["method"], "$/stream.end")
                break
            received += len(got)
            sha.update(got)
            if received - granted_at >= window // 2:
                # This host reads a MiB from the pipe in about 0.1 ms (bench/bulk.py reads
                # at over 1 GB/s): sleeping 10 ms per half window makes it over 100 times
                # slower than it could be.
                time.sleep(0.01)
                h.grant(sid, received - granted_at)
                granted_at = received
        elapsed = time.monotonic() - start
        peak, _ = peak_rss(p.proc.pid)
        self.assertEqual(received, size)
        self.assertEqual(sha.hexdigest(), hashlib.sha256(pattern(size)).hexdigest())
        # Without flow control the plugin would hold up to the whole 256 MiB; with it, the
        # window plus what a chunk and its frame cost to write.
        self.assertLess(peak - baseline, window + 24 * MiB,
                        f"peak RSS grew by {(peak - baseline) / MiB:.1f} MiB "
                        f"({elapsed:.1f} s for {size // MiB} MiB)")
        p.shutdown()


if __name__ == "__main__":
    unittest.main()
