"""Replays every spec/transcripts/*.tether against the example it names, by the rules of
spec/transcripts/README.md (format, expectation groups, matching, id binding, clean exit)."""

from __future__ import annotations

import copy
import glob
import json
import os
import tempfile
import unittest
from typing import Any

from harness import EXAMPLES, Plugin, precompile

TRANSCRIPTS = os.path.join(os.path.dirname(EXAMPLES), "spec", "transcripts")
PLUGINS = {"kv": "kv.py", "counter": "counter.py"}
DATA_COMPARED = {-32001, -32003, -32004, 1001}  # codes whose data Appendix A fixes (rule 3)


def setUpModule() -> None:
    precompile()


class FormatError(Exception):
    """The file is not a transcript."""


class ReplayError(AssertionError):
    """The plugin did not behave as the transcript says."""


def parse(data: bytes) -> tuple[str, list[tuple[str, bytes]]]:
    """The plugin name and the blocks, (direction, body), of a transcript (README "Format")."""
    first = data.split(b"\n", 1)[0]
    if not first.startswith(b"# plugin: "):
        raise FormatError("the first line must be '# plugin: kv' or '# plugin: counter'")
    plugin = first[len(b"# plugin: "):].decode().strip()
    blocks: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(data):
        if data.startswith(b"#", pos):
            end = data.find(b"\n", pos)
            if end < 0:
                raise FormatError(f"comment line without \\n at byte {pos}")
            pos = end + 1
            continue
        direction = data[pos: pos + 4]
        if direction not in (b"-->\n", b"<--\n"):
            raise FormatError(f"expected a comment or a direction line at byte {pos}: "
                              f"{data[pos: pos + 40]!r}")
        pos += 4
        if not data.startswith(b"Content-Length: ", pos):
            raise FormatError(f"expected a frame at byte {pos}")
        end = data.find(b"\r\n\r\n", pos)
        digits = data[pos + 16: end]
        if end < 0 or not digits.isdigit() or (digits.startswith(b"0") and digits != b"0"):
            raise FormatError(f"a header not in the writer form at byte {pos}")
        start = end + 4
        body = data[start: start + int(digits)]
        if len(body) != int(digits) or data[start + len(body): start + len(body) + 1] != b"\n":
            raise FormatError(f"a frame body not followed by one \\n at byte {start}")
        blocks.append((direction[:3].decode(), body))
        pos = start + len(body) + 1
    return plugin, blocks


def is_request(msg: Any) -> bool:
    return isinstance(msg, dict) and "method" in msg and "id" in msg


class Replayer:
    """Plays the host of one transcript against a plugin process."""

    def __init__(self, plugin: Plugin, timeout: float) -> None:
        self.p = plugin
        self.timeout = timeout
        self.bound: dict[Any, Any] = {}  # the transcript's ids of plugin requests -> real ids
        self.initialize_ids: list[Any] = []  # ids of the host's tether/initialize requests

    def rebind(self, value: Any) -> Any:
        return self.bound.get(_key(value), value)

    def send(self, body: bytes) -> None:
        """Rule 1 and rule 4: write a --> frame, rewriting ids bound to the plugin's ids."""
        try:
            msg = json.loads(body)
        except ValueError:
            msg = None  # deliberately not JSON: written as it is
        if isinstance(msg, dict):
            if msg.get("method") == "tether/initialize" and "id" in msg:
                self.initialize_ids.append(_key(msg["id"]))
            changed = copy.deepcopy(msg)
            if "method" not in msg and "id" in msg and _key(msg["id"]) in self.bound:
                changed["id"] = self.rebind(msg["id"])
            if msg.get("method") == "$/cancelRequest" and isinstance(msg.get("params"), dict) \
                    and _key(msg["params"].get("id")) in self.bound:
                changed["params"]["id"] = self.rebind(msg["params"]["id"])
            if changed != msg:
                body = json.dumps(changed, separators=(",", ":"), ensure_ascii=False).encode()
        self.p.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def expect(self, group: list[bytes]) -> None:
        """Rule 2: read exactly len(group) frames and match them in any order."""
        expected = [json.loads(body) for body in group]
        actual = [self.p.recv(self.timeout) for _ in expected]
        pairing = self.match(expected, actual, [False] * len(actual), {})
        if pairing is None:
            raise ReplayError("the plugin's frames do not match the transcript:\n  expected: "
                              + "\n            ".join(json.dumps(e) for e in expected)
                              + "\n  got:      "
                              + "\n            ".join(json.dumps(a) for a in actual))
        self.bound.update(pairing)

    def match(self, expected: list[Any], actual: list[Any], used: list[bool],
              bindings: dict[Any, Any]) -> dict[Any, Any] | None:
        """A complete matching of expected to actual frames (backtracking); its id bindings."""
        if not expected:
            return bindings
        first, rest = expected[0], expected[1:]
        for i, got in enumerate(actual):
            if used[i]:
                continue
            new = self.frame_matches(first, got, bindings)
            if new is None:
                continue
            used[i] = True
            found = self.match(rest, actual, used, {**bindings, **new})
            used[i] = False
            if found is not None:
                return found
        return None

    def frame_matches(self, want: Any, got: Any, bindings: dict[Any, Any]
                      ) -> dict[Any, Any] | None:
        """Rule 3: None when the frames differ; else the id bindings the match makes."""
        if not isinstance(want, dict) or not isinstance(got, dict):
            return {} if want == got else None
        want = copy.deepcopy(want)
        if is_request(want):  # a request the plugin sends: its id is bound, not compared
            if not is_request(got):
                return None
            tid, real = _key(want["id"]), got["id"]
            known = {**self.bound, **bindings}
            if tid in known and known[tid] != real:
                return None
            want["id"] = real
            return {tid: real} if _equal(want, got) else None
        if want.get("method") == "$/cancelRequest" and isinstance(want.get("params"), dict):
            tid = _key(want["params"].get("id"))
            known = {**self.bound, **bindings}
            if tid in known:
                want["params"]["id"] = known[tid]
            return {} if _equal(want, got) else None
        if want.get("method") == "$/log":
            return {} if _log_matches(want, got) else None
        if "method" not in want and "id" in want:  # a response
            if set(got) != set(want) or got.get("id") != want["id"] or \
                    type(got.get("id")) is not type(want["id"]):
                return None
            if "error" in want:
                return {} if _error_matches(want["error"], got["error"]) else None
            if _key(want["id"]) in self.initialize_ids:
                return {} if _initialize_matches(want["result"], got["result"]) else None
        return {} if _equal(want, got) else None


