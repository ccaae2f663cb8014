"""The kv example (SPEC.md §9.1, §9.2), logs (§8) and concurrency (§3.7)."""

import base64
import time
import unittest

from harness import Plugin, precompile


def setUpModule() -> None:
    precompile()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class KvTest(unittest.TestCase):
    def setUp(self) -> None:
        self.p = Plugin("kv.py")
        self.addCleanup(self.p.kill)
        self.p.initialize()

    def tearDown(self) -> None:
        if self.p.proc.poll() is None:
            self.p.shutdown()

    def roundtrip(self, key: str, value: bytes) -> None:
        self.assertEqual(self.p.result("kv.put", {"key": key, "value": b64(value)}), {})
        got = self.p.result("kv.get", {"key": key})
        self.assertEqual(base64.b64decode(got["value"], validate=True), value)

    def test_put_get_overwrite(self) -> None:
        self.roundtrip("hello", b"world")
        self.roundtrip("hello", b"there")

    def test_missing_key(self) -> None:
        err = self.p.error("kv.get", {"key": "missing"})
        self.assertEqual(err["code"], 1001)
        self.assertEqual(err["data"], {"key": "missing"})

    def test_empty_value(self) -> None:
        self.roundtrip("empty", b"")
        self.assertEqual(self.p.result("kv.get", {"key": "empty"}), {"value": ""})

    def test_all_byte_values(self) -> None:
        self.roundtrip("bytes", bytes(range(256)) * 3)

    def test_unicode_keys(self) -> None:
        for key in ("grüße", "日本語", "😀 emoji", "e\u0301", "\u0000nul", "tab\tnewline\n",
                    "\U0010ffff"):
            self.roundtrip(key, key.encode("utf-8", "surrogatepass"))
        self.assertEqual(self.p.error("kv.get", {"key": "e\u00e9"})["code"], 1001)

    def test_16_mib_value(self) -> None:
        value = bytes(range(256)) * (16 * 1024 * 1024 // 256)
        start = time.monotonic()
        self.roundtrip("big", value)
        self.assertLess(time.monotonic() - start, 30)

    def test_delete(self) -> None:
        self.assertEqual(self.p.result("kv.delete", {"key": "d"}), {"existed": False})
        self.roundtrip("d", b"1")
        self.assertEqual(self.p.result("kv.delete", {"key": "d"}), {"existed": True})
        self.assertEqual(self.p.error("kv.get", {"key": "d"})["code"], 1001)

    def test_64_requests_in_flight(self) -> None:
        ids = [self.p.request("kv.put", {"key": f"k{i}", "value": b64(b"v%d" % i)})
               for i in range(64)]
        answers = self.p.recv_n(64)
        self.assertEqual(sorted(m["id"] for m in answers), sorted(ids))
        self.assertTrue(all(m["result"] == {} for m in answers))
        ids = {self.p.request("kv.get", {"key": f"k{i}"}): i for i in range(64)}
        for m in self.p.recv_n(64):
            self.assertEqual(m["result"]["value"], b64(b"v%d" % ids.pop(m["id"])))
        self.assertFalse(ids)

    def test_ping_is_answered_while_busy(self) -> None:
        big = b64(b"x" * (4 * 1024 * 1024))
        for i in range(4):
            self.p.request("kv.put", {"key": f"big{i}", "value": big})
        rid = self.p.request("tether/ping", {})
        got = [m["id"] for m in self.p.recv_n(5)]
        self.assertIn(rid, got)


class LogTest(unittest.TestCase):
    """§8.1, §8.2, §9.1: a debug $/log with fields.key on each put, at level debug only."""

    def puts_log(self, p: Plugin, key: str) -> bool:
        rid = p.request("kv.put", {"key": key, "value": "MQ=="})
        before = len(p.notifications)
        p.response(rid)
        p.assert_result(p.call("tether/ping"), {})  # a $/log sent before the answer is seen
        logs = p.notifications[before:]
        for log in logs:
            self.assertEqual(log["method"], "$/log")
            self.assertEqual(log["params"]["level"], "debug")
            self.assertEqual(log["params"]["fields"]["key"], key)
            self.assertIsInstance(log["params"]["message"], str)
        self.assertLessEqual(len(logs), 1)
        return bool(logs)

    def test_levels(self) -> None:
        p = Plugin("kv.py")
        self.addCleanup(p.kill)
        p.initialize(log_level="debug")
        self.assertTrue(self.puts_log(p, "alpha"))
        p.notify("$/setLogLevel", {"level": "info"})
        self.assertFalse(self.puts_log(p, "beta"))
        p.notify("$/setLogLevel", {"level": "trace"})
        self.assertTrue(self.puts_log(p, "gamma"))
        p.notify("$/setLogLevel", {"level": "error"})
        self.assertFalse(self.puts_log(p, "delta"))
        p.shutdown()

    def test_default_level_is_info(self) -> None:
        p = Plugin("kv.py")
        self.addCleanup(p.kill)
        p.call("tether/initialize", {"protocolVersions": [1], "interfaces": {"kv": [2]},
                                     "host": {"name": "h", "version": "0"}})
        self.assertFalse(self.puts_log(p, "quiet"))
        p.shutdown()


if __name__ == "__main__":
    unittest.main()
