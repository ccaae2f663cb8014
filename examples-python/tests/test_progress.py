"""Progress (SPEC.md §14) and trace context (§15): the kv example's large put, the lab plugin's
handlers, and the plugin as a caller that asks the host for progress."""

import base64
import os
import unittest

from harness import TESTS, Plugin, precompile

LAB = os.path.join(TESTS, "plugins", "lab.py")
CAPS = {"progress": {}, "traceContext": {}}
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def setUpModule() -> None:
    precompile()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class KvProgressTest(unittest.TestCase):
    def start(self, capabilities: dict, log_level: str = "info") -> Plugin:
        p = Plugin("kv.py")
        self.addCleanup(p.kill)
        answer = p.initialize(capabilities=capabilities, log_level=log_level)
        self.assertEqual(answer["result"]["capabilities"].get("progress"),
                         capabilities.get("progress"))
        return p

    def test_a_large_put_reports_progress_with_the_callers_token_before_the_answer(self) -> None:
        p = self.start(CAPS)
        rid = p.request("kv.put", {"key": "big", "value": b64(bytes(40000)),
                                   "_meta": {"progressToken": "tok"}})
        frames = p.recv_n(4)
        self.assertEqual([f.get("method") for f in frames[:3]], ["$/progress"] * 3)
        self.assertEqual([f["params"] for f in frames[:3]], [
            {"token": "tok", "done": 16384, "total": 40000},
            {"token": "tok", "done": 32768, "total": 40000},
            {"token": "tok", "done": 40000, "total": 40000},
        ])
        self.assertEqual(frames[3], {"jsonrpc": "2.0", "id": rid, "result": {}})
        # _meta is not a parameter: the value stored is the value sent.
        got = p.result("kv.get", {"key": "big"})
        self.assertEqual(base64.b64decode(got["value"]), bytes(40000))
        p.shutdown()

    def test_no_token_or_a_small_value_reports_nothing(self) -> None:
        p = self.start(CAPS)
        rid = p.request("kv.put", {"key": "big", "value": b64(bytes(40000))})
        self.assertEqual(p.recv(), {"jsonrpc": "2.0", "id": rid, "result": {}})
        rid = p.request("kv.put", {"key": "s", "value": "AA==", "_meta": {"progressToken": 1}})
        self.assertEqual(p.recv(), {"jsonrpc": "2.0", "id": rid, "result": {}})
        p.expect_silence(0.1)
        p.shutdown()

    def test_a_host_without_the_capability_gets_no_progress(self) -> None:
        p = self.start({})
        rid = p.request("kv.put", {"key": "big", "value": b64(bytes(40000)),
                                   "_meta": {"progressToken": "tok"}})
        self.assertEqual(p.recv(), {"jsonrpc": "2.0", "id": rid, "result": {}})
        p.shutdown()

    def test_a_traced_puts_log_names_the_trace_and_a_new_span(self) -> None:
        p = self.start(CAPS, log_level="debug")
        rid = p.request("kv.put", {"key": "t", "value": "AA==", "_meta": {"traceparent": PARENT}})
        log, answer = p.recv_n(2)
        self.assertEqual(answer["id"], rid)
        fields = log["params"]["fields"]
        self.assertEqual(fields["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736")
        self.assertRegex(fields["span_id"], r"^[0-9a-f]{16}$")
        self.assertNotEqual(fields["span_id"], "00f067aa0ba902b7")
        # An untraced put's log names no trace.
        p.request("kv.put", {"key": "u", "value": "AA=="})
        log, _ = p.recv_n(2)
        self.assertNotIn("trace_id", log["params"]["fields"])
        p.shutdown()


class LabProgressTest(unittest.TestCase):
    def setUp(self) -> None:
        self.p = Plugin(LAB)
        self.addCleanup(self.p.kill)
        self.p.initialize({"lab": [1]}, capabilities=CAPS)

    def tearDown(self) -> None:
        if self.p.proc.poll() is None:
            self.p.shutdown()

    def test_done_never_goes_back_nor_past_total(self) -> None:
        rid = self.p.request("lab.steps", {"n": 4, "total": 10, "_meta": {"progressToken": 5}})
        frames = self.p.recv_n(5)
        self.assertEqual([(f["params"]["done"], f["params"]["total"]) for f in frames[:4]],
                         [(1, 10), (3, 10), (3, 10), (10, 10)])
        self.assertTrue(all(f["params"]["token"] == 5 for f in frames[:4]))
        self.assertEqual(frames[4]["id"], rid)
        self.assertEqual(frames[4]["result"], {"sent": [True] * 4, "wanted": True})

    def test_without_a_token_progress_sends_nothing(self) -> None:
        self.assertEqual(self.p.result("lab.steps", {"n": 2, "total": 3}),
                         {"sent": [False, False], "wanted": False})

    def test_the_handler_sees_a_child_of_the_callers_span(self) -> None:
        got = self.p.result("lab.traced", {"_meta": {"traceparent": PARENT, "tracestate": "a=1"}})
        self.assertEqual(got["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736")
        self.assertEqual(got["parent_span_id"], "00f067aa0ba902b7")
        self.assertRegex(got["span_id"], r"^[0-9a-f]{16}$")
        self.assertEqual(got["traceparent"], PARENT)
        for bad in ("00-zz-00f067aa0ba902b7-01", PARENT.upper(), PARENT + "-x",
                    "00-" + "0" * 32 + "-00f067aa0ba902b7-01"):
            got = self.p.result("lab.traced", {"_meta": {"traceparent": bad}})
            self.assertIsNone(got["trace_id"], bad)

    def test_the_plugin_asks_the_host_for_progress_and_its_timeout_restarts(self) -> None:
        # The plugin's time-out is 0.5 s; the host takes about 1.2 s but reports every 0.2 s.
        rid = self.p.request("lab.call_host_progress", {"method": "host.long", "timeout": 0.5})
        msg = self.p.recv()
        self.assertEqual(msg["method"], "host.long")
        token = msg["params"]["_meta"]["progressToken"]
        self.assertEqual(token, msg["id"])
        import time
        for done in range(1, 7):
            time.sleep(0.2)
            self.p.notify("$/progress", {"token": token, "done": done, "total": 6})
        self.p.reply(msg["id"], {"ok": True})
        got = self.p.response(rid)["result"]
        self.assertEqual(got["result"], {"ok": True})
        self.assertEqual([p["done"] for p in got["progress"]], [1, 2, 3, 4, 5, 6])


if __name__ == "__main__":
    unittest.main()