def _key(value: Any) -> Any:
    """A hashable key that keeps 1 and "1" apart."""
    return (type(value).__name__, json.dumps(value))


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 is not 1.0 is not true."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _error_matches(want: Any, got: Any) -> bool:
    if not isinstance(got, dict) or got.get("code") != want.get("code") or \
            not isinstance(got.get("message"), str):
        return False
    if want.get("code") in DATA_COMPARED:
        return _equal(want.get("data"), got.get("data"))
    return True


def _initialize_matches(want: Any, got: Any) -> bool:
    """protocolVersion, the interface names, their versions and method names."""
    def summary(result: Any) -> Any:
        return (result.get("protocolVersion"),
                {name: (iface.get("version"), sorted(iface.get("methods", {})))
                 for name, iface in result.get("interfaces", {}).items()})
    return isinstance(got, dict) and summary(want) == summary(got)


def _log_matches(want: Any, got: Any) -> bool:
    """The level, that there is a message, and fields.key when the expectation has one."""
    if got.get("method") != "$/log" or "id" in got or got.get("jsonrpc") != "2.0":
        return False
    wp, gp = want.get("params", {}), got.get("params", {})
    if gp.get("level") != wp.get("level") or not isinstance(gp.get("message"), str):
        return False
    if "key" in wp.get("fields", {}):
        return _equal(gp.get("fields", {}).get("key", object()), wp["fields"]["key"]) \
            if isinstance(gp.get("fields"), dict) else False
    return True


def replay(path: str, timeout: float = 10.0) -> None:
    """Replay one transcript against the example it names (README rules 1-5); ``timeout`` is
    how long to wait for each expected frame."""
    with open(path, "rb") as f:
        plugin_name, blocks = parse(f.read())
    if plugin_name not in PLUGINS:
        raise FormatError(f"unknown plugin {plugin_name!r}")
    p = Plugin(PLUGINS[plugin_name])
    try:
        r = Replayer(p, timeout)
        group: list[bytes] = []
        for direction, body in blocks:
            if direction == "<--":
                group.append(body)
                continue
            if group:
                r.expect(group)
                group = []
            r.send(body)
        if group:
            r.expect(group)
        p.close_stdin()
        p.expect_exit(0, within=2.0)  # rule 5, and nothing more on stdout
    except AssertionError as e:
        raise ReplayError(f"{os.path.basename(path)}: {e}\nstderr:\n{p.stderr_text()}") from None
    finally:
        p.kill()


class TranscriptTest(unittest.TestCase):
    def test_spec_transcripts(self) -> None:
        paths = sorted(glob.glob(os.path.join(TRANSCRIPTS, "*.tether")))
        if not paths:
            self.skipTest(f"no *.tether transcripts in {TRANSCRIPTS} yet")
        for path in paths:
            with self.subTest(transcript=os.path.basename(path)):
                replay(path)


def frame(obj: Any) -> bytes:
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return b"Content-Length: %d\r\n\r\n%s\n" % (len(body), body)


INIT = {"jsonrpc": "2.0", "id": 1, "method": "tether/initialize", "params": {
    "protocolVersions": [1], "interfaces": {"counter": [1]}, "host": {"name": "h", "version": "0"},
    "capabilities": {}, "maxFrameSize": 33554432, "logLevel": "debug"}}
