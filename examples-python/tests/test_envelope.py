"""The JSON-RPC profile (SPEC.md §3) and framing, including bad input (§2)."""

import json
import unittest

from harness import Plugin, encode, precompile


def setUpModule() -> None:
    precompile()


class ProfileTest(unittest.TestCase):
    """§3: every error is answered (or not) as the spec says, and the session goes on."""

    def setUp(self) -> None:
        self.p = Plugin("kv.py")
        self.addCleanup(self.p.kill)
        self.p.initialize()

    def tearDown(self) -> None:
        if self.p.proc.poll() is None:
            self.p.shutdown()

    def assert_error(self, raw: bytes, code: int, rid: object = None) -> dict:
        self.p.send_raw(encode(raw))
        msg = self.p.recv()
        self.assertEqual(msg["error"]["code"], code, msg)
        self.assertIn("id", msg)
        self.assertEqual(msg["id"], rid)
        self.assertIs(type(msg["id"]), type(rid))
        self.assertIsInstance(msg["error"]["message"], str)
        self.assertEqual(self.p.result("tether/ping"), {})  # the session goes on
        return msg

    def test_parse_error(self) -> None:
        self.assert_error(b'{"jsonrpc":"2.0","id":2,"method":"tether/ping"', -32700)
        self.assert_error(b"\xff\xfe not utf-8", -32700)
        self.assert_error(b'{"jsonrpc":"2.0","id":1,"method":"tether/ping","x":NaN}', -32700)
        self.assert_error(b"", -32700)
        self.assert_error(b"[" * 100000, -32700)  # nested too deeply for any parser

    def test_batch(self) -> None:
        self.assert_error(b'[{"jsonrpc":"2.0","id":4,"method":"tether/ping","params":{}}]',
                          -32600)
        self.assert_error(b"[]", -32600)

    def test_not_an_object(self) -> None:
        self.assert_error(b'"hello"', -32600)
        self.assert_error(b"{}", -32600)

    def test_null_and_bad_ids(self) -> None:
        self.assert_error(b'{"jsonrpc":"2.0","id":null,"method":"tether/ping","params":{}}',
                          -32600)
        self.assert_error(b'{"jsonrpc":"2.0","id":1.5,"method":"tether/ping"}', -32600)
        self.assert_error(b'{"jsonrpc":"2.0","id":true,"method":"tether/ping"}', -32600)
        self.assert_error(b'{"jsonrpc":"2.0","id":9223372036854775808,"method":"tether/ping"}',
                          -32600)

    def test_invalid_request_keeps_its_id(self) -> None:
        self.assert_error(b'{"jsonrpc":"1.0","id":14,"method":"tether/ping","params":{}}',
                          -32600, 14)
        self.assert_error(b'{"id":15,"method":"tether/ping"}', -32600, 15)
        self.assert_error(b'{"jsonrpc":"2.0","id":"x","method":7}', -32600, "x")
        self.assert_error(b'{"jsonrpc":"2.0","id":16,"method":"tether/ping","params":"p"}',
                          -32600, 16)

    def test_malformed_responses_are_never_answered(self) -> None:
        # A result or an error and no method looks like a response: reported, not answered
        # (SPEC.md §3.4.2); the ping that follows is the only answer.
        self.p.send(b'{"jsonrpc":"2.0","id":17,"result":{},"error":{"code":1,"message":"m"}}')
        self.p.send(b'{"jsonrpc":"2.0","result":{}}')
        self.p.send(b'{"jsonrpc":"2.0","id":true,"error":{"code":1,"message":"m"}}')
        msg = self.p.response(self.p.request("tether/ping", {}, rid="after"))
        self.assertEqual(msg, {"jsonrpc": "2.0", "id": "after", "result": {}})

    def test_ids_are_echoed_exactly(self) -> None:
        for rid in (1, "1", 0, -7, "", "req-11", "ünï", 9223372036854775807,
                    -9223372036854775808):
            msg = self.p.response(self.p.request("tether/ping", {}, rid=rid))
            self.assertEqual(msg["id"], rid)
            self.assertIs(type(msg["id"]), type(rid))

    def test_params_may_be_absent(self) -> None:
        msg = self.p.response(self.p.request("tether/ping", None))
        self.assertEqual(msg["result"], {})

    def test_params_must_be_an_object(self) -> None:
        self.assert_error(b'{"jsonrpc":"2.0","id":3,"method":"kv.get","params":["a"]}',
                          -32602, 3)

    def test_method_not_found(self) -> None:
        for method in ("kv.frobnicate", "tether/frobnicate", "counter.get", "nodot", "$/x",
                       "kv."):
            err = self.p.error(method, {"key": "a"})
            self.assertEqual(err["code"], -32601, method)
            self.assertEqual(err["data"]["method"], method)
            self.assertIsInstance(err["data"]["reason"], str)

    def test_invalid_params(self) -> None:
        for params in ({"key": "a"}, {"key": 1, "value": ""}, {"key": "", "value": ""},
                       {"key": "a", "value": "not base64!"}, {"key": "a", "value": "QQ"},
                       {"key": "a", "value": "QQ==="}, {"key": "a", "value": "Q=Q="},
                       {"key": "a", "value": "QUJD\nREVG"}, {"key": "a", "value": "QU-_"},
                       {"key": "a", "value": None}, {"key": "a", "value": "éé=="}):
            err = self.p.error("kv.put", params)
            self.assertEqual(err["code"], -32602, params)
        self.assertEqual(self.p.error("kv.get", {"key": ["a"]})["code"], -32602)

    def test_retain_without_a_string_handle_is_invalid_params(self) -> None:
        # Found by tether-conformance --fuzz: a retain whose params were lost (absent params are
        # {}) was answered -32003 with data {"handle": null}, which Appendix A does not allow,
        # and a list as the handle raised TypeError (unhashable) in the reader.
        for params in ({}, {"handle": None}, {"handle": ["h1"]}, {"handle": {"a": 1}}, {"handle": 7}):
            err = self.p.error("tether/retain", params)
            self.assertEqual(err["code"], -32602, params)
        self.assertEqual(self.p.error("tether/retain", {"handle": "nobody"})["data"],
                         {"handle": "nobody"})

    def test_notifications_are_never_answered(self) -> None:
        self.p.notify("$/progress", {"token": "t"})
        self.p.send_raw(encode(b'{"jsonrpc":"2.0","method":7,"params":{}}'))
        self.p.notify("kv.put", {"key": "n", "value": "AA=="})
        self.p.notify("$/cancelRequest", {"id": 12345})
        self.p.notify("$/setLogLevel", {"level": "shouting"})
        self.p.notify("$/release", {"handle": "nope"})
        self.assertEqual(self.p.result("tether/ping"), {})  # the next frame is the ping's
        self.assertEqual(self.p.error("kv.get", {"key": "n"})["code"], 1001)

    def test_unknown_response_ids_are_ignored(self) -> None:
        self.p.send({"jsonrpc": "2.0", "id": 99, "result": {}})
        self.p.send({"jsonrpc": "2.0", "id": "zz", "error": {"code": 1, "message": "m"}})
        self.p.send({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "m"}})
        self.assertEqual(self.p.result("tether/ping"), {})


