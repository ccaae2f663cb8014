"""A small Tether host for the tests: spawns a plugin and speaks frames to it over pipes.

It reads the plugin's stdout in strict mode (SPEC.md §2.7): any byte that is not part of a
frame in exactly the writer form of §2.2 is recorded as a violation and fails the test.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import subprocess
import threading
import time
from typing import Any

# The interpreter that runs the plugins; TETHER_TEST_PYTHON=python3.9 checks another version.
PYTHON = os.environ.get("TETHER_TEST_PYTHON", "/usr/bin/python3")
EXAMPLES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(EXAMPLES, "tests")
COOKIE = ("TETHER_MAGIC_COOKIE", "7c1e4b9a-tether-reference-plugin")
TIMEOUT = 10.0  # generous: the machine may be busy; tests of deadlines use their own


_compiled = False


def precompile() -> None:
    """Compile tether.py into __pycache__ once, with the interpreter that runs the plugins, so
    that each plugin start does not compile it again (PYTHONDONTWRITEBYTECODE, set in some
    environments, stops the interpreter from writing that cache itself; it still reads it)."""
    global _compiled
    if not _compiled:
        subprocess.run([PYTHON, "-m", "py_compile", os.path.join(EXAMPLES, "tether.py")],
                       check=True)
        _compiled = True


def encode(obj: Any, parts: list[bytes] | None = None) -> bytes:
    """A frame in the writer form of §2.2, or of §2.8 when it has attachments."""
    body = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    if parts is None:
        return b"Content-Length: %d\r\n\r\n" % len(body) + body
    return (b"Content-Length: %d\r\nTether-Attachments: %s\r\n\r\n"
            % (len(body) + sum(map(len, parts)), ",".join(str(len(p)) for p in parts).encode())
            + body + b"".join(parts))


class Msg(dict):
    """A message the plugin wrote; ``parts`` are its attachments (SPEC.md §2.8)."""

    parts: list[bytes] = []


def resolve(value: Any, parts: list[bytes]) -> Any:
    """``value`` with every ``{"$bytes": i}`` made the bytes of attachment i, and every
    base64 string left as it is."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return parts[value["$bytes"]]
        return {k: resolve(v, parts) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, parts) for v in value]
    return value


def data_of(msg: dict[str, Any]) -> bytes:
    """The bytes of a ``$/stream.data``, written as base64 or as an attachment."""
    data = msg["params"]["data"]
    if isinstance(data, str):
        return base64.b64decode(data, validate=True)
    return msg.parts[data["$bytes"]]  # type: ignore[attr-defined]


class EOF:
    """Marker: the plugin closed its stdout."""


class Violation(str):
    """Marker: bytes on stdout that are not a strict frame."""


