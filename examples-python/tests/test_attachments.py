"""Attachments (SPEC.md §2.8): the reader in process, then kv.py and the lab plugin over pipes."""

from __future__ import annotations

import base64
import os
import sys
import threading
import unittest

from harness import EXAMPLES, TESTS, Plugin, encode, precompile, resolve

sys.path.insert(0, EXAMPLES)
import tether  # noqa: E402

LAB = os.path.join(TESTS, "plugins", "lab.py")
ATTACHMENTS = {"attachments": {}}


def setUpModule() -> None:
    precompile()


def read_all(data: bytes, negotiated: bool = True, max_frame: int = 1 << 20,
             cut: int | None = None) -> list:
    """What a reader returns for ``data`` written in two pieces (at ``cut``), as
    (body, [attachments]) pairs, markers for skipped frames, or bytes."""
    r, w = os.pipe()

    def write() -> None:
        at = len(data) if cut is None else cut
        for piece in (data[:at], data[at:]):
            view = memoryview(piece)
            while view:
                view = view[os.write(w, view):]
        os.close(w)

    t = threading.Thread(target=write)
    t.start()
    reader = tether._Reader(r)
    reader.max_frame = max_frame
    reader.attachments = negotiated
    out = []
    while True:
        frame = reader.next()
        if frame is None:
            break
        if isinstance(frame, tether._Attached):
            out.append((bytes(frame.body), [bytes(p) for p in frame.parts]))
        elif isinstance(frame, tether._Unreadable):
            out.append(("unreadable", frame.reason))
        elif isinstance(frame, tether._Oversized):
            out.append(("oversized", frame.size))
        else:
            out.append(bytes(frame))
    t.join()
    os.close(r)
    return out


class AttachmentReaderTest(unittest.TestCase):
    """The SDK's frame reader on attachment frames."""

    def setUp(self) -> None:
        self.reports: list = []
        real, tether._report = tether._report, self.reports.append
        self.addCleanup(setattr, tether, "_report", real)

    def test_split_at_every_boundary(self) -> None:
        data = (encode(b'{"a":{"$bytes":0},"b":{"$bytes":1}}', [b"first", b"\r\n\r\nx"])
                + encode(b"{}") + encode(b'{"e":{"$bytes":0}}', [b""]))
        expected = [(b'{"a":{"$bytes":0},"b":{"$bytes":1}}', [b"first", b"\r\n\r\nx"]), b"{}",
                    (b'{"e":{"$bytes":0}}', [b""])]
        for cut in range(len(data) + 1):
            self.assertEqual(read_all(data, cut=cut), expected, cut)

    def test_any_header_order_and_case(self) -> None:
        data = (b"tether-attachments: 3,2\r\ncontent-length: 7\r\n\r\n{}abcde"
                + encode(b"[]"))
        self.assertEqual(read_all(data), [(b"{}", [b"abc", b"de"]), b"[]"])

    def test_not_negotiated_the_whole_frame_is_the_body(self) -> None:
        data = encode(b'{"v":{"$bytes":0}}', [b"raw"]) + encode(b"{}")
        self.assertEqual(read_all(data, negotiated=False), [b'{"v":{"$bytes":0}}raw', b"{}"])

    def test_malformed_headers_skip_the_frame(self) -> None:
        for listed in (b"", b"a", b"1,,2", b"1, 2", b"-1", b"1;2", b"99999999999999999999999",
                       b"6"):  # the last adds up to more than the total of 5
            with self.subTest(listed=listed):
                data = (b"Content-Length: 5\r\nTether-Attachments: " + listed + b"\r\n\r\n{}abc"
                        + encode(b"[1]"))
                got = read_all(data)
                self.assertEqual(got[0][0], "unreadable")
                self.assertEqual(got[1:], [b"[1]"])
        data = (b"Content-Length: 5\r\nTether-Attachments: 1\r\nTether-Attachments: 1\r\n\r\n"
                b"{}abc" + encode(b"[2]"))
        self.assertEqual([g[0] if isinstance(g, tuple) else g for g in read_all(data)],
                         ["unreadable", b"[2]"])

    def test_bounded_by_the_maximum_frame_size(self) -> None:
        # The total is checked against the maximum before anything is read or reserved: a
        # frame of max + 1 is skipped, one of max is read.
        limit = 1 << 20
        ok = encode(b"{}", [b"x" * (limit - 2)])
        big = encode(b"{}", [b"y" * (limit - 1)])
        got = read_all(ok + big + encode(b"[]"), max_frame=limit)
        self.assertEqual(got[0], (b"{}", [b"x" * (limit - 2)]))
        self.assertEqual(got[1:], [("oversized", limit + 1), b"[]"])

    def test_a_huge_declared_attachment_is_not_allocated(self) -> None:
        # Lengths are checked against the frame's total before anything is reserved: a list
        # claiming 2**60 bytes in a small frame is malformed, not an allocation.
        data = (b"Content-Length: 4\r\nTether-Attachments: 1152921504606846976\r\n\r\n{}ab"
                + encode(b"{}"))
        got = read_all(data)
        self.assertEqual(got[0][0], "unreadable")
        self.assertEqual(got[1], b"{}")


