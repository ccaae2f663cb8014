"""Replays every spec/transcripts/*.tether against the example it names, by the rules of
spec/transcripts/README.md (format, expectation groups, matching, id binding, clean exit), and
the rules for attachments and streams: (a) bytes compare equal as base64 or as attachments,
(b) stream ids the plugin chooses are bound like its request ids, (c) its $/stream.credit
notifications are skipped, (d) its $/stream.data for a stream is compared as one concatenation."""

from __future__ import annotations

import base64
import copy
import glob
import json
import os
import tempfile
import unittest
from typing import Any

from harness import EXAMPLES, Plugin, precompile

TRANSCRIPTS = os.path.join(os.path.dirname(EXAMPLES), "spec", "transcripts")
PLUGINS = {"kv": "kv.py", "counter": "counter.py", "blob": "blob.py"}
DATA_COMPARED = {-32001, -32003, -32004, 1001, 1002}  # codes whose data Appendix A fixes


def setUpModule() -> None:
    precompile()


class FormatError(Exception):
    """The file is not a transcript."""


class ReplayError(AssertionError):
    """The plugin did not behave as the transcript says."""


def parse(data: bytes) -> tuple[str, list[tuple[str, bytes, list[bytes]]]]:
    """The plugin name and the blocks, (direction, body, attachments), of a transcript
    (README "Format"; a frame may carry attachments, SPEC.md §2.8)."""
    first = data.split(b"\n", 1)[0]
    if not first.startswith(b"# plugin: "):
        raise FormatError("the first line must be '# plugin: kv' or '# plugin: counter'")
    plugin = first[len(b"# plugin: "):].decode().strip()
    blocks: list[tuple[str, bytes, list[bytes]]] = []
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
        lines = data[pos + 16: end].split(b"\r\n") if end >= 0 else [b""]
        digits, lengths = lines[0], []
        if len(lines) == 2 and lines[1].startswith(b"Tether-Attachments: "):
            listed = lines[1][20:].split(b",")
            if not all(_plain_decimal(x) for x in listed):
                raise FormatError(f"a Tether-Attachments header not in the writer form at {pos}")
            lengths = [int(x) for x in listed]
        elif len(lines) != 1:
            raise FormatError(f"a header not in the writer form at byte {pos}")
        if not _plain_decimal(digits) or sum(lengths) > int(digits):
            raise FormatError(f"a header not in the writer form at byte {pos}")
        start = end + 4
        frame = data[start: start + int(digits)]
        if len(frame) != int(digits) or data[start + len(frame): start + len(frame) + 1] != b"\n":
            raise FormatError(f"a frame body not followed by one \\n at byte {start}")
        at = len(frame) - sum(lengths)
        body, parts = frame[:at], []
        for n in lengths:
            parts.append(frame[at: at + n])
            at += n
        blocks.append((direction[:3].decode(), body, parts))
        pos = start + len(frame) + 1
    return plugin, blocks


def _plain_decimal(digits: bytes) -> bool:
    return digits.isdigit() and (digits == b"0" or not digits.startswith(b"0"))


def resolve(value: Any, parts: list[bytes]) -> Any:
    """Rule (a): every ``{"$bytes": i}`` replaced by the base64 of attachment i (a reference
    to a missing attachment stays as it is)."""
    if isinstance(value, dict):
        i = value.get("$bytes")
        if len(value) == 1 and type(i) is int and 0 <= i < len(parts):
            return base64.b64encode(parts[i]).decode()
        return {k: resolve(v, parts) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, parts) for v in value]
    return value


def stream_method(msg: Any) -> str | None:
    method = msg.get("method") if isinstance(msg, dict) else None
    return method if isinstance(method, str) and method.startswith("$/stream.") else None


def stream_slots(msg: Any) -> list[tuple[Any, Any]]:
    """Where a message names stream ids: (container, key) pairs for every ``$stream`` member
    and for ``params.stream`` of a ``$/stream.*`` notification (rule (b))."""
    out: list[tuple[Any, Any]] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            if type(v.get("$stream")) is int:
                out.append((v, "$stream"))
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    walk(msg)
    if stream_method(msg) and isinstance(msg.get("params"), dict) and \
            type(msg["params"].get("stream")) is int:
        out.append((msg["params"], "stream"))
    return out


