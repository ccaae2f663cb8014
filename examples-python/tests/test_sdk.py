"""SDK features beyond the reference examples, through tests/plugins/lab.py."""

import base64
import os
import time
import unittest
from typing import Any

from harness import TESTS, Plugin, encode, precompile

LAB = os.path.join(TESTS, "plugins", "lab.py")


def setUpModule() -> None:
    precompile()


class LabTest(unittest.TestCase):
    env: dict = {}

    def setUp(self) -> None:
        self.p = Plugin(LAB, env=self.env)
        self.addCleanup(self.p.kill)
        self.p.initialize({"lab": [1]}, log_level="debug")

    def tearDown(self) -> None:
        if self.p.proc.poll() is None:
            self.p.shutdown()

    def test_stdout_is_protected(self) -> None:
        # print(), os.write(1), a child process and sys.__stdout__ all land on stderr (§8.4);
        # the harness reads stdout strictly, so any stray byte there fails the test.
        for i in range(3):
            self.assertEqual(self.p.result("lab.shout", {"text": f"noise{i}"}), {})
        self.assertEqual(self.p.result("tether/ping"), {})
        err = self.p.wait_stderr("dunder noise2")
        for text in ("noise0", "fd1 noise1", "child noise2", "dunder noise2"):
            self.assertIn(text, err)

    def test_stdin_is_protected(self) -> None:
        # A handler (or a child process) reading stdin gets end of file, not our frames.
        self.assertEqual(self.p.result("lab.read_stdin"), {"read": ""})
        self.assertEqual(self.p.result("tether/ping"), {})

    def test_handler_exception_is_internal_error(self) -> None:
        err = self.p.error("lab.fail")
        self.assertEqual(err["code"], -32603)
        self.assertIn("ZeroDivisionError", err["message"])
        self.assertIn("ZeroDivisionError", self.p.wait_stderr("Traceback"))
        self.assertEqual(self.p.result("tether/ping"), {})
        self.assertEqual(self.p.error("lab.bad_result")["code"], -32603)

    def test_application_error(self) -> None:
        self.assertEqual(self.p.error("lab.refuse"),
                         {"code": 4242, "message": "refused", "data": {"why": "test"}})

    def test_cancellation_flag(self) -> None:
        rid = self.p.request("lab.wait", {"seconds": 30.0})
        time.sleep(0.05)
        self.p.notify("$/cancelRequest", {"id": rid})
        self.assertEqual(self.p.response(rid, timeout=5)["error"]["code"], -32800)
        self.assertEqual(self.p.result("lab.wait", {"seconds": 0.01}), {"cancelled": False})

    def test_reading_goes_on_while_a_handler_blocks_outside_the_sdk(self) -> None:
        # The leader runs handlers itself; a watchdog hands the reading over after 2 ms.
        for method in ("lab.nap", "lab.spin"):
            slow = self.p.request(method, {"seconds": 2.0})
            started = time.monotonic()
            self.assertEqual(self.p.result("tether/ping"), {})  # answered before the slow one
            self.assertLess(time.monotonic() - started, 1.5, method)
            self.assertIn("result", self.p.response(slow))

    def batch(self, *calls: tuple[str, dict[str, Any]]) -> list[int]:
        """Send requests in one write, so that the plugin reads them together; their ids."""
        ids = [self.p.new_id() for _ in calls]
        self.p.send_raw(b"".join(
            encode({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
            for rid, (method, params) in zip(ids, calls)))
        return ids

    def test_answers_read_together_go_out_in_order(self) -> None:
        # The leader holds answers back while frames are buffered and writes them together.
        ids = self.batch(*[("lab.echo_bytes", {"data": base64.b64encode(b"%d" % i).decode()})
                           for i in range(50)])
        for i, rid in enumerate(ids):
            self.assertEqual(self.p.response(rid)["result"],
                             {"data": base64.b64encode(b"%d" % i).decode(), "len": len(b"%d" % i)})

    def test_an_answer_read_with_a_slow_handler_is_not_held_behind_it(self) -> None:
        # The ping's answer waits while the next buffered frame is handled; a handler that
        # runs long (sleeping, or spinning without the SDK) must not keep it waiting.
        for method in ("lab.nap", "lab.spin"):
            started = time.monotonic()
            ping, slow = self.batch(("tether/ping", {}), (method, {"seconds": 3.0}))
            self.assertEqual(self.p.response(ping)["result"], {})
            self.assertLess(time.monotonic() - started, 2.0, method)
            self.assertIn("result", self.p.response(slow))

    def test_a_request_to_the_host_is_not_held_behind_its_handler(self) -> None:
        # A handler run by the leader asks the host; the request and the earlier answer go
        # out before it waits, or host and plugin would wait for each other.
        ping, rid = self.batch(("tether/ping", {}),
                               ("lab.call_host", {"method": "host.thing", "timeout": 30.0}))
        self.assertEqual(self.p.response(ping)["result"], {})
        msg = self.p.recv()
        self.assertEqual(msg["method"], "host.thing")
        self.p.reply(msg["id"], {"ok": 2})
        self.assertEqual(self.p.response(rid)["result"], {"result": {"ok": 2}})

    def test_a_handler_polling_its_flag_sees_the_cancel(self) -> None:
        rid = self.p.request("lab.poll_cancel", {"seconds": 30.0})
        time.sleep(0.05)
        self.p.notify("$/cancelRequest", {"id": rid})
        self.assertEqual(self.p.response(rid, timeout=5)["result"], {"cancelled": True})

    def test_bytes_both_ways(self) -> None:
        data = bytes(range(256))
        got = self.p.result("lab.echo_bytes", {"data": base64.b64encode(data).decode()})
        self.assertEqual(base64.b64decode(got["data"]), data)
        self.assertEqual(got["len"], 256)

    def test_types(self) -> None:
        good: dict[str, Any] = {"i": -3, "f": 1.5, "b": True, "s": "x", "items": [0, 2],
                                "obj": {"k": None}}
        self.assertEqual(self.p.result("lab.types", good), {**good, "opt": -1})
        self.assertEqual(self.p.result("lab.types", {**good, "opt": 4, "extra": 1})["opt"], 4)
        self.assertEqual(self.p.result("lab.types", {**good, "f": 2})["f"], 2)  # ints are numbers
        for bad in ({"i": 1.0}, {"i": True}, {"f": "1"}, {"b": 1}, {"s": None}, {"items": {}},
                    {"items": [-1]}, {"items": [1.5]}, {"obj": []}, {"opt": "4"}):
            err = self.p.error("lab.types", {**good, **bad})
            self.assertEqual(err["code"], -32602, bad)
            self.assertIn(next(iter(bad)), err["data"]["path"])
        self.assertEqual(self.p.error("lab.log_py", {"message": "m", "level": "LOUD"})["code"],
                         -32602)

    def test_logging_module_is_bridged(self) -> None:
        self.p.result("lab.log_py", {"message": "from logging", "level": "DEBUG"})
        self.p.result("tether/ping")
        logs = [n["params"] for n in self.p.notifications if n["method"] == "$/log"]
        self.assertIn({"level": "debug", "message": "from logging", "target": "lab",
                       "fields": {"key": "from logging"}}, logs)
        self.p.notify("$/setLogLevel", {"level": "info"})
        self.p.result("lab.log_py", {"message": "hidden", "level": "DEBUG"})
        self.p.result("lab.log_py", {"message": "shown", "level": "INFO"})
        self.p.result("tether/ping")
        messages = [n["params"]["message"] for n in self.p.notifications]
        self.assertIn("shown", messages)
        self.assertNotIn("hidden", messages)

    def test_request_to_host_and_timeout(self) -> None:
        rid = self.p.request("lab.call_host", {"method": "host.thing", "timeout": 5.0})
        msg = self.p.recv()
        self.assertEqual(msg["method"], "host.thing")
        self.p.reply(msg["id"], {"ok": 1})
        self.assertEqual(self.p.response(rid)["result"], {"result": {"ok": 1}})
        rid = self.p.request("lab.call_host", {"method": "host.slow", "timeout": 0.1})
        msg = self.p.recv()
        cancel = self.p.recv()  # the plugin gives up and says so (§7.3)
        self.assertEqual(cancel, {"jsonrpc": "2.0", "method": "$/cancelRequest",
                                  "params": {"id": msg["id"]}})
        self.assertEqual(self.p.response(rid)["result"], {"timeout": True})
        self.p.reply(msg["id"], {"late": True})  # ignored
        rid = self.p.request("lab.call_host", {"method": "host.broken", "timeout": 5.0})
        msg = self.p.recv()
        self.p.send({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": 7, "message": "no"}})
        self.assertEqual(self.p.response(rid)["result"], {"remote_error": 7})

    def visit(self, retain: bool) -> tuple[Any, Any, str]:
        rid = self.p.request("lab.visit", {"retain": retain})
        msg = self.p.recv()
        self.assertEqual(msg["method"], "host.visit")
        visitor = msg["params"]["visitor"]
        self.assertEqual(set(visitor), {"$handle", "interface"})
        self.assertEqual(visitor["interface"], "visitor")
        return rid, msg["id"], visitor["$handle"]

    def test_plugin_served_handle(self) -> None:
        rid, host_call, handle = self.visit(retain=False)
        # While host.visit is in flight the handle is live (§6.3): the host calls it.
        self.assertEqual(self.p.result("tether/invoke", {"handle": handle, "method": "greet",
                                                         "params": {"name": "ann"}}),
                         {"text": "hello ann"})
        self.assertEqual(self.p.error("tether/invoke", {"handle": handle, "method": "nope",
                                                        "params": {}})["code"], -32601)
        self.assertEqual(self.p.error("tether/invoke", {"handle": handle, "method": "_private",
                                                        "params": {}})["code"], -32601)
        self.p.reply(host_call, {"done": True})
        self.assertEqual(self.p.response(rid)["result"], {"host": {"done": True}})
        # The scoped handle expired with the response (§6.3).
        err = self.p.error("tether/invoke", {"handle": handle, "method": "greet",
                                             "params": {"name": "bob"}})
        self.assertEqual(err, {"code": -32003, "message": err["message"],
                               "data": {"handle": handle}})
        self.assertEqual(self.p.error("tether/retain", {"handle": handle})["code"], -32003)

    def test_shutdown_lets_in_flight_work_call_back(self) -> None:
        rid, host_call, handle = self.visit(retain=False)
        shutdown = self.p.request("tether/shutdown", {})
        self.assertEqual(self.p.error("lab.fail")["code"], -32005)
        # The in-flight lab.visit still needs its handle: invokes on it are served.
        self.assertEqual(self.p.result("tether/invoke", {"handle": handle, "method": "greet",
                                                         "params": {"name": "late"}}),
                         {"text": "hello late"})
        self.p.reply(host_call, {})
        self.assertEqual(self.p.recv()["id"], rid)
        self.assertEqual(self.p.recv(), {"jsonrpc": "2.0", "id": shutdown, "result": {}})
        self.p.close_stdin()
        self.p.expect_exit(0)

    def test_retained_handle(self) -> None:
        rid, host_call, handle = self.visit(retain=True)
        self.assertEqual(self.p.result("tether/retain", {"handle": handle}), {})
        self.p.reply(host_call, {})
        self.p.response(rid)
        self.assertEqual(self.p.result("tether/invoke", {"handle": handle, "method": "greet",
                                                         "params": {"name": "cy"}}),
                         {"text": "hello cy"})
        self.p.notify("$/release", {"handle": handle})
        self.assertEqual(self.p.error("tether/invoke", {"handle": handle, "method": "greet",
                                                        "params": {"name": "d"}})["code"], -32003)


class OversizedAnswerTest(unittest.TestCase):
    """§2.2: no frame above the session's maximum; an answer that would be one is -32004."""

    MAX = 1048576

    def setUp(self) -> None:
        self.p = Plugin(LAB)
        self.addCleanup(self.p.kill)
        self.p.initialize({"lab": [1]}, max_frame=self.MAX)

    def tearDown(self) -> None:
        if self.p.proc.poll() is None:
            self.p.shutdown()

    def assert_too_large(self, params: dict) -> None:
        err = self.p.error("lab.big", params)
        self.assertEqual(err["code"], -32004, str(err)[:300])
        self.assertEqual(err["data"]["max"], self.MAX)
        # The size is the body that was not sent: a little more than the payload.
        self.assertGreater(err["data"]["size"], self.MAX)
        self.assertLess(err["data"]["size"], self.MAX + 1000)
        self.assertEqual(self.p.result("tether/ping"), {})  # the session goes on

    def test_result_above_the_maximum_is_frame_too_large(self) -> None:
        self.assertEqual(self.p.result("lab.big", {"size": 1000})["text"], "x" * 1000)
        self.assert_too_large({"size": self.MAX})
        self.p.wait_stderr("sent error -32004")

    def test_error_above_the_maximum_is_frame_too_large(self) -> None:
        self.assertEqual(self.p.error("lab.big", {"size": 10, "fail": True})["code"], 4243)
        self.assert_too_large({"size": self.MAX, "fail": True})

    def test_log_above_the_maximum_is_dropped_and_reported(self) -> None:
        self.assertEqual(self.p.result("lab.big_log", {"size": self.MAX}), {})
        self.assertEqual(self.p.result("tether/ping"), {})
        logs = [n["params"]["message"] for n in self.p.notifications if n["method"] == "$/log"]
        self.assertEqual(logs, ["after the big one"])  # the big one never reached stdout
        self.p.wait_stderr("dropped a $/log of")


class EagerLoggingTest(LabTest):
    """The same, with `logging` imported before serve() (bridged at once, not by the hook)."""

    env = {"LAB_IMPORT_LOGGING": "1"}


if __name__ == "__main__":
    unittest.main()