class KvAttachmentsTest(unittest.TestCase):
    """kv.py with attachments negotiated: reading, writing, references."""

    def setUp(self) -> None:
        self.p = Plugin("kv.py")
        self.addCleanup(self.p.kill)
        result = self.p.initialize(capabilities=ATTACHMENTS)["result"]
        self.assertEqual(result["capabilities"].get("attachments"), {})

    def tearDown(self) -> None:
        if self.p.proc.poll() is None:
            self.p.shutdown()

    def put(self, key: str, value: bytes) -> dict:
        rid = self.p.new_id()
        self.p.send({"jsonrpc": "2.0", "id": rid, "method": "kv.put",
                     "params": {"key": key, "value": {"$bytes": 0}}}, [value])
        return self.p.response(rid)

    def test_put_and_get_as_attachments(self) -> None:
        for value in (b"world", b"", bytes(range(256)) * 100,
                      b"Content-Length: 2\r\n\r\n{}"):  # never read as a frame
            self.assertEqual(self.put("k", value)["result"], {})
            got = self.p.call("kv.get", {"key": "k"})
            # Every bytes value is written as an attachment once negotiated, the empty one too.
            self.assertEqual(got["result"], {"value": {"$bytes": 0}})
            self.assertEqual(got.parts, [value])

    def test_base64_still_accepted(self) -> None:
        self.assertEqual(self.p.result("kv.put", {"key": "b", "value": "YmFzZTY0"}), {})
        got = self.p.call("kv.get", {"key": "b"})
        self.assertEqual(resolve(got["result"], got.parts), {"value": b"base64"})

    def test_unreferenced_attachment_is_ignored(self) -> None:
        rid = self.p.new_id()
        self.p.send({"jsonrpc": "2.0", "id": rid, "method": "kv.put",
                     "params": {"key": "two", "value": {"$bytes": 1}}}, [b"ignored", b"second"])
        self.assertEqual(self.p.response(rid)["result"], {})
        got = self.p.call("kv.get", {"key": "two"})
        self.assertEqual(got.parts, [b"second"])

    def test_invalid_references_are_invalid_params(self) -> None:
        for ref, parts in (({"$bytes": 1}, [b"one"]), ({"$bytes": 0}, None),
                           ({"$bytes": -1}, [b"x"]), ({"$bytes": "0"}, [b"x"]),
                           ({"$bytes": 0, "more": 1}, [b"x"]), ({"$bytes": 0.0}, [b"x"])):
            with self.subTest(ref=ref, parts=parts):
                rid = self.p.new_id()
                self.p.send({"jsonrpc": "2.0", "id": rid, "method": "kv.put",
                             "params": {"key": "bad", "value": ref}}, parts)
                err = self.p.response(rid)["error"]
                self.assertEqual(err["code"], -32602)
                self.assertEqual(err["data"]["path"], "value")
        self.assertEqual(self.p.error("kv.get", {"key": "bad"})["code"], 1001)

    def test_malformed_attachment_header_is_a_parse_error(self) -> None:
        self.p.send_raw(b"Content-Length: 5\r\nTether-Attachments: 9\r\n\r\n{}abc")
        msg = self.p.recv()
        self.assertEqual((msg["id"], msg["error"]["code"]), (None, -32700))
        self.assertEqual(self.p.result("tether/ping"), {})

    def test_a_frame_split_into_single_bytes(self) -> None:
        frame = encode(b'{"jsonrpc":"2.0","id":"s","method":"kv.put","params":{"key":"s",'
                       b'"value":{"$bytes":0}}}', [b"split"])
        for i in range(len(frame)):
            self.p.send_raw(frame[i: i + 1])
        self.assertEqual(self.p.response("s")["result"], {})
        self.assertEqual(self.p.call("kv.get", {"key": "s"}).parts, [b"split"])

    def test_16_mib_value(self) -> None:
        value = os.urandom(16 * 1024 * 1024)
        self.assertEqual(self.put("big", value)["result"], {})
        self.assertEqual(self.p.call("kv.get", {"key": "big"}).parts, [value])