def chunk_of(msg: dict[str, Any]) -> bytes:
    data = msg.get("params", {}).get("data")
    try:
        return base64.b64decode(data, validate=True) if isinstance(data, str) else b""
    except ValueError:
        return b""


def is_request(msg: Any) -> bool:
    return isinstance(msg, dict) and "method" in msg and "id" in msg


class Replayer:
    """Plays the host of one transcript against a plugin process."""

    def __init__(self, plugin: Plugin, timeout: float) -> None:
        self.p = plugin
        self.timeout = timeout
        self.bound: dict[Any, Any] = {}  # the transcript's ids of plugin requests -> real ids
        self.streams: dict[int, int] = {}  # the transcript's ids of plugin streams -> real ids
        self.initialize_ids: list[Any] = []  # ids of the host's tether/initialize requests

    def rebind(self, value: Any) -> Any:
        return self.bound.get(_key(value), value)

    def rebind_streams(self, msg: Any, streams: dict[int, int]) -> None:
        """Rule (b): the plugin's (even) stream ids of ``msg`` replaced by the bound ones."""
        for holder, key in stream_slots(msg):
            sid = holder[key]
            if sid % 2 == 0 and sid in streams:
                holder[key] = streams[sid]

    def send(self, body: bytes, parts: list[bytes] | None = None) -> None:
        """Rule 1, rule 4 and rule (b): write a --> frame, rewriting ids bound to the plugin's
        ids, with its attachments."""
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
            self.rebind_streams(changed, self.streams)
            if changed != msg:
                body = json.dumps(changed, separators=(",", ":"), ensure_ascii=False).encode()
        self.p.send(body, parts or None)

    def expect(self, group: list[tuple[bytes, list[bytes]]]) -> None:
        """Rule 2 with rules (a), (c) and (d): read the group's frames (skipping the plugin's
        credit, the data counted in bytes per stream) and match them in any order."""
        expected, expected_data = [], {}
        for body, parts in group:
            msg = resolve(json.loads(body), parts)
            method = stream_method(msg)
            if method == "$/stream.credit":
                continue
            if method == "$/stream.data":
                sid = msg["params"]["stream"]
                expected_data[sid] = expected_data.get(sid, b"") + chunk_of(msg)
                continue
            expected.append(msg)
        actual: list[Any] = []
        actual_data: dict[Any, bytes] = {}
        data_total, got_data = sum(map(len, expected_data.values())), 0
        while len(actual) < len(expected) or got_data < data_total:
            got = self.p.recv(self.timeout)
            msg = resolve(dict(got), got.parts)
            method = stream_method(msg)
            if method == "$/stream.credit":
                continue
            if method == "$/stream.data":
                chunk = chunk_of(msg)
                sid = msg["params"].get("stream")
                actual_data[sid] = actual_data.get(sid, b"") + chunk
                got_data += len(chunk)
                continue
            actual.append(msg)
        pairing = self.match(expected, actual, [False] * len(actual), {})
        if pairing is None:
            raise ReplayError("the plugin's frames do not match the transcript:\n  expected: "
                              + "\n            ".join(json.dumps(e) for e in expected)
                              + "\n  got:      "
                              + "\n            ".join(json.dumps(a) for a in actual))
        for key, value in pairing.items():
            if isinstance(key, tuple) and key[0] == "stream":
                self.streams[key[1]] = value
            else:
                self.bound[key] = value
        real = {self.streams.get(sid, sid) if sid % 2 == 0 else sid: data
                for sid, data in expected_data.items()}
        if real != actual_data:
            raise ReplayError(f"the plugin's stream data does not match the transcript: "
                              f"expected {real!r}, got {actual_data!r}")

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
        """Rule 3 and rule (b): None when the frames differ; else the id bindings the match
        makes (stream bindings keyed ("stream", id))."""
        if not isinstance(want, dict) or not isinstance(got, dict):
            return {} if want == got else None
        want = copy.deepcopy(want)
        known_streams = {**self.streams, **{k[1]: v for k, v in bindings.items()
                                            if isinstance(k, tuple) and k[0] == "stream"}}
        self.rebind_streams(want, known_streams)
        fresh: dict[Any, Any] = {}
        for holder, key in stream_slots(want):
            sid = holder[key]
            if sid % 2 == 0 and sid not in known_streams:  # chosen by the plugin: bind it
                real = _at_same_place(want, holder, key, got)
                if type(real) is not int or real % 2 or fresh.get(("stream", sid), real) != real:
                    return None
                fresh[("stream", sid)] = real
                holder[key] = real
        found = self.match_ids(want, got, bindings)
        return None if found is None else {**fresh, **found}

    def match_ids(self, want: Any, got: Any, bindings: dict[Any, Any]
                  ) -> dict[Any, Any] | None:
        """Rule 3 with rule 4, on a frame whose stream ids are already bound."""
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


