"""The fds transport (SPEC.md §13): frames on two inherited descriptors, stdio left alone."""

from __future__ import annotations

import json
import os
import subprocess
import time
import unittest

from harness import COOKIE, EXAMPLES, PYTHON, TESTS, TIMEOUT, encode, precompile


def setUpModule() -> None:
    precompile()


class FdsPlugin:
    """A plugin whose frames travel on two pipes it inherits at the numbers they have here (any
    numbers work; the reference host uses 3 and 4), with stdin a pipe that this test keeps open
    and stdout and stderr collected apart."""

    def __init__(self, script: str, transport: str | None = None) -> None:
        plugin_reads, self.to_plugin = os.pipe()
        self.from_plugin, plugin_writes = os.pipe()
        self.fds = (plugin_reads, plugin_writes)
        env = dict(os.environ, **{COOKIE[0]: COOKIE[1]})
        env["TETHER_TRANSPORT"] = (transport or "fds:{},{}").format(*self.fds)
        self.proc = subprocess.Popen([PYTHON, os.path.join(EXAMPLES, script)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                     cwd=EXAMPLES, pass_fds=self.fds)
        os.close(plugin_reads)
        os.close(plugin_writes)
        self.buf = b""
        self.next_id = 1

    def send(self, msg: dict) -> None:
        os.write(self.to_plugin, encode(msg))

    def recv(self) -> dict:
        """The next frame on the plugin's write descriptor, in the writer form of §2.2."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if sep:
                assert head.startswith(b"Content-Length: "), self.buf[:100]
                n = int(head[len(b"Content-Length: "):])
                if len(rest) >= n:
                    self.buf = rest[n:]
                    return json.loads(rest[:n])
            assert time.monotonic() < deadline, "no frame within the time-out"
            chunk = os.read(self.from_plugin, 65536)
            assert chunk, "the plugin closed its write descriptor"
            self.buf += chunk

    def call(self, method: str, params: dict) -> dict:
        rid = self.next_id
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        msg = self.recv()
        while msg.get("id") != rid:
            msg = self.recv()
        return msg

    def initialize(self, interface: str) -> None:
        answer = self.call("tether/initialize", {
            "protocolVersions": [1], "host": {"name": "test", "version": "0"},
            "interfaces": {interface: [1]}})
        assert "result" in answer, answer

    def close(self) -> None:
        for fd in (self.to_plugin, self.from_plugin):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()


class FdsTransportTest(unittest.TestCase):
    def test_frames_travel_on_the_descriptors_and_prints_reach_stdout(self) -> None:
        p = FdsPlugin(os.path.join(TESTS, "plugins", "lab.py"))
        self.addCleanup(p.close)
        p.initialize("lab")
        # print, fd 1, a child process and sys.__stdout__ all reach the plugin's stdout: with
        # this transport it is the user's, and the frames are elsewhere.
        self.assertEqual(p.call("lab.shout", {"text": "hi"})["result"], {})
        self.assertEqual(p.call("tether/ping", {})["result"], {})
        # The frame descriptors are close-on-exec: the child `echo` did not inherit them.
        for fd in p.fds:
            with open(f"/proc/{p.proc.pid}/fdinfo/{fd}") as info:
                flags = next(line for line in info if line.startswith("flags:"))
            self.assertTrue(int(flags.split()[1], 8) & 0o2000000, f"descriptor {fd}: {flags}")
        # The end of the read descriptor ends the session, while stdin stays open.
        os.close(p.to_plugin)
        self.assertEqual(p.proc.wait(timeout=TIMEOUT), 0)
        out = p.proc.stdout.read().decode()
        self.assertEqual(sorted(out.split("\n")), ["", "child hi", "dunder hi", "fd1 hi", "hi"])

    def test_the_end_of_stdin_is_not_the_end_of_the_session(self) -> None:
        p = FdsPlugin("kv.py")
        self.addCleanup(p.close)
        p.initialize("kv")
        p.proc.stdin.close()
        self.assertEqual(p.call("kv.put", {"key": "k", "value": "dg=="})["result"], {})
        self.assertEqual(p.call("kv.get", {"key": "k"})["result"], {"value": "dg=="})
        self.assertIsNone(p.proc.poll())
        os.close(p.to_plugin)
        self.assertEqual(p.proc.wait(timeout=TIMEOUT), 0)
        self.assertEqual(p.proc.stdout.read(), b"")

    def test_an_unknown_transport_exits_1_without_reading(self) -> None:
        for value in ("socket", "fds:{}", "fds:{0},{0}", "fds:2,{1}", "fds:0{},{}"):
            p = FdsPlugin("kv.py", transport=value)
            self.addCleanup(p.close)
            value = value.format(*p.fds)
            self.assertEqual(p.proc.wait(timeout=TIMEOUT), 1, value)
            self.assertIn(f'unknown transport "{value}" in TETHER_TRANSPORT', p.proc.stderr.read().decode())
            self.assertEqual(p.proc.stdout.read(), b"")

    def test_a_descriptor_the_host_did_not_pass_exits_1(self) -> None:
        p = FdsPlugin("kv.py", transport="fds:{},900")
        self.addCleanup(p.close)
        self.assertEqual(p.proc.wait(timeout=TIMEOUT), 1)
        self.assertIn("descriptor 900", p.proc.stderr.read().decode())


if __name__ == "__main__":
    unittest.main()
