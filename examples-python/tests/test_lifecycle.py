"""Launch, handshake, version negotiation, shutdown and end of input (SPEC.md §1, §4)."""

import os
import subprocess
import time
import unittest

from harness import COOKIE, EXAMPLES, PYTHON, Plugin, encode, precompile


def setUpModule() -> None:
    precompile()


class CookieTest(unittest.TestCase):
    """§1.3: without the cookie a plugin says so on stderr and exits 1 without reading stdin."""

    def check_refused(self, env: dict) -> None:
        start = time.monotonic()
        p = Plugin("kv.py", cookie=False, env=env)  # stdin stays open
        self.addCleanup(p.kill)
        # The bound only has to tell "exits" from "waits for input": the interpreter's own start
        # may take over a second on a busy machine.
        try:
            status = p.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.fail("the plugin did not exit within 5 s without its cookie")
        self.assertLess(time.monotonic() - start, 5.0)
        self.assertEqual(status, 1)
        for t in p._threads:
            t.join(5)
        self.assertEqual(p.frames.get_nowait().__name__, "EOF", "stdout must stay empty")
        err = p.stderr_text()
        self.assertIn("Tether plugin", err)
        self.assertIn("not meant to be run directly", err)

    def test_missing_cookie(self) -> None:
        self.check_refused({})

    def test_wrong_cookie(self) -> None:
        self.check_refused({"TETHER_MAGIC_COOKIE": "nope"})

    def test_counter_checks_the_cookie_too(self) -> None:
        p = Plugin("counter.py", cookie=False)
        self.addCleanup(p.kill)
        self.assertEqual(p.proc.wait(timeout=5.0), 1)


class HandshakeTest(unittest.TestCase):
    """§4.1-§4.4."""

    def setUp(self) -> None:
        self.p = Plugin("kv.py")
        self.addCleanup(self.p.kill)

    def test_kv_1_only(self) -> None:
        result = self.p.initialize({"kv": [1]})["result"]
        self.assertEqual(result["protocolVersion"], 1)
        self.assertEqual(result["plugin"]["name"], "kv-python")
        self.assertEqual(result["interfaces"]["kv"]["version"], 1)
        self.assertEqual(set(result["interfaces"]["kv"]["methods"]), {"put", "get"})
        err = self.p.error("kv.delete", {"key": "a"})
        self.assertEqual(err["code"], -32601)
        self.assertEqual(err["data"]["method"], "kv.delete")
        self.assertIn("version 2", err["data"]["reason"])
        self.p.shutdown()

    def test_highest_common_version(self) -> None:
        result = self.p.initialize({"kv": [1, 2, 9]})["result"]
        kv = result["interfaces"]["kv"]
        self.assertEqual(kv["version"], 2)
        self.assertEqual(set(kv["methods"]), {"put", "get", "delete"})
        for schemas in kv["methods"].values():  # §4.4: object schemas for params and result
            self.assertEqual(schemas["params"]["type"], "object")
            self.assertEqual(schemas["result"]["type"], "object")
        # The spec's Bytes schema: base64, or an attachment reference once negotiated (§2.8).
        self.assertEqual(kv["methods"]["put"]["params"]["properties"]["value"]["anyOf"][0],
                         {"type": "string", "contentEncoding": "base64"})
        self.assertEqual(self.p.result("kv.delete", {"key": "a"}), {"existed": False})
        self.p.shutdown()

    def test_no_common_interface_version(self) -> None:
        err = self.p.initialize({"kv": [9]})["error"]
        self.assertEqual(err["code"], -32001)
        self.assertEqual(err["data"], {"interface": "kv", "host": [9], "plugin": [1, 2]})
        # The session stays uninitialized (§4.3) and the host may try again.
        self.assertEqual(self.p.error("kv.get", {"key": "a"})["code"], -32002)
        self.assertEqual(self.p.initialize({"kv": [2]})["result"]["interfaces"]["kv"]["version"],
                         2)
        self.p.shutdown()

    def test_no_common_core_version(self) -> None:
        err = self.p.call("tether/initialize", {
            "protocolVersions": [2, 3], "interfaces": {"kv": [1]},
            "host": {"name": "h", "version": "0"}, "capabilities": {},
            "maxFrameSize": 33554432})["error"]
        self.assertEqual(err["code"], -32001)
        self.assertEqual(err["data"], {"interface": "tether", "host": [2, 3], "plugin": [1]})
        self.p.close_stdin()
        self.p.expect_exit(0)

    def test_unknown_interfaces_are_left_out(self) -> None:
        result = self.p.initialize({"kv": [1], "nope": [1], "counter": [1]})["result"]
        self.assertEqual(set(result["interfaces"]), {"kv"})
        self.assertEqual(self.p.error("counter.get", {"key": "a"})["code"], -32601)
        self.p.shutdown()

    def test_bad_initialize_params(self) -> None:
        for params in ({}, {"protocolVersions": [], "interfaces": {}},
                       {"protocolVersions": [1], "interfaces": {"kv": "1"}},
                       {"protocolVersions": [1], "interfaces": {}, "maxFrameSize": 1024},
                       {"protocolVersions": [1], "interfaces": {}, "logLevel": "loud"}):
            self.assertEqual(self.p.error("tether/initialize", params)["code"], -32602, params)
        self.assertIn("result", self.p.initialize())
        self.p.shutdown()

    def test_before_and_after_initialize(self) -> None:
        self.assertEqual(self.p.error("kv.get", {"key": "a"})["code"], -32002)
        self.assertEqual(self.p.error("tether/ping")["code"], -32002)
        self.p.notify("$/setLogLevel", {"level": "debug"})  # ignored before initialize
        self.p.expect_silence()
        self.p.initialize()
        self.assertEqual(self.p.error("tether/initialize", {})["code"], -32600)
        self.assertEqual(self.p.result("tether/ping"), {})
        self.p.shutdown()