class Plugin:
    """A plugin process with a strict frame reader on its stdout and stderr collected."""

    def __init__(self, script: str, cookie: bool = True, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        environ = dict(os.environ)
        environ.pop(COOKIE[0], None)
        if cookie:
            environ[COOKIE[0]] = COOKIE[1]
        environ.update(env or {})
        path = script if os.path.isabs(script) else os.path.join(EXAMPLES, script)
        self.proc = subprocess.Popen([PYTHON, path, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=environ, cwd=EXAMPLES)
        self.frames: queue.Queue[Any] = queue.Queue()
        self.stderr = bytearray()
        self.notifications: list[dict[str, Any]] = []
        self.next_id = 1
        # Set once the plugin's initialize answer announced attachments: only then may its
        # frames carry them (§2.8.3), and only right after Content-Length (§2.8.6).
        self.attachments = False
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._threads:
            t.start()

    # ---- reading ---------------------------------------------------------------------

    def _read_stdout(self) -> None:
        f = self.proc.stdout
        assert f is not None
        while True:
            start = f.read(16)
            if not start:
                self.frames.put(EOF)
                return
            if start != b"Content-Length: ":
                return self._violation(start + f.read1(512))
            digits = b""
            while True:
                c = f.read(1)
                if c == b"\r" or not c or len(digits) > 12:
                    break
                digits += c
            if not digits.isdigit() or (digits.startswith(b"0") and digits != b"0"):
                return self._violation(b"Content-Length: " + digits + c)
            rest = f.read(3)
            lengths: list[int] = []
            if rest != b"\n\r\n":
                line = rest[1:] + f.readline(4096)
                name = b"Tether-Attachments: "
                listed = line[len(name):-2].split(b",")
                if not (self.attachments and rest[:1] == b"\n" and line.startswith(name)
                        and line.endswith(b"\r\n") and f.read(2) == b"\r\n"
                        and all(x.isdigit() and (x == b"0" or not x.startswith(b"0"))
                                for x in listed)):
                    return self._violation(b"Content-Length: " + digits + c + rest + line)
                lengths = [int(x) for x in listed]
            total = int(digits)
            data = f.read(total)
            if len(data) != total or sum(lengths) > total:
                return self._violation(b"truncated body: " + data[:200])
            at = total - sum(lengths)
            body, parts = data[:at], []
            for n in lengths:
                parts.append(data[at: at + n])
                at += n
            try:
                msg = Msg(json.loads(body.decode("utf-8")))
            except (UnicodeDecodeError, ValueError, TypeError):
                return self._violation(b"body is not a UTF-8 JSON object: " + body[:200])
            msg.parts = parts
            if "result" in msg and isinstance(msg["result"], dict) and "attachments" in \
                    msg["result"].get("capabilities", {}) and "protocolVersion" in msg["result"]:
                self.attachments = True
            self.frames.put(msg)

    def _violation(self, data: bytes) -> None:
        self.frames.put(Violation(f"stdout is not strict frames (SPEC.md §2.7): {data!r}"))

    def _read_stderr(self) -> None:
        f = self.proc.stderr
        assert f is not None
        while True:
            chunk = f.read1(65536)
            if not chunk:
                return
            self.stderr += chunk

    def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next frame from the plugin."""
        try:
            msg = self.frames.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no frame from the plugin within {timeout} s; stderr:\n"
                                 + self.stderr_text()) from None
        if msg is EOF:
            self.frames.put(EOF)
            raise AssertionError("the plugin closed stdout; stderr:\n" + self.stderr_text())
        if isinstance(msg, Violation):
            raise AssertionError(str(msg))
        return msg

    def recv_n(self, n: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        return [self.recv(timeout) for _ in range(n)]

    def expect_silence(self, duration: float = 0.2) -> None:
        """Nothing arrives on stdout for ``duration`` seconds."""
        try:
            msg = self.frames.get(timeout=duration)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected frame: {msg!r}")

    def response(self, rid: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The response to ``rid``; notifications before it are kept in ``notifications``."""
        while True:
            msg = self.recv(timeout)
            if "method" in msg and "id" not in msg:
                self.notifications.append(msg)
                continue
            if msg.get("id") != rid or type(msg.get("id")) is not type(rid):
                raise AssertionError(f"expected the response to {rid!r}, got {msg!r}")
            return msg

    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    def wait_stderr(self, text: str, timeout: float = TIMEOUT) -> str:
        """Wait until ``text`` shows on stderr (read by another thread); all of stderr."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr_text():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on stderr:\n{self.stderr_text()}")
            time.sleep(0.005)
        return self.stderr_text()

    # ---- writing ---------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, obj: Any, parts: list[bytes] | None = None) -> None:
        self.send_raw(encode(obj, parts))

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def request(self, method: str, params: dict[str, Any] | None = None,
                rid: Any = None) -> Any:
        """Send a request; its id."""
        rid = self.new_id() if rid is None else rid
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return rid

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its response (the whole message)."""
        return self.response(self.request(method, {} if params is None else params))

    def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        msg = self.call(method, params)
        if "result" not in msg:
            raise AssertionError(f"{method} failed: {msg!r}")
        return msg["result"]

    def error(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        msg = self.call(method, params)
        if "error" not in msg:
            raise AssertionError(f"{method} did not fail: {msg!r}")
        return msg["error"]

    def reply(self, rid: Any, result: dict[str, Any]) -> None:
        self.send({"jsonrpc": "2.0", "id": rid, "result": result})

    def initialize(self, interfaces: dict[str, list[int]] | None = None,
                   log_level: str = "info", max_frame: int = 33554432,
                   capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        """Initialize; the response message."""
        return self.call("tether/initialize", {
            "protocolVersions": [1], "interfaces": interfaces or {"kv": [1, 2]},
            "host": {"name": "python-tests", "version": "0"},
            "capabilities": capabilities or {}, "maxFrameSize": max_frame,
            "logLevel": log_level})

    # ---- ending ----------------------------------------------------------------------

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def expect_exit(self, status: int = 0, within: float = 2.0,
                    ignore: Any = None) -> float:
        """Wait for the exit; check its status and that stdout ended cleanly (frames for which
        ``ignore`` says True excepted). The time taken."""
        start = time.monotonic()
        try:
            got = self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the plugin did not exit within {within} s; stderr:\n"
                                 + self.stderr_text()) from None
        elapsed = time.monotonic() - start
        for t in self._threads:
            t.join(timeout=TIMEOUT)
        if got != status:
            raise AssertionError(f"exit status {got}, expected {status}; stderr:\n"
                                 + self.stderr_text())
        leftover = []
        while True:
            msg = self.frames.get_nowait()
            if msg is EOF:
                break
            if ignore is None or isinstance(msg, Violation) or not ignore(msg):
                leftover.append(msg)
        if leftover:
            raise AssertionError(f"frames left on stdout at exit: {leftover!r}")
        return elapsed

    def shutdown(self) -> None:
        """The clean end of a session: shutdown, close stdin, exit 0 within 2 s."""
        self.assert_result(self.call("tether/shutdown"), {})
        self.close_stdin()
        self.expect_exit(0)

    def assert_result(self, msg: dict[str, Any], result: Any) -> None:
        if msg.get("result") != result:
            raise AssertionError(f"expected result {result!r}, got {msg!r}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if f:
                    f.close()
            except OSError:
                pass
