"""The counter example: the broker callback (SPEC.md §6, §9.3) and cancellation (§7)."""

import json
import unittest
from typing import Any

from harness import Plugin, precompile


def setUpModule() -> None:
    precompile()


def adder(handle: str) -> dict[str, str]:
    return {"$handle": handle, "interface": "adder"}


class CounterTest(unittest.TestCase):
    def setUp(self) -> None:
        self.p = Plugin("counter.py")
        self.addCleanup(self.p.kill)
        result = self.p.initialize({"counter": [1]})["result"]
        self.assertEqual(set(result["interfaces"]["counter"]["methods"]), {"put", "get"})

    def tearDown(self) -> None:
        if self.p.proc.poll() is None:
            self.p.shutdown()

    def put(self, key: str, value: int, handle: str) -> Any:
        return self.p.request("counter.put", {"key": key, "value": value, "adder": adder(handle)})

    def expect_sum(self, handle: str, a: int, b: int) -> Any:
        """The plugin's tether/invoke of sum; its id."""
        msg = self.p.recv()
        self.assertEqual(msg["method"], "tether/invoke", msg)
        self.assertEqual(msg["params"], {"handle": handle, "method": "sum",
                                         "params": {"a": a, "b": b}})
        self.assertIn(type(msg["id"]), (int, str))
        return msg["id"]

    def get(self, key: str) -> int:
        return self.p.result("counter.get", {"key": key})["value"]

    def test_callback(self) -> None:
        self.assertEqual(self.get("visits"), 0)
        rid = self.put("visits", 5, "h1")
        self.p.reply(self.expect_sum("h1", 0, 5), {"result": 5})
        self.p.assert_result(self.p.response(rid), {})
        self.assertEqual(self.get("visits"), 5)
        rid = self.put("visits", 3, "h2")
        # The plugin stores what the host answers, whatever it is.
        self.p.reply(self.expect_sum("h2", 5, 3), {"result": 100})
        self.p.assert_result(self.p.response(rid), {})
        self.assertEqual(self.get("visits"), 100)

    def test_sum_error_fails_the_put(self) -> None:
        rid = self.put("k", 1, "h1")
        sid = self.expect_sum("h1", 0, 1)
        self.p.send({"jsonrpc": "2.0", "id": sid, "error": {
            "code": -32003, "message": "unknown handle", "data": {"handle": "h1"}}})
        err = self.p.response(rid)["error"]
        self.assertEqual(err["code"], -32603)
        self.assertEqual(err["data"]["cause"]["code"], -32003)
        self.assertEqual(self.get("k"), 0)

    def test_malformed_sum_answer_is_not_the_hosts_error(self) -> None:
        # SPEC.md §3.4: an error member is an object with an integer code and a string message,
        # and a response has exactly one of result and error. A malformed answer to sum is not
        # read as the host's error (code 1): the put fails locally, nothing is answered.
        malformed = [
            b'"error":[1,"m"]',
            b'"error":[1,"m",null]',
            b'"result":5,"error":{"code":1,"message":"m"}',
            b'"error":{"code":"1","message":"m"}',
            b'"error":{"code":1.5,"message":"m"}',
            b'"error":{"code":true,"message":"m"}',
            b'"error":{"message":"m"}',
            b'"error":{"code":1,"message":7}',
            b'"error":{"code":1}',
            b'"error":null',
            b'"error":"m"',
        ]
        for members in malformed:
            with self.subTest(members=members):
                rid = self.put("m", 1, "h1")
                sid = self.expect_sum("h1", 0, 1)
                self.p.send(b'{"jsonrpc":"2.0","id":%s,%s}' % (json.dumps(sid).encode(), members))
                msg = self.p.response(rid)
                err = msg["error"]
                self.assertEqual(err["code"], -32603, msg)
                self.assertNotEqual(err.get("data", {}).get("cause", {}).get("code"), 1, msg)
                self.assertIn("malformed", json.dumps(err), msg)
        # The next message is the get's answer: the malformed responses were not answered.
        self.assertEqual(self.get("m"), 0)

    def test_concurrent_puts(self) -> None:
        # The host holds the first sum until the second arrives: puts are not serialised.
        first = self.put("k", 1, "h1")
        s1 = self.expect_sum("h1", 0, 1)
        second = self.put("k", 2, "h2")
        s2 = self.expect_sum("h2", 0, 2)
        self.assertNotEqual(s1, s2)
        self.p.reply(s2, {"result": 2})
        self.p.assert_result(self.p.response(second), {})
        self.p.reply(s1, {"result": 1})
        self.p.assert_result(self.p.response(first), {})
        self.assertEqual(self.get("k"), 1)  # each put added to the value it read

    def test_get_while_sum_pending(self) -> None:
        first = self.put("k", 7, "h0")
        self.p.reply(self.expect_sum("h0", 0, 7), {"result": 7})
        self.p.assert_result(self.p.response(first), {})
        rid = self.put("k", 1, "h1")
        sid = self.expect_sum("h1", 7, 1)
        self.assertEqual(self.get("k"), 7)  # answered while sum is pending
        self.assertEqual(self.p.result("tether/ping"), {})
        self.p.reply(sid, {"result": 8})
        self.p.assert_result(self.p.response(rid), {})
        self.assertEqual(self.get("k"), 8)

    def test_cancel_while_sum_pending(self) -> None:
        rid = self.put("slow", 1, "h1")
        sid = self.expect_sum("h1", 0, 1)
        self.p.notify("$/cancelRequest", {"id": rid})
        got = self.p.recv_n(2)  # in either order
        cancel = [m for m in got if m.get("method") == "$/cancelRequest"]
        answer = [m for m in got if m.get("id") == rid]
        self.assertEqual(len(cancel), 1, got)
        self.assertEqual(cancel[0]["params"], {"id": sid})
        self.assertNotIn("id", cancel[0])
        self.assertEqual(answer[0]["error"]["code"], -32800)
        self.p.reply(sid, {"result": 1})  # a late answer, ignored
        self.assertEqual(self.p.result("tether/ping"), {})
        self.assertEqual(self.get("slow"), 0)
        self.p.notify("$/cancelRequest", {"id": rid})  # already answered: ignored
        self.assertEqual(self.p.result("tether/ping"), {})

    def test_64_callbacks_in_flight(self) -> None:
        # 64 requests in flight in each direction (§3.7): every put waits on its own sum.
        puts = {self.put(f"k{i}", i, f"h{i}"): i for i in range(64)}
        sums = {}
        for _ in range(64):
            msg = self.p.recv()
            self.assertEqual(msg["method"], "tether/invoke")
            sums[msg["params"]["handle"]] = msg["id"]
        self.assertEqual(len(set(sums.values())), 64)
        self.assertEqual(self.get("k3"), 0)  # still served
        for i in range(64):
            self.p.reply(sums[f"h{i}"], {"result": i * 10})
        for msg in self.p.recv_n(64):
            self.assertEqual(msg["result"], {})
            puts.pop(msg["id"])
        self.assertFalse(puts)
        self.assertEqual(self.get("k5"), 50)

    def test_bad_handle_params(self) -> None:
        for bad in ({"$handle": "", "interface": "adder"}, {"$handle": "h1"},
                    {"$handle": "h1", "interface": "adder", "extra": 1},
                    {"$handle": "h1", "interface": "other"}, "h1", None):
            err = self.p.error("counter.put", {"key": "k", "value": 1, "adder": bad})
            self.assertEqual(err["code"], -32602, bad)
        for value in (1.5, "1", True, 2**63, None):
            err = self.p.error("counter.put", {"key": "k", "value": value, "adder": adder("h")})
            self.assertEqual(err["code"], -32602, value)