INIT_RESULT = {"jsonrpc": "2.0", "id": 1, "result": {
    "protocolVersion": 1, "plugin": {"name": "other-sdk", "version": "9"}, "capabilities": {"x": 1},
    "interfaces": {"counter": {"version": 1, "methods": {"get": {}, "put": {}}}}}}


def sample(middle: list[tuple[str, Any]]) -> bytes:
    """A counter transcript: initialize, the given blocks, shutdown."""
    out = [b"# plugin: counter\n# A replayer self-test.\n", b"-->\n", frame(INIT), b"<--\n",
           frame(INIT_RESULT)]
    for direction, obj in middle:
        if direction == "#":
            out.append(b"# " + obj.encode() + b"\n")
        else:
            out += [direction.encode() + b"\n", frame(obj)]
    out += [b"-->\n", frame({"jsonrpc": "2.0", "id": 99, "method": "tether/shutdown"}),
            b"<--\n", frame({"jsonrpc": "2.0", "id": 99, "result": {}}), b"# the end\n"]
    return b"".join(out)


PUT = {"jsonrpc": "2.0", "id": 2, "method": "counter.put",
       "params": {"key": "k", "value": 4, "adder": {"$handle": "h1", "interface": "adder"}}}
GET = {"jsonrpc": "2.0", "id": 3, "method": "counter.get", "params": {"key": "k"}}
INVOKE = {"jsonrpc": "2.0", "id": 41, "method": "tether/invoke",
          "params": {"handle": "h1", "method": "sum", "params": {"a": 0, "b": 4}}}


class ReplayerSelfTest(unittest.TestCase):
    """The replayer accepts a good session and rejects wrong ones (a transcript in a temp dir)."""

    def run_sample(self, middle: list[tuple[str, Any]], timeout: float = 10.0) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "sample.tether")
            with open(path, "wb") as f:
                f.write(sample(middle))
            replay(path, timeout)

    def test_good_session(self) -> None:
        self.run_sample([
            ("-->", PUT), ("#", "the plugin's own id 41 is bound to the real one"), ("<--", INVOKE),
            ("-->", {"jsonrpc": "2.0", "id": 41, "result": {"result": 4}}),
            ("<--", {"jsonrpc": "2.0", "id": 2, "result": {}}),
            ("-->", GET),
            ("<--", {"jsonrpc": "2.0", "id": 3, "result": {"value": 4}}),
            ("-->", {"jsonrpc": "2.0", "id": 4, "method": "counter.nope", "params": {}}),
            ("<--", {"jsonrpc": "2.0", "id": 4, "error": {"code": -32601, "message": "x",
                                                          "data": "free-form"}}),
            ("-->", b"{not json"),
            ("<--", {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": ""}}),
        ])

    def test_cancel_with_bound_ids(self) -> None:
        self.run_sample([
            ("-->", PUT), ("<--", INVOKE),
            ("-->", {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 2}}),
            ("<--", {"jsonrpc": "2.0", "id": 2, "error": {"code": -32800, "message": "c"}}),
            ("<--", {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 41}}),
            ("-->", {"jsonrpc": "2.0", "id": 41, "result": {"result": 4}}),
        ])

    def test_rejects_wrong_result(self) -> None:
        with self.assertRaises(ReplayError):
            self.run_sample([
                ("-->", GET),
                ("<--", {"jsonrpc": "2.0", "id": 3, "result": {"value": 1}}),
            ])

    def test_rejects_wrong_id_type(self) -> None:
        with self.assertRaises(ReplayError):
            self.run_sample([
                ("-->", {"jsonrpc": "2.0", "id": 3, "method": "tether/ping", "params": {}}),
                ("<--", {"jsonrpc": "2.0", "id": "3", "result": {}}),
            ])

    def test_rejects_wrong_fixed_data(self) -> None:
        with self.assertRaises(ReplayError):
            self.run_sample([
                ("-->", {"jsonrpc": "2.0", "id": 5, "method": "tether/invoke",
                         "params": {"handle": "nope", "method": "m", "params": {}}}),
                ("<--", {"jsonrpc": "2.0", "id": 5, "error": {
                    "code": -32003, "message": "", "data": {"handle": "other"}}}),
            ])

    def test_rejects_missing_frame(self) -> None:
        with self.assertRaises(ReplayError):
            self.run_sample([
                ("-->", GET),
                ("<--", {"jsonrpc": "2.0", "id": 3, "result": {"value": 0}}),
                ("<--", {"jsonrpc": "2.0", "method": "$/log", "params": {"level": "debug",
                                                                          "message": "m"}}),
            ], timeout=1.0)

    def test_rejects_bad_format(self) -> None:
        with self.assertRaises(FormatError):
            parse(b"# plugin: kv\n-->\nContent-Length: 2\r\n\r\n{}")  # no \n after the frame
        with self.assertRaises(FormatError):
            parse(b"# plugin: kv\nstray\n")
        with self.assertRaises(FormatError):
            parse(b"-->\nContent-Length: 2\r\n\r\n{}\n")  # no plugin line


if __name__ == "__main__":
    unittest.main()