def _at_same_place(root: Any, holder: Any, key: Any, other: Any) -> Any:
    """The value in ``other`` at the place where ``root`` holds ``holder[key]``."""
    def path_to(v: Any, trail: list[Any]) -> list[Any] | None:
        if v is holder:
            return trail + [key]
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
        for k, item in items:
            if isinstance(item, (dict, list)):
                found = path_to(item, trail + [k])
                if found is not None:
                    return found
        return None

    path = path_to(root, [])
    for step in path or [object()]:
        try:
            other = other[step]
        except (KeyError, IndexError, TypeError):
            return None
    return other


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


def _is_credit(msg: Any) -> bool:
    return stream_method(msg) == "$/stream.credit"


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
        group: list[tuple[bytes, list[bytes]]] = []
        for direction, body, parts in blocks:
            if direction == "<--":
                group.append((body, parts))
                continue
            if group:
                r.expect(group)
                group = []
            r.send(body, parts)
        if group:
            r.expect(group)
        p.close_stdin()
        p.expect_exit(0, within=2.0, ignore=_is_credit)  # rule 5 (and rule (c))
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


def frame(obj: Any, parts: list[bytes] | None = None) -> bytes:
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    if parts:
        return b"Content-Length: %d\r\nTether-Attachments: %s\r\n\r\n%s%s\n" % (
            len(body) + sum(map(len, parts)), ",".join(str(len(x)) for x in parts).encode(),
            body, b"".join(parts))
    return b"Content-Length: %d\r\n\r\n%s\n" % (len(body), body)


INIT = {"jsonrpc": "2.0", "id": 1, "method": "tether/initialize", "params": {
    "protocolVersions": [1], "interfaces": {"counter": [1]}, "host": {"name": "h", "version": "0"},
    "capabilities": {}, "maxFrameSize": 33554432, "logLevel": "debug"}}
INIT_RESULT = {"jsonrpc": "2.0", "id": 1, "result": {
    "protocolVersion": 1, "plugin": {"name": "other-sdk", "version": "9"}, "capabilities": {"x": 1},
    "interfaces": {"counter": {"version": 1, "methods": {"get": {}, "put": {}}}}}}