class EndWithCallbacksTest(unittest.TestCase):
    def setUp(self) -> None:
        self.p = Plugin("counter.py")
        self.addCleanup(self.p.kill)
        self.p.initialize({"counter": [1]})

    def test_shutdown_waits_for_in_flight(self) -> None:
        rid = self.p.request("counter.put", {"key": "k", "value": 2, "adder": adder("h1")})
        sid = self.p.recv()["id"]
        shutdown = self.p.request("tether/shutdown", {})
        self.assertEqual(self.p.error("counter.get", {"key": "k"})["code"], -32005)
        self.p.expect_silence(0.2)  # the shutdown is not answered while the put is in flight
        self.p.reply(sid, {"result": 2})
        self.assertEqual(self.p.recv(), {"jsonrpc": "2.0", "id": rid, "result": {}})
        self.assertEqual(self.p.recv(), {"jsonrpc": "2.0", "id": shutdown, "result": {}})
        self.p.close_stdin()
        self.p.expect_exit(0)

    def test_eof_cancels_in_flight(self) -> None:
        rid = self.p.request("counter.put", {"key": "k", "value": 2, "adder": adder("h1")})
        sid = self.p.recv()["id"]
        self.p.close_stdin()
        got = [self.p.recv(), self.p.recv()]  # $/cancelRequest for the sum, -32800 for the put
        self.assertIn({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": sid}}, got)
        self.assertIn(-32800, [m.get("error", {}).get("code") for m in got if m.get("id") == rid])
        # The sum is never answered: the cancelled put did not wait for it (§7.2), and the
        # plugin still exits 0 within §1.6's 2 s (expect_exit's bound).
        self.p.expect_exit(0)


if __name__ == "__main__":
    unittest.main()