class EndTest(unittest.TestCase):
    """§4.6 and §1.6."""

    def setUp(self) -> None:
        self.p = Plugin("kv.py")
        self.addCleanup(self.p.kill)
        self.p.initialize()

    def test_shutdown_then_exit_0(self) -> None:
        self.p.assert_result(self.p.call("tether/shutdown"), {})
        # After shutdown every request is refused with -32005.
        self.assertEqual(self.p.error("tether/ping")["code"], -32005)
        self.assertEqual(self.p.error("kv.get", {"key": "a"})["code"], -32005)
        self.p.close_stdin()
        self.p.expect_exit(0)

    def test_eof_without_shutdown_exits_0_promptly(self) -> None:
        self.p.result("kv.put", {"key": "a", "value": "AA=="})
        self.p.close_stdin()
        # Promptly is §1.6's bound, which expect_exit enforces along with status 0 and an
        # empty stdout; without a shutdown there is nothing to report either.
        self.p.expect_exit(0, within=2.0)
        self.assertEqual(self.p.stderr_text(), "")

    def test_eof_before_initialize(self) -> None:
        p = Plugin("kv.py")
        self.addCleanup(p.kill)
        p.close_stdin()
        p.expect_exit(0)


if __name__ == "__main__":
    unittest.main()


class HostStopsReadingTest(unittest.TestCase):
    """§1.5: a failed write is fatal (exit 2) only while stdin stays open."""

    PING = encode({"jsonrpc": "2.0", "id": 1, "method": "tether/ping"})

    def start_deaf(self) -> subprocess.Popen:
        """kv.py with the host's end of its stdout already closed."""
        env = dict(os.environ)
        env[COOKIE[0]] = COOKIE[1]
        proc = subprocess.Popen([PYTHON, os.path.join(EXAMPLES, "kv.py")], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                cwd=EXAMPLES)
        self.addCleanup(proc.kill)
        self.addCleanup(proc.stderr.close)
        proc.stdout.close()
        return proc

    def test_stdout_closed_while_stdin_open_exits_2(self) -> None:
        proc = self.start_deaf()
        self.addCleanup(proc.stdin.close)
        proc.stdin.write(self.PING)  # its answer (-32002) is a write that fails
        proc.stdin.flush()
        self.assertEqual(proc.wait(timeout=10), 2)
        self.assertIn("giving up on the session", proc.stderr.read().decode())

    def test_both_pipes_closed_at_once_exits_0(self) -> None:
        proc = self.start_deaf()
        proc.stdin.write(self.PING)
        proc.stdin.close()
        status = proc.wait(timeout=10)
        self.assertEqual(status, 0, proc.stderr.read().decode())