class NotNegotiatedTest(unittest.TestCase):
    """A host that did not announce attachments is never sent one, and sending one is a
    parse error (§2.8.3, §2.8.5)."""

    def test_without_the_capability(self) -> None:
        p = Plugin("kv.py")
        self.addCleanup(p.kill)
        self.assertNotIn("attachments", p.initialize()["result"]["capabilities"])
        p.send({"jsonrpc": "2.0", "id": 2, "method": "kv.put",
                "params": {"key": "k", "value": {"$bytes": 0}}}, [b"raw"])
        msg = p.recv()
        self.assertEqual((msg["id"], msg["error"]["code"]), (None, -32700))
        # A reference in a plain frame is not bytes either.
        self.assertEqual(p.error("kv.put", {"key": "k", "value": {"$bytes": 0}})["code"], -32602)
        self.assertEqual(p.result("kv.put", {"key": "k", "value": "cmF3"}), {})
        got = p.call("kv.get", {"key": "k"})
        self.assertEqual((got["result"], got.parts), ({"value": "cmF3"}, []))
        p.shutdown()


class LabAttachmentsTest(unittest.TestCase):
    """Several bytes values in one frame, and the results of the plugin's own calls."""

    def setUp(self) -> None:
        self.p = Plugin(LAB)
        self.addCleanup(self.p.kill)
        self.p.initialize({"lab": [1]}, capabilities=ATTACHMENTS)

    def tearDown(self) -> None:
        if self.p.proc.poll() is None:
            self.p.shutdown()

    def test_every_bytes_value_in_document_order(self) -> None:
        rid = self.p.new_id()
        self.p.send({"jsonrpc": "2.0", "id": rid, "method": "lab.many_bytes", "params": {
            "first": {"$bytes": 2}, "rest": [{"$bytes": 0}, base64.b64encode(b"b64").decode(),
                                             {"$bytes": 1}], "note": "n"}}, [b"r0", b"r2", b"F"])
        msg = self.p.response(rid)
        # The result {"rest", "note", "first", "nested"}: four bytes values, numbered in the
        # order they are written.
        self.assertEqual(msg["result"], {"rest": [{"$bytes": 0}, {"$bytes": 1}, {"$bytes": 2}],
                                         "note": "n", "first": {"$bytes": 3},
                                         "nested": {"again": {"$bytes": 4}}})
        self.assertEqual(msg.parts, [b"r0", b"b64", b"r2", b"F", b"F"])

    def test_logs_and_notifications_too(self) -> None:
        self.assertEqual(self.p.result("lab.note", {"data": "bm90ZQ=="}), {})
        log, note = self.p.notifications
        self.assertEqual((log["method"], log["params"]["fields"], log.parts),
                         ("$/log", {"raw": {"$bytes": 0}}, [b"note"]))
        self.assertEqual((note["method"], note["params"], note.parts),
                         ("host.note", {"data": {"$bytes": 0}}, [b"note"]))

    def test_results_of_the_plugins_own_calls(self) -> None:
        rid = self.p.request("lab.call_host", {"method": "host.thing", "timeout": 5.0})
        ask = self.p.recv()
        self.p.send({"jsonrpc": "2.0", "id": ask["id"], "result": {"v": {"$bytes": 0}}},
                    [b"from the host"])
        msg = self.p.response(rid)
        self.assertEqual(resolve(msg["result"], msg.parts),
                         {"result": {"v": b"from the host"}})
        # A reference the frame cannot satisfy fails the call locally.
        rid = self.p.request("lab.call_host", {"method": "host.thing", "timeout": 5.0})
        ask = self.p.recv()
        self.p.send({"jsonrpc": "2.0", "id": ask["id"], "result": {"v": {"$bytes": 3}}}, [b"x"])
        self.assertEqual(self.p.response(rid)["result"], {"remote_error": -32602})


if __name__ == "__main__":
    unittest.main()