def sample(middle: list[tuple[str, Any]], plugin: str = "counter",
           caps: dict[str, Any] | None = None) -> bytes:
    """A transcript: initialize (of ``plugin``'s interface, with ``caps``), the given blocks
    (an object, or an (object, attachments) pair), shutdown."""
    init, result = copy.deepcopy(INIT), copy.deepcopy(INIT_RESULT)
    if plugin != "counter":
        methods = {"kv": ["put", "get", "delete"], "blob": ["upload", "download", "count",
                                                         "produce"]}[plugin]
        init["params"]["interfaces"] = {plugin: [1] if plugin == "blob" else [2]}
        init["params"]["logLevel"] = "info"  # no $/log for kv.put
        result["result"]["interfaces"] = {plugin: {
            "version": init["params"]["interfaces"][plugin][0],
            "methods": {m: {} for m in methods}}}
    init["params"]["capabilities"] = caps or {}
    out = [b"# plugin: %s\n# A replayer self-test.\n" % plugin.encode(), b"-->\n", frame(init),
           b"<--\n", frame(result)]
    for direction, obj in middle:
        if direction == "#":
            out.append(b"# " + obj.encode() + b"\n")
        else:
            body, parts = obj if isinstance(obj, tuple) else (obj, None)
            out += [direction.encode() + b"\n", frame(body, parts)]
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

    def run_sample(self, middle: list[tuple[str, Any]], timeout: float = 10.0,
                   plugin: str = "counter", caps: dict[str, Any] | None = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "sample.tether")
            with open(path, "wb") as f:
                f.write(sample(middle, plugin, caps))
            replay(path, timeout)

    def kv_bytes(self, caps: dict[str, Any], put_parts: bool, get_parts: bool) -> None:
        put = {"jsonrpc": "2.0", "id": 2, "method": "kv.put",
               "params": {"key": "k", "value": {"$bytes": 0} if put_parts else "d29ybGQ="}}
        get = {"jsonrpc": "2.0", "id": 3, "result": {"value": {"$bytes": 0} if get_parts
                                                      else "d29ybGQ="}}
        self.run_sample([
            ("-->", (put, [b"world"]) if put_parts else put),
            ("<--", {"jsonrpc": "2.0", "id": 2, "result": {}}),
            ("-->", {"jsonrpc": "2.0", "id": 3, "method": "kv.get", "params": {"key": "k"}}),
            ("<--", (get, [b"world"]) if get_parts else get),
        ], plugin="kv", caps=caps)

    def test_bytes_compare_as_base64_or_attachment(self) -> None:
        # Rule (a): the plugin writes an attachment where the transcript has base64, and
        # base64 (attachments not negotiated) where it has an attachment.
        self.kv_bytes({"attachments": {}}, put_parts=True, get_parts=False)
        self.kv_bytes({}, put_parts=False, get_parts=True)

    def blob_download(self, chunks: list[bytes], size: int) -> list[tuple[str, Any]]:
        data = b"".join(chunks)
        out: list[tuple[str, Any]] = [
            ("-->", {"jsonrpc": "2.0", "id": 2, "method": "blob.upload", "params": {
                "name": "n", "data": {"$stream": 1, "mode": "read"}}}),
            ("-->", {"jsonrpc": "2.0", "method": "$/stream.data", "params": {
                "stream": 1, "data": base64.b64encode(data).decode()}}),
            ("-->", {"jsonrpc": "2.0", "method": "$/stream.end", "params": {"stream": 1}}),
            ("<--", {"jsonrpc": "2.0", "id": 2, "result": {
                "size": len(data), "sha256": __import__("hashlib").sha256(data).hexdigest()}}),
            ("-->", {"jsonrpc": "2.0", "id": 3, "method": "blob.download",
                     "params": {"name": "n"}}),
            ("#", "the plugin's stream id is bound: 8 here, whatever it chose"),
            ("<--", {"jsonrpc": "2.0", "id": 3, "result": {
                "size": size, "data": {"$stream": 8, "mode": "read"}}}),
            ("<--", {"jsonrpc": "2.0", "method": "$/stream.credit", "params": {
                "stream": 8, "bytes": 5}}),
        ]
        for chunk in chunks:
            out.append(("<--", ({"jsonrpc": "2.0", "method": "$/stream.data", "params": {
                "stream": 8, "data": {"$bytes": 0}}}, [chunk])))
        out += [("<--", {"jsonrpc": "2.0", "method": "$/stream.end", "params": {"stream": 8}}),
                ("-->", {"jsonrpc": "2.0", "method": "$/stream.credit", "params": {
                    "stream": 8, "bytes": 100}})]
        return out

    def test_stream_rules(self) -> None:
        # Rules (b), (c), (d): a bound stream id, the plugin's credit skipped (here one the
        # plugin never sends), data in three chunks where the plugin writes one.
        self.run_sample(self.blob_download([b"hel", b"lo, wo", b"rld"], 12), plugin="blob",
                        caps={"streams": {}, "attachments": {}})

    def test_rejects_wrong_stream_data(self) -> None:
        middle = self.blob_download([b"hello, world"], 12)
        middle[-3] = ("<--", ({"jsonrpc": "2.0", "method": "$/stream.data", "params": {
            "stream": 8, "data": {"$bytes": 0}}}, [b"hello, WORLD"]))
        with self.assertRaises(ReplayError):
            self.run_sample(middle, plugin="blob", caps={"streams": {}})

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