class FramingTest(unittest.TestCase):
    """§2.3 (lenient reader), §2.5 (bounded) and §2.6 (recovery)."""

    def setUp(self) -> None:
        self.p = Plugin("kv.py")
        self.addCleanup(self.p.kill)

    def ping(self, rid: int) -> bytes:
        return b'{"jsonrpc":"2.0","id":%d,"method":"tether/ping","params":{}}' % rid

    def test_lenient_headers(self) -> None:
        self.p.initialize()
        body = self.ping(7)
        headers = [
            b"content-length: %d\r\n\r\n",
            b"CONTENT-LENGTH:%d\r\n\r\n",
            b"Content-Length:   %d  \r\n\r\n",
            b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
            b"Content-Length: %d\r\n\r\n",
            b"Content-Length: %d\r\nContent-Type: application/json; charset=UTF8\r\n\r\n",
            b"X-Unknown: yes\r\nContent-Length: %d\r\n\r\n",
            b"Content-Length: 000%d\r\n\r\n",
        ]
        for header in headers:
            self.p.send_raw(header % len(body) + body)
            self.assertEqual(self.p.recv(), {"jsonrpc": "2.0", "id": 7, "result": {}}, header)
        self.p.shutdown()

    def test_garbage_is_skipped(self) -> None:
        self.p.initialize()
        garbage = [
            b"hello from a stray print\n",
            b"no newline at all",
            b"Content-Length: abc\r\n\r\n",
            b"Content-Length: -5\r\n\r\n",
            b"Content-Type: text/plain; charset=latin-1\r\nContent-Length: 4\r\n\r\n\xe9t\xe9!",
            b"Content-Length: 4\r\nContent-Type: a; charset=\"utf-16\"\r\n\r\n[1,2]",
            b"Content-Length: 4\x00\r\n\r\n",
            b"Bad Header Line\r\n\r\n",
            b"\r\n\r\n",
            b"x" * 10000,
            bytes(range(256)),
        ]
        for i, junk in enumerate(garbage):
            self.p.send_raw(junk + encode(self.ping(100 + i)))
            self.assertEqual(self.p.recv()["id"], 100 + i, junk[:40])
        self.p.wait_stderr("not a frame")
        self.p.shutdown()

    def test_duplicate_length_resyncs_at_the_second(self) -> None:
        # §2.6.1: the search for the next Content-Length starts after the first discarded
        # byte, so the second line starts the next frame: here the body {} (-32600, id null).
        self.p.initialize()
        self.p.send_raw(b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}")
        msg = self.p.recv()
        self.assertEqual((msg["id"], msg["error"]["code"]), (None, -32600))
        self.assertEqual(self.p.result("tether/ping"), {})
        self.p.shutdown()

    def test_frame_split_across_writes(self) -> None:
        self.p.initialize()
        data = encode(self.ping(5)) * 3
        for i in range(0, len(data), 7):
            self.p.send_raw(data[i: i + 7])
        self.assertEqual([m["id"] for m in self.p.recv_n(3)], [5, 5, 5])
        self.p.shutdown()

    def test_oversized_request_is_refused(self) -> None:
        self.p.initialize(max_frame=1048576)
        body = (b'{"jsonrpc":"2.0","id":77,"method":"kv.put","params":{"key":"big","value":"'
                + b"A" * 2000000 + b'"}}')
        self.p.send_raw(encode(body))
        msg = self.p.recv()
        self.assertEqual(msg["id"], 77)
        self.assertEqual(msg["error"]["code"], -32004)
        self.assertEqual(msg["error"]["data"], {"size": len(body), "max": 1048576})
        # Without a visible id: reported on stderr, not answered; the session goes on.
        self.p.send_raw(encode(b'{"params":{"value":"' + b"B" * 1100000 + b'"},"id":78}'))
        self.assertEqual(self.p.result("tether/ping"), {})
        self.assertEqual(self.p.error("kv.get", {"key": "big"})["code"], 1001)
        self.p.shutdown()

    def test_oversized_before_initialize_uses_the_default(self) -> None:
        body = b'{"jsonrpc":"2.0","id":"big","method":"kv.put","params":{"v":"%s"}}' % (
            b"A" * 33554432)
        self.p.send_raw(encode(body))
        msg = self.p.recv()
        self.assertEqual(msg["error"]["code"], -32004)
        self.assertEqual(msg["error"]["data"]["max"], 33554432)
        self.p.initialize()
        self.p.shutdown()

    def test_declared_length_is_not_allocated(self) -> None:
        # A huge declared length must be skipped, not allocated: the plugin then sees EOF
        # inside the frame and exits 0.
        self.p.initialize()
        self.p.send_raw(b"Content-Length: 99999999999999999999\r\n\r\n{\"jsonrpc\":\"2.0\"")
        self.p.close_stdin()
        self.p.expect_exit(0)
        self.assertIn("oversized", self.p.stderr_text())

    def test_truncated_frame_at_eof(self) -> None:
        self.p.initialize()
        self.p.send_raw(b"Content-Length: 100\r\n\r\n{\"jsonrpc\"")
        self.p.close_stdin()
        self.p.expect_exit(0)
        self.assertIn("end of file inside a frame", self.p.stderr_text())

    def test_writer_form(self) -> None:
        # The harness reads stdout strictly (§2.7); this checks member order too (§2.2).
        self.p.send_raw(encode(self.ping(1)))
        raw = json.dumps(self.p.recv())
        self.assertTrue(raw.startswith('{"jsonrpc": "2.0", "id": 1'), raw)
        self.p.close_stdin()
        self.p.expect_exit(0)


if __name__ == "__main__":
    unittest.main()
