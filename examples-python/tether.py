"""Tether plugin SDK for Python: one file, standard library only, Python 3.9 or later.

Copy this file next to your plugin. A plugin declares its interfaces and calls :func:`serve`::

    import tether

    def greet(name: str) -> dict:
        return {"text": f"hello, {name}"}

    V1 = {"greet": ({"name": str}, {"text": str})}      # method: (params, result)
    tether.serve("greeter", "0.1.0", tether.Interface("greeter", {1: V1}, globals()))

Section numbers (``§2.5``) refer to ``spec/SPEC.md``, the Tether protocol, version 1. The SDK:

* checks the magic cookie before it reads stdin, and exits 1 with a sentence on stderr when the
  program was not started by a host (§1.3);
* keeps a private copy of stdout for frames and points file descriptors 1 (and 0) away from the
  pipes, so ``print``, ``input`` and child processes cannot break the stream (§8.4);
* reads and writes ``Content-Length`` frames, bounded and self-resynchronising (§2);
* negotiates the core and interface versions and answers with the method schemas (§4);
* runs a handler on the reading thread and hands the reading to another thread (reused, not
  created per call) as soon as the handler waits for the host (a callback through a handle,
  §6) or runs past 2 ms, so a handler never stops other requests from being served for long,
  and quick handlers cost no thread hand-off (§3.7);
* converts params: a bytes value (the spec's Bytes schema, :data:`BYTES_SCHEMA`, or
  ``{"type": "string", "contentEncoding": "base64"}``) becomes ``bytes``, a handle becomes a
  :class:`RemoteHandle` you can call, and bad params are answered -32602; ``bytes`` in results
  are sent as base64;
* reads an application's interface file (``spec/interfaces/kv.json``):
  :meth:`Interface.from_file` serves its versions with the file's schemas, not repeated in code;
* negotiates attachments (§2.8): when the host announces them, every ``bytes`` value travels
  raw after the JSON of its frame (``{"$bytes": i}``), written with ``writev`` without a copy,
  and frames with attachments are read bounded by the maximum frame size; base64 keeps
  working, and handlers see ``bytes`` either way;
* negotiates streams (§12): a ``tether.stream("read")`` parameter is a :class:`StreamReader`
  (a binary file and an iterator of chunks), ``tether.stream("write")`` a
  :class:`StreamWriter`, and a :class:`Stream` in a result is sent after the answer, all with
  credit-based flow control: never more than granted, credit granted as the handler reads,
  at most a window buffered per stream, aborts on early return, cancel and session end;
* cancels a handler on ``$/cancelRequest`` and cancels the calls it was waiting for (§7);
* reports progress (§14): ``tether.current().progress(done, total, message)`` sends
  ``$/progress`` when the caller gave ``_meta.progressToken`` (and does nothing otherwise);
  ``request(..., on_progress=f)`` asks the host for progress, and its time-out restarts on each;
  ``_meta`` is taken out of params before they are checked;
* takes trace context (§15): a valid ``_meta.traceparent`` gives the handler's
  :class:`Call` ``trace_id``, a new ``span_id`` and ``parent_span_id`` (the caller's span),
  and its ``$/log`` and the requests it makes carry them;
* forwards :func:`log` and, once your program imports it, the ``logging`` module to ``$/log``
  at the session's level (§8);
* exits 0 when stdin closes (§1.6);
* speaks the ``fds`` transport when the host announces it in ``TETHER_TRANSPORT`` (§13): frames
  on two inherited descriptors, stdin, stdout and stderr left alone (the user's terminal).

Start-up cost matters for a plugin (a host may start one per task), so this module imports only
modules that are built into the interpreter: ``_thread`` instead of ``threading`` (about 3 ms),
CPython's ``_json`` accelerator instead of ``json`` (about 6 ms, because ``json`` imports
``re``; the ``json`` package is the fallback on other interpreters), and it bridges ``logging``
(about 8 ms) only when the plugin itself imports it.
"""

from __future__ import annotations

import binascii
import os
import sys
import time
from _collections import deque as _deque
from _thread import allocate_lock, get_ident, start_new_thread

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - for type checkers only; `typing` costs ~10 ms to import
    from typing import Any, Callable, Iterable, Mapping

__all__ = [
    "REFERENCE_COOKIE",
    "Call",
    "Cancelled",
    "Error",
    "Export",
    "BYTES_SCHEMA",
    "Interface",
    "InterfaceFileError",
    "RemoteError",
    "RemoteHandle",
    "Stream",
    "StreamError",
    "StreamReader",
    "StreamWriter",
    "current",
    "handle",
    "log",
    "log_enabled",
    "notify",
    "request",
    "schema",
    "serve",
    "stream",
]

#: The cookie of the reference interfaces, the examples and the conformance binary (§1.4).
REFERENCE_COOKIE = ("TETHER_MAGIC_COOKIE", "7c1e4b9a-tether-reference-plugin")
#: The core protocol versions this SDK speaks (§10.1).
PROTOCOL_VERSIONS = (1,)
#: The maximum body length until the host announces its own (§2.5).
DEFAULT_MAX_FRAME_SIZE = 33554432
#: The smallest ``maxFrameSize`` a host may announce (§2.5).
MIN_MAX_FRAME_SIZE = 1048576
#: The longest header block a reader accepts (§2.3).
MAX_HEADER_BLOCK = 4096
#: The credit a consumer grants on each stream before any ``$/stream.credit`` (§12.3).
DEFAULT_INITIAL_CREDIT = 1048576
#: The largest stream chunk this SDK writes (shared decision of the SDKs).
MAX_CHUNK = 1048576

_LEVELS = {"trace": 0, "debug": 1, "info": 2, "warn": 3, "error": 4}
_LEVEL_ALIASES = {"warning": "warn"}
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_MISSING: Any = object()


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class Error(Exception):
    """An error answered to the peer as is: raise it from a handler (§3.4.4, §5.5).

    Application interfaces use codes outside -32768..-32000, for example
    ``raise tether.Error(1001, f"key not found: {key}", {"key": key})``.
    """

    def __init__(self, code: int, message: str, data: Any = _MISSING) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        """The ``error`` member of a response."""
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not _MISSING:
            err["data"] = self.data
        return err


class InterfaceFileError(Exception):
    """An interface file that :meth:`Interface.from_file` cannot serve, with the file and the
    cause in its message."""


class Cancelled(Error):
    """The request being handled was cancelled (§7); answered -32800 when a handler lets it out.

    Raised by :meth:`Call.check` and by a call to the host that was waiting when the cancel came.
    """

    def __init__(self, message: str = "request cancelled") -> None:
        super().__init__(-32800, message)


class RemoteError(Exception):
    """The host answered a call of ours (:func:`request`, :meth:`RemoteHandle.invoke`) with an
    error. A handler that lets it out answers its own request -32603, naming the cause."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        self.method = method
        self.code: int = error.get("code", -32603)
        self.message: str = str(error.get("message", ""))
        self.data: Any = error.get("data", _MISSING)
        super().__init__(f"{method} failed: {self.message} (code {self.code})")

    def to_json(self) -> dict[str, Any]:
        """The host's error object."""
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not _MISSING:
            err["data"] = self.data
        return err


class _Invalid(Exception):
    """A params value that does not match its schema (answered -32602)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path or 'params'}: {reason}")
        self.path = path
        self.reason = reason


def _report(message: str) -> None:
    """Write one line for a human to stderr, where the host shows it (§8.3)."""
    try:
        os.write(2, ("tether: " + message + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def _shown(data: bytes | bytearray, total: int | None = None) -> str:
    """Bytes for a report: escaped and shortened to at most 512 bytes (§2.6)."""
    total = len(data) if total is None else total
    return repr(bytes(data[:512])) + (" ..." if total > 512 else "") + f" ({total} bytes)"


# --------------------------------------------------------------------------------------------
# JSON (RFC 8259), with bytes written as base64 (§5.3)
# --------------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Per thread, while it encodes a frame once attachments are negotiated: the frame's
# attachments so far (§2.8). The JSON encoder's hook has no other way to reach them.
_attaching: dict[int, list[Any]] = {}
# Per thread, while it converts the params of a frame that had attachments: those attachments.
_reading_parts: dict[int, list[memoryview]] = {}


def _to_json(o: Any) -> Any:
    """Encoder hook for values JSON does not know: bytes become base64 (or an attachment once
    negotiated), handles and streams their objects."""
    if isinstance(o, (bytes, bytearray, memoryview)):
        parts = _attaching.get(get_ident())
        if parts is None:
            return binascii.b2a_base64(o, newline=False).decode("ascii")
        # Written later, maybe by another thread: immutable values go as they are (no copy).
        if type(o) is not bytes and not (type(o) is memoryview and o.readonly and o.ndim == 1
                                         and o.itemsize == 1):
            o = bytes(o)
        parts.append(o)
        return {"$bytes": len(parts) - 1}
    if isinstance(o, (RemoteHandle, Export)):
        return o._wire()
    if isinstance(o, Stream):
        session = _session
        if session is None or not session.streams_on:
            raise TypeError("a stream can be sent only when the host announced the streams "
                            "capability (SPEC.md §12)")
        return session._open(o)
    raise TypeError(f"a {type(o).__name__} cannot be sent as JSON")


try:  # CPython's C accelerator: the `json` package minus its ~6 ms of imports.
    from _json import encode_basestring_ascii as _c_str
    from _json import make_encoder as _c_make_encoder
    from _json import make_scanner as _c_make_scanner

    class _ScanContext:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = staticmethod(_reject_constant)

    _scan = _c_make_scanner(_ScanContext)
    _iterencode = _c_make_encoder(None, _to_json, _c_str, None, ":", ",", False, False, False)

    def _loads(text: str) -> Any:
        start = len(text) - len(text.lstrip(" \t\n\r")) if text[:1] in " \t\n\r" else 0
        try:
            value, end = _scan(text, start)
        except Exception:  # noqa: BLE001 - any failure is a parse error; explained below
            value, end = _MISSING, -1
        if end != len(text) and (end < 0 or text[end:].strip(" \t\n\r")):
            import json  # only on the error path: gives the precise reason

            json.loads(text, parse_constant=_reject_constant)
            raise ValueError("extra data after the JSON value")
        return value

    def _dumps(obj: Any) -> bytes:
        return "".join(_iterencode(obj, 0)).encode("ascii")

except ImportError:  # another interpreter: the `json` package does the same work
    import json

    _decoder = json.JSONDecoder(parse_constant=_reject_constant)
    _encoder = json.JSONEncoder(
        separators=(",", ":"), allow_nan=False, check_circular=False, default=_to_json
    )

    _scan = _decoder.raw_decode

    def _loads(text: str) -> Any:
        return _decoder.decode(text)

    def _dumps(obj: Any) -> bytes:
        return _encoder.encode(obj).encode("ascii")


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64decode(text: str) -> bytes:
    """Decode standard, padded base64 without line breaks (§5.3); ValueError otherwise."""
    if len(text) % 4:
        raise ValueError("its length is not a multiple of 4 (padded base64 expected)")
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("it holds a character outside the base64 alphabet") from None
    core = raw.rstrip(b"=")
    if len(raw) - len(core) > 2 or core.translate(None, _B64_ALPHABET):
        raise ValueError("it holds a character outside the base64 alphabet or misplaced padding")
    return binascii.a2b_base64(raw)


# --------------------------------------------------------------------------------------------
# Schemas: the shorthand of Interface declarations, and params checking and conversion (§5.2)
# --------------------------------------------------------------------------------------------

#: The spec's schema of a bytes value (``spec/interfaces/*.json``, ``#/$defs/Bytes``): base64,
#: or, once attachments are negotiated, ``{"$bytes": i}`` (§2.8). Declared as it is, so that a
#: plugin accepts exactly what an interface file allows.
BYTES_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "contentEncoding": "base64"},
        {
            "type": "object",
            "properties": {"$bytes": {"type": "integer", "minimum": 0}},
            "required": ["$bytes"],
            "additionalProperties": False,
        },
    ],
}

_SHORTHAND: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    bytes: BYTES_SCHEMA,
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    dict: {"type": "object"},
    list: {"type": "array"},
    type(None): {"type": "null"},
    object: {},
}


def handle(interface: str) -> dict[str, Any]:
    """The schema of a handle parameter (§6.1): the handler receives a :class:`RemoteHandle`.

    ``{"key": str, "adder": tether.handle("adder")}``
    """
    return {
        "type": "object",
        "properties": {
            "$handle": {"type": "string", "minLength": 1},
            "interface": {"type": "string", "const": interface},
        },
        "required": ["$handle", "interface"],
        "additionalProperties": False,
    }


def schema(spec: Any) -> dict[str, Any]:
    """Turn a schema shorthand into a JSON Schema (draft 2020-12).

    * ``str``, ``bytes`` (base64 on the wire), ``int`` (64-bit), ``float``, ``bool``, ``dict``,
      ``list``, ``None`` and ``object`` (anything);
    * a dict of members, ``{"key": str, "limit?": int}``: an object; a name ending in ``?`` is
      optional, every other member is required;
    * a JSON Schema, recognised by its ``type`` member (or ``$ref``, ``anyOf``, ``oneOf``,
      ``allOf``, ``const``, ``enum``), is used as it is.
    """
    if spec is None:
        spec = type(None)
    if isinstance(spec, type):
        if spec not in _SHORTHAND:
            raise TypeError(f"no JSON Schema shorthand for {spec.__name__}")
        return _json_copy(_SHORTHAND[spec])
    if isinstance(spec, dict):
        if isinstance(spec.get("type"), (str, list)) or not _SCHEMA_WORDS.isdisjoint(spec):
            return spec
        props: dict[str, Any] = {}
        required: list[str] = []
        for name, member in spec.items():
            if name.endswith("?"):
                name = name[:-1]
            else:
                required.append(name)
            props[name] = schema(member)
        out: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            out["required"] = required
        return out
    raise TypeError(f"not a schema: {spec!r}")


_SCHEMA_WORDS = frozenset(("$ref", "anyOf", "oneOf", "allOf", "const", "enum"))


def _json_copy(v: Any) -> Any:
    """A deep copy of a JSON value (so a declaration cannot change the shared shorthands)."""
    if type(v) is dict:
        return {k: _json_copy(x) for k, x in v.items()}
    if type(v) is list:
        return [_json_copy(x) for x in v]
    return v


def _json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values (``True`` is not ``1``)."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            _json_equal(a[k], b[k]) for k in a
        )
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_json_equal, a, b))
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b


_TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int and _I64_MIN <= v <= _I64_MAX,
    "number": lambda v: type(v) in (int, float),
    "boolean": lambda v: type(v) is bool,
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "null": lambda v: v is None,
}
_TYPE_WORDS = {"string": "a string", "integer": "an integer (64-bit, no fraction)",
               "number": "a number", "boolean": "a boolean", "object": "an object",
               "array": "an array", "null": "null"}


class _Scope:
    """The schema document a method schema's ``$ref`` pointers resolve in (its root), and the
    converters of the targets already compiled (so a recursive schema compiles once)."""

    __slots__ = ("root", "compiled")

    def __init__(self, root: Any) -> None:
        self.root = root
        self.compiled: dict[str, Callable[[Any, str], Any]] = {}

    def resolve(self, ref: Any) -> Any:
        """The schema a local reference (``#/$defs/Bytes``) points at; ValueError otherwise."""
        if type(ref) is not str or (ref != "#" and not ref.startswith("#/")):
            raise ValueError(f"$ref {ref!r} is not a local reference (#/...) to follow")
        node = self.root
        for part in ref[2:].split("/") if ref != "#" else []:
            key = part.replace("~1", "/").replace("~0", "~")
            if type(node) is dict and key in node:
                node = node[key]
            elif type(node) is list and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise ValueError(f"$ref {ref!r} points at nothing in its schema")
        if node is not True and type(node) is not dict:
            raise ValueError(f"$ref {ref!r} points at {node!r}, not a schema")
        return node

    def converter(self, ref: str) -> Callable[[Any, str], Any]:
        """The converter of a ``$ref`` target, compiled once; a cycle goes through a forwarder."""
        known = self.compiled.get(ref)
        if known is not None:
            return known
        target = self.resolve(ref)
        done: list[Callable[[Any, str], Any]] = []

        def forward(v: Any, path: str) -> Any:
            return done[0](v, path)

        self.compiled[ref] = forward
        done.append(_compile(target if type(target) is dict else {}, self))
        self.compiled[ref] = done[0]
        return done[0]

    def target(self, s: Any) -> Any:
        """``s`` with a bare ``$ref`` (nothing but annotations beside it) followed."""
        for _ in range(32):
            if type(s) is not dict or "$ref" not in s or len(_keywords(s)) > 1:
                return s
            s = self.resolve(s["$ref"])
        return s


_ANNOTATIONS = frozenset(("description", "title", "$schema", "$comment", "$id", "$defs",
                          "definitions", "examples", "default", "deprecated", "readOnly",
                          "writeOnly", "format", "contentMediaType"))


def _keywords(s: dict[str, Any]) -> list[str]:
    return [k for k in s if k not in _ANNOTATIONS]


def _bytes_branch(s: Any, scope: _Scope) -> dict[str, Any] | None:
    """The base64 branch of the spec's Bytes schema (``anyOf``/``oneOf`` of a base64 string
    and an attachment reference ``{"$bytes": i}``), when ``s`` is that schema."""
    branches = s.get("anyOf", s.get("oneOf")) if type(s) is dict else None
    if type(branches) is not list or len(branches) != 2 or len(_keywords(s)) != 1:
        return None
    b64 = ref = None
    for branch in branches:
        branch = scope.target(branch)
        if type(branch) is not dict:
            return None
        props = branch.get("properties")
        if branch.get("contentEncoding") == "base64" and branch.get("type") == "string":
            b64 = branch
        elif type(props) is dict and "$bytes" in props:
            ref = branch
    return b64 if b64 is not None and ref is not None else None


def _union_converter(branches: list[Callable[[Any, str], Any]], tests: list[Any],
                     exactly_one: bool) -> Callable[[Any, str], Any]:
    """``anyOf`` (the first branch that accepts the value converts it) or ``oneOf`` (exactly
    one branch may accept it). A refusal names the reason of the one branch whose type fits
    the value, or every branch's."""
    def convert(v: Any, path: str) -> Any:
        out: Any = _MISSING
        reasons: list[tuple[bool, str]] = []
        for i, branch in enumerate(branches):
            try:
                got = branch(v, path)
            except _Invalid as e:
                fits = tests[i] is None or tests[i](v)
                reasons.append((fits, e.reason))
                continue
            if out is _MISSING:
                out = got
                if not exactly_one:
                    return out
            else:
                raise _Invalid(path, "matches more than one alternative of a oneOf")
        if out is not _MISSING:
            return out
        fitting = [r for fits, r in reasons if fits]
        if len(fitting) == 1:
            raise _Invalid(path, fitting[0])
        raise _Invalid(path, "matches none of the alternatives: "
                       + "; ".join(f"({i + 1}) {r}" for i, (_, r) in enumerate(reasons)))

    return convert


def _type_test(s: Any) -> Callable[[Any], bool] | None:
    """Whether a value has one of the types a schema names (None: it names none)."""
    types = s.get("type") if type(s) is dict else None
    if types is None:
        return None
    tests = [_TYPE_TESTS[t] for t in ([types] if type(types) is str else types)
             if t in _TYPE_TESTS]
    return lambda v: any(t(v) for t in tests)


def _compile(s: dict[str, Any], scope: _Scope | None = None) -> Callable[[Any, str], Any]:
    """Compile a JSON Schema (the subset SDK users need) into ``convert(value, path)``.

    It checks ``type``, ``enum``, ``const``, ``minLength``, ``maxLength``, ``minimum``,
    ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``properties``, ``required``,
    ``additionalProperties``, ``items``, ``minItems``, ``maxItems``, ``allOf``, ``anyOf``,
    ``oneOf`` and local ``$ref`` (``#/$defs/...`` in the schema's root, the method schema);
    other keywords are annotations. It returns the value with bytes (base64, or an attachment
    reference) made ``bytes`` and handles made into :class:`RemoteHandle` objects, and raises
    :class:`_Invalid` on a mismatch; ValueError for a ``$ref`` it cannot follow.
    """
    if scope is None:
        scope = _Scope(s)
    props = s.get("properties")
    if isinstance(props, dict) and "$handle" in props:
        iface = scope.target(props.get("interface", {})).get("const")
        return _handle_converter(iface)
    if isinstance(props, dict) and "$stream" in props:
        return _stream_converter(scope.target(props.get("mode", {})).get("const"))
    if isinstance(props, dict) and "$bytes" in props:
        return lambda v, path: _attachment(v, path) if type(v) is dict else _attachment({}, path)
    b64 = _bytes_branch(s, scope)
    if b64 is not None:
        return _compile(b64, scope)
    if s.get("type") == "string" and set(_keywords(s)) <= _STRING_WORDS:
        return _string_converter(s.get("minLength"), s.get("maxLength"))
    steps: list[Callable[[Any, str], Any]] = []
    if "$ref" in s:
        steps.append(scope.converter(s["$ref"]))
    for sub in s.get("allOf") or ():
        if type(sub) is dict:
            steps.append(_compile(sub, scope))
    types = s.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        tests = [_TYPE_TESTS[t] for t in names if t in _TYPE_TESTS]
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in names)
        if len(tests) == 1:
            test = tests[0]

            def check_type(v: Any, path: str) -> Any:
                if not test(v):
                    raise _Invalid(path, f"expected {words}")
                return v
        else:

            def check_type(v: Any, path: str) -> Any:
                if not any(t(v) for t in tests):
                    raise _Invalid(path, f"expected {words}")
                return v

        steps.append(check_type)
    if "enum" in s:
        options = list(s["enum"])

        def check_enum(v: Any, path: str) -> Any:
            if not any(_json_equal(v, o) for o in options):
                raise _Invalid(path, f"expected one of {options!r}")
            return v

        steps.append(check_enum)
    if "const" in s:
        const = s["const"]

        def check_const(v: Any, path: str) -> Any:
            if not _json_equal(v, const):
                raise _Invalid(path, f"expected {const!r}")
            return v

        steps.append(check_const)
    for word, kind, holds, what in _BOUNDS:
        if word in s:
            steps.append(_bound(kind, s[word], holds, what))
    for word in ("anyOf", "oneOf"):
        branches = s.get(word)
        if type(branches) is list and branches:
            steps.append(_union_converter(
                [_compile(b if type(b) is dict else {}, scope) for b in branches],
                [_type_test(scope.target(b)) for b in branches], word == "oneOf"))
    if isinstance(props, dict) or "required" in s or "additionalProperties" in s:
        steps.append(_object_converter(s, scope))
    if isinstance(s.get("items"), dict):
        item = _compile(s["items"], scope)

        def convert_items(v: Any, path: str) -> Any:
            if type(v) is list:
                return [item(x, f"{path}[{i}]") for i, x in enumerate(v)]
            return v

        steps.append(convert_items)
    if s.get("contentEncoding") == "base64":

        def decode(v: Any, path: str) -> Any:
            if type(v) is str:
                try:
                    return _b64decode(v)
                except ValueError as e:
                    raise _Invalid(path, f"not valid base64: {e}") from None
            return v

        steps.append(decode)
    if not steps:
        return lambda v, path: v
    if len(steps) == 1:
        run = steps[0]
    else:

        def run(v: Any, path: str) -> Any:
            for step in steps:
                v = step(v, path)
            return v

    if s.get("contentEncoding") != "base64":
        return run

    def bytes_value(v: Any, path: str) -> Any:  # base64, or an attachment (§2.8.2)
        return _attachment(v, path) if type(v) is dict else run(v, path)

    return bytes_value


def _attachment(v: dict[str, Any], path: str) -> bytes:
    """The bytes of ``{"$bytes": i}`` in the frame being converted; _Invalid otherwise."""
    i = v.get("$bytes")
    if len(v) != 1 or type(i) is not int or i < 0:
        raise _Invalid(path, 'expected base64 or an attachment reference {"$bytes": i}')
    parts = _reading_parts.get(get_ident()) or ()
    if i >= len(parts):
        raise _Invalid(path, f'{{"$bytes": {i}}} but the frame has {len(parts)} attachments')
    return bytes(parts[i])


def _resolve_attachments(value: Any, parts: list[memoryview]) -> Any:
    """``value`` with every ``{"$bytes": i}`` made ``bytes`` (a response has no schema here);
    ValueError for a reference to an attachment the frame does not have."""
    if type(value) is dict:
        if len(value) == 1 and "$bytes" in value:
            i = value["$bytes"]
            if type(i) is int and 0 <= i < len(parts):
                return bytes(parts[i])
            raise ValueError(f'{{"$bytes": {i!r}}} but the frame has {len(parts)} attachments')
        return {k: _resolve_attachments(v, parts) if type(v) in (dict, list) else v
                for k, v in value.items()}
    if type(value) is list:
        return [_resolve_attachments(v, parts) if type(v) in (dict, list) else v for v in value]
    return value


_BOUNDS: list[tuple[str, Any, Callable[[Any, Any], bool], str]] = [
    ("minLength", str, lambda v, n: len(v) >= n, "at least {} characters"),
    ("maxLength", str, lambda v, n: len(v) <= n, "at most {} characters"),
    ("minimum", (int, float), lambda v, n: v >= n, "at least {}"),
    ("maximum", (int, float), lambda v, n: v <= n, "at most {}"),
    ("exclusiveMinimum", (int, float), lambda v, n: v > n, "above {}"),
    ("exclusiveMaximum", (int, float), lambda v, n: v < n, "below {}"),
    ("minItems", list, lambda v, n: len(v) >= n, "at least {} items"),
    ("maxItems", list, lambda v, n: len(v) <= n, "at most {} items"),
]


# A string with length bounds at most (keys, names, ...): one step instead of three.
_STRING_WORDS = {"type", "minLength", "maxLength"}


def _string_converter(least: Any, most: Any) -> Callable[[Any, str], Any]:
    """What the general steps check for ``{"type": "string"}`` with ``minLength`` and
    ``maxLength`` (either may be absent), with the same messages, in one function."""
    if least is None:
        least = 0
    too_short = "expected " + _BOUNDS[0][3].format(least)
    too_long = None if most is None else "expected " + _BOUNDS[1][3].format(most)

    def check_string(v: Any, path: str) -> Any:
        if type(v) is not str:
            raise _Invalid(path, "expected " + _TYPE_WORDS["string"])
        if not len(v) >= least:
            raise _Invalid(path, too_short)
        if too_long is not None and not len(v) <= most:
            raise _Invalid(path, too_long)
        return v

    return check_string


def _bound(kind: Any, limit: Any, test: Callable[[Any, Any], bool], what: str
           ) -> Callable[[Any, str], Any]:
    def check(v: Any, path: str) -> Any:
        if isinstance(v, kind) and not isinstance(v, bool) and not test(v, limit):
            raise _Invalid(path, "expected " + what.format(limit))
        return v

    return check


def _object_converter(s: dict[str, Any], scope: _Scope) -> Callable[[Any, str], Any]:
    members = _member_converters(s, scope)
    extra = s.get("additionalProperties", True)
    extra_conv = _compile(extra, scope) if isinstance(extra, dict) else None

    def convert(v: Any, path: str) -> Any:
        if type(v) is not dict:
            return v
        out = v
        for name, required, conv in members:
            item = v.get(name, _MISSING)
            if item is _MISSING:
                if required:
                    raise _Invalid(_join(path, name), "missing")
                continue
            new = conv(item, _join(path, name))
            if new is not item:
                if out is v:
                    out = dict(v)
                out[name] = new
        if extra is not True:
            known = {m[0] for m in members}
            for name in v:
                if name not in known:
                    if extra_conv is None:
                        raise _Invalid(_join(path, name), "unexpected member")
                    extra_conv(v[name], _join(path, name))
        return out

    return convert


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _member_converters(s: dict[str, Any], scope: _Scope | None = None
                       ) -> list[tuple[str, bool, Callable[[Any, str], Any]]]:
    scope = _Scope(s) if scope is None else scope
    props = s.get("properties") or {}
    required = set(s.get("required") or ())
    out = [(name, name in required, _compile(sub if type(sub) is dict else {}, scope))
           for name, sub in props.items()]
    out += [(name, True, lambda v, path: v) for name in required if name not in props]
    return out


def _handle_converter(interface: str | None) -> Callable[[Any, str], Any]:
    def convert(v: Any, path: str) -> Any:
        if type(v) is not dict or v.keys() != {"$handle", "interface"}:
            raise _Invalid(path, 'expected a handle {"$handle": ..., "interface": ...}')
        hid, iface = v["$handle"], v["interface"]
        if type(hid) is not str or not hid or type(iface) is not str:
            raise _Invalid(path, "expected a handle with a non-empty string $handle")
        if interface is not None and iface != interface:
            raise _Invalid(path, f"expected a handle of interface {interface}, not {iface}")
        return RemoteHandle(hid, iface)

    return convert


class _Method:
    """One method of one interface version: its schemas and how to call its handler."""

    __slots__ = ("fn", "params_schema", "result_schema", "_members", "_convert", "_by_name",
                 "_simple")

    def __init__(self, fn: Callable[..., Any], params: Any, result: Any) -> None:
        self.fn = fn
        self.params_schema = schema(params)
        self.result_schema = schema(result)
        if self.params_schema.get("type") != "object" or self.result_schema.get("type") != "object":
            raise TypeError("params and result must be objects (SPEC.md §3.1)")
        # With declared members the handler gets them as keyword arguments; without, one dict.
        self._by_name = isinstance(self.params_schema.get("properties"), dict)
        self._members = _member_converters(self.params_schema) if self._by_name else []
        self._convert = _compile(self.params_schema)
        # Only members to check (the common case): a loop faster than the general converter.
        self._simple = self._by_name and set(self.params_schema) <= {
            "type", "properties", "required", "description", "title"}

    def invoke(self, params: dict[str, Any], parts: list[memoryview] | None = None) -> Any:
        """Check and convert ``params`` (-32602 when they do not match), call the handler.
        ``parts`` are the frame's attachments, which ``{"$bytes": i}`` references (§2.8)."""
        if parts is not None:
            tid = get_ident()
            _reading_parts[tid] = parts
        try:
            if self._simple:
                kwargs = {}
                for name, required, conv in self._members:
                    v = params.get(name, _MISSING)
                    if v is _MISSING:
                        if required:
                            raise _Invalid(name, "missing")
                        continue
                    kwargs[name] = conv(v, name)
            else:
                converted = self._convert(params, "")
                if not self._by_name:
                    return self.fn(converted)
                kwargs = {m[0]: converted[m[0]] for m in self._members if m[0] in converted}
        except _Invalid as e:
            raise Error(-32602, f"invalid params: {e}", {"path": e.path, "reason": e.reason}) \
                from None
        finally:
            if parts is not None:
                del _reading_parts[tid]
        return self.fn(**kwargs)


def _is_name(name: Any) -> bool:
    """ASCII letters, digits and ``_``, beginning with a letter (§5.1)."""
    return (
        isinstance(name, str) and name[:1].isascii() and name[:1].isalpha()
        and name.isascii() and name.replace("_", "a").isalnum()
    )


class Interface:
    """An application interface the plugin implements, in one or more versions (§4.3, §10.3).

    ``versions`` maps each version number to its methods, ``{name: (params, result)}``, where
    params and result are schema shorthands (see :func:`schema`). ``impl`` holds the handlers:
    a dict such as ``globals()``, or any object (a module, an instance) whose attributes are
    named after the methods. One handler serves a method in every version that has it; it can
    read the negotiated version from ``tether.current().version``.
    """

    def __init__(self, name: str, versions: Mapping[int, Mapping[str, tuple[Any, Any]]],
                 impl: Any) -> None:
        if not _is_name(name):
            raise ValueError(f"interface name {name!r}: use letters, digits and _ (SPEC.md §5.1)")
        if not versions:
            raise ValueError(f"interface {name} declares no version")
        self.name = name
        self.versions: list[int] = sorted(versions)
        self.tables: dict[int, dict[str, _Method]] = {}
        self.described: dict[int, dict[str, Any]] = {}
        self.needs: dict[str, list[int]] = {}  # method -> the versions that have it
        for version in self.versions:
            if type(version) is not int or version < 1:
                raise ValueError(f"interface {name}: versions are positive integers")
            table: dict[str, _Method] = {}
            for method, (params, result) in versions[version].items():
                if not _is_name(method):
                    raise ValueError(f"method name {method!r}: use letters, digits and _")
                fn = impl.get(method) if isinstance(impl, dict) else getattr(impl, method, None)
                if not callable(fn):
                    raise TypeError(f"{name} version {version} declares {method}, but no "
                                    f"callable named {method!r} implements it")
                table[method] = _Method(fn, params, result)
                self.needs.setdefault(method, []).append(version)
            self.tables[version] = table
            self.described[version] = {
                "version": version,
                "methods": {m: {"params": t.params_schema, "result": t.result_schema}
                            for m, t in table.items()},
            }

    @classmethod
    def from_file(cls, path: str, handlers: Any,
                  versions: int | Iterable[int] | None = None) -> Interface:
        """The interface an interface file defines (``spec/interfaces/kv.json``, the document of
        ``spec/schema/interface.schema.json``), with its methods' params and result schemas
        taken from the file instead of repeated in code.

        ``handlers`` is a dict ``{method: function}`` or an object whose public methods (names
        not beginning with ``_``) are the handlers. ``versions`` chooses the versions to serve
        (one number or several; every version of the file by default). Raises
        :class:`InterfaceFileError`, naming the file, when it cannot be read or is not an
        interface document, when a chosen version is not in it, when a method of a chosen
        version has no handler, or when a handler is no method of any chosen version.
        """
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise InterfaceFileError(
                f"cannot read the interface file {path}: {getattr(e, 'strerror', None) or e}"
            ) from None
        try:
            doc = _loads(text)
        except ValueError as e:
            raise InterfaceFileError(f"{path}: not JSON: {e}") from None
        return cls.from_document(doc, handlers, versions, source=path)

    @classmethod
    def from_document(cls, doc: Any, handlers: Any, versions: int | Iterable[int] | None = None,
                      *, source: str = "the interface document") -> Interface:
        """:meth:`from_file` for a document already parsed (a dict)."""
        def bad(why: str) -> InterfaceFileError:
            return InterfaceFileError(f"{source}: {why}")

        name = doc.get("name") if type(doc) is dict else None
        listed = doc.get("versions") if type(doc) is dict else None
        if not _is_name(name) or type(listed) is not list or not listed:
            raise bad("not an interface document (it needs a name and a non-empty versions "
                      "list, spec/schema/interface.schema.json)")
        defined: dict[int, dict[str, Any]] = {}
        for entry in listed:
            number = entry.get("version") if type(entry) is dict else None
            methods = entry.get("methods") if type(entry) is dict else None
            if type(number) is not int or number < 1 or type(methods) is not dict:
                raise bad(f"interface {name}: every version needs a positive version number "
                          "and a methods object")
            defined[number] = methods
        if versions is None:
            chosen = sorted(defined)
        else:
            chosen = sorted({versions} if type(versions) is int else set(versions))
        missing = [v for v in chosen if v not in defined]
        if missing or not chosen:
            raise bad(f"interface {name} defines the versions {sorted(defined)}, not {missing}")
        table: dict[int, dict[str, tuple[Any, Any]]] = {}
        for v in chosen:
            table[v] = {}
            for method, decl in defined[v].items():
                if type(decl) is not dict or "params" not in decl or "result" not in decl:
                    raise bad(f"{name}.{method} (version {v}) needs params and result schemas")
                table[v][method] = (decl["params"], decl["result"])
        served = {m for methods in table.values() for m in methods}
        if type(handlers) is dict:
            offered = {k for k, fn in handlers.items() if callable(fn)}
            find = handlers.get
        else:
            names = set(dir(type(handlers))) | set(getattr(handlers, "__dict__", ()))
            offered = {k for k in names
                       if not k.startswith("_") and callable(getattr(handlers, k, None))}

            def find(k: str) -> Any:
                return getattr(handlers, k, None)

        for v in chosen:
            for method in table[v]:
                if not callable(find(method)):
                    raise bad(f"{name} version {v} defines the method {method}, but the "
                              f"handlers have no function {method!r}")
        extra = sorted(offered - served)
        if extra:
            raise bad(f"the handlers {extra} are no method of {name} version(s) {chosen} "
                      f"(its methods: {sorted(served)})")
        try:
            return cls(name, table, handlers)
        except (TypeError, ValueError) as e:
            raise bad(f"interface {name}: {e}") from None


# --------------------------------------------------------------------------------------------
# Handles (§6)
# --------------------------------------------------------------------------------------------


class RemoteHandle:
    """A handle the host passed in params (§6.1): call its methods with ``h.sum(a=1, b=2)``.

    Each call sends ``tether/invoke`` and returns the result object; an error answer raises
    :class:`RemoteError`. A scoped handle is valid until your handler returns (§6.3); call
    :meth:`retain` before then to keep it, and :meth:`release` when done.
    """

    __slots__ = ("id", "interface")

    def __init__(self, handle_id: str, interface: str) -> None:
        self.id = handle_id
        self.interface = interface

    def invoke(self, method: str, params: dict[str, Any] | None = None, *,
               timeout: float | None = None,
               on_progress: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
        """Call ``method`` on the handle and wait for its result (§6.2); ``on_progress`` as
        for :func:`request`."""
        return request("tether/invoke",
                       {"handle": self.id, "method": method, "params": params or {}},
                       timeout=timeout, on_progress=on_progress)

    def __getattr__(self, method: str) -> Callable[..., dict[str, Any]]:
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda **params: self.invoke(method, params)

    def retain(self) -> None:
        """Keep the handle alive after the request that carried it (``tether/retain``)."""
        request("tether/retain", {"handle": self.id})

    def release(self) -> None:
        """Tell the host a retained handle is no longer needed (``$/release``)."""
        notify("$/release", {"handle": self.id})

    def _wire(self) -> dict[str, str]:
        return {"$handle": self.id, "interface": self.interface}

    def __repr__(self) -> str:
        return f"<RemoteHandle {self.id} ({self.interface})>"


class Export:
    """A plugin object passed to the host as a handle: put it in the params of :func:`request`.

    The host then calls its methods with ``tether/invoke``. ``methods`` optionally declares them,
    ``{name: (params, result)}`` as for :class:`Interface`; without it any public method of
    ``obj`` can be called with the params as keyword arguments. The handle lives while the
    request that carried it is in flight, or until ``$/release`` when the host retains it (§6.3).
    """

    def __init__(self, obj: Any, interface: str,
                 methods: Mapping[str, tuple[Any, Any]] | None = None) -> None:
        self.obj = obj
        self.interface = interface
        self.id: str | None = None
        self.table = {m: _Method(getattr(obj, m), p, r) for m, (p, r) in (methods or {}).items()}
        self.declared = methods is not None
        self.scopes: set[int] = set()  # ids of our in-flight requests that carried it
        self.retained = False

    def _wire(self) -> dict[str, str]:
        session = _session
        if session is None:
            raise RuntimeError("handles can be sent only while serving")
        return session._export(self)

    def _method(self, name: str) -> _Method | None:
        if self.declared:
            return self.table.get(name)
        fn = getattr(self.obj, name, None) if _is_name(name) else None
        return _Method(lambda params: fn(**params), dict, dict) if callable(fn) else None


# --------------------------------------------------------------------------------------------
# Streams (§12)
# --------------------------------------------------------------------------------------------


def stream(mode: str = "read") -> dict[str, Any]:
    """The schema of a stream parameter (§12.1).

    ``{"data": tether.stream("read")}``: the handler gets a :class:`StreamReader` and reads
    what the host sends; ``tether.stream("write")``: a :class:`StreamWriter` to write to.
    In a result schema it describes a :class:`Stream` the handler returns.
    """
    if mode not in ("read", "write"):
        raise ValueError(f"a stream's mode is 'read' or 'write', not {mode!r}")
    return {
        "type": "object",
        "properties": {"$stream": {"type": "integer", "minimum": 1},
                       "mode": {"type": "string", "const": mode}},
        "required": ["$stream", "mode"],
        "additionalProperties": False,
    }


class StreamError(Error):
    """A stream failed: the host aborted it, broke the credit rules, or the session ended
    (-32006, ``data`` ``{"stream": id}``, plus ``"cause"``: the error object of the host's
    ``$/stream.abort`` when it sent one, SPEC.md §12.4). A handler that lets it out answers with
    it."""

    def __init__(self, stream_id: int, message: str, cause: dict[str, Any] | None = None) -> None:
        data: dict[str, Any] = {"stream": stream_id}
        if cause is not None:
            data["cause"] = cause
        super().__init__(-32006, message, data)
        self.stream = stream_id
        self.cause = cause  # the error object of the host's $/stream.abort, when it sent one


class Stream:
    """Bytes to send as a stream the plugin opens (§12.1): return it in a result, or put it in
    the params of :func:`request`. The SDK writes it after the message that carries it, as fast
    as the host grants credit, then ends it.

    ``source`` is a bytes-like value, an iterable of bytes-like chunks (a generator), or a
    binary file-like object with ``read(n)``; it is closed (when it has ``close``) once sent.
    """

    __slots__ = ("source",)

    def __init__(self, source: Any) -> None:
        self.source = source

    def _chunks(self, size: int) -> Iterable[Any]:
        source = self.source
        if isinstance(source, (bytes, bytearray, memoryview)):
            return (source,)
        read = getattr(source, "read", None)
        if callable(read):
            return iter(lambda: read(size), b"")
        return source


class _Channel:
    """What both ends of a stream share: its id, its session and a latch to wait on."""

    def __init__(self, session: _Session, stream_id: int, call: Call | None) -> None:
        self._session = session
        self.id = stream_id
        self._call = call
        self._error: Error | None = None  # set once the stream failed
        self._done = False  # ended or aborted: no more messages about it
        self._waiting = False
        self._ready = allocate_lock()  # released to wake a thread blocked on the stream
        self._ready.acquire()

    def _wait(self) -> None:
        """Block until :meth:`_wake` (the caller set ``_waiting`` under the session lock)."""
        self._session.yield_lead()  # what we wait for is read by another thread
        self._ready.acquire()

    def _wake(self) -> None:
        """Wake the waiting thread, if any (the caller holds the session lock)."""
        if self._waiting:
            self._waiting = False
            self._ready.release()

    def _fail(self, error: Error) -> None:
        """The stream failed (the caller holds the session lock): later operations raise."""
        if self._error is None and not self._done:
            self._error = error
        self._done = True
        self._session.streams.pop(self.id, None)
        self._wake()

    def _abort(self, error: Error) -> None:
        """Abort the stream: tell the host (§12.4) unless it is over, and fail it here."""
        session = self._session
        with session.lock:
            tell = not self._done
            self._fail(error)
        if tell:
            err = error.to_json()
            if err.get("code") == -32006 and err.get("data") is None:
                err["data"] = {"stream": self.id}
            session.notify("$/stream.abort", {"stream": self.id, "error": err})


class StreamReader(_Channel):
    """A stream the host writes and the plugin reads (``mode: "read"``), as a binary file.

    ``read(n)``, ``read()`` (everything up to the end), ``readinto(buffer)`` (these fill what
    they are asked for unless the end comes first), ``read1(n)`` (what has arrived, up to
    ``n``), and iteration over the chunks as they arrive. A read blocks until data comes, and
    returns ``b""`` at the end; it raises :class:`StreamError` when the host aborts the stream or the session ends,
    and :class:`Cancelled` when the request is cancelled. The plugin grants the host credit as
    the data is read (§12.3), so a reader that stops reading stops the host. A handler that
    returns before the end aborts the stream; so does :meth:`close`.
    """

    def __init__(self, session: _Session, stream_id: int, call: Call | None) -> None:
        super().__init__(session, stream_id, call)
        self._chunks: Any = _deque()
        self._offset = 0  # of the first chunk, already read
        self._window = session.our_credit
        self._allowed = self._window  # bytes the host may still send
        self._consumed = 0  # read since the last grant
        self._ended = False  # $/stream.end arrived

    mode = "read"

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        """Whether the stream is over: read to its end, failed, or closed."""
        return self._done and not self._chunks

    def _on_data(self, data: Any) -> None:
        """A chunk arrived (on the reading thread; the caller holds the session lock)."""
        n = len(data)
        if n > self._allowed:
            raise StreamError(self.id, f"the host sent {n} bytes on stream {self.id} with only "
                              f"{self._allowed} bytes of credit (SPEC.md §12.3)")
        self._allowed -= n
        if n:
            self._chunks.append(data)
            self._wake()

    def _on_end(self) -> None:
        self._ended = True
        self._done = True
        self._session.streams.pop(self.id, None)
        self._wake()

    def _next_chunk(self, limit: int) -> bytes:
        """Up to ``limit`` bytes (at least one unless at the end), waiting for them."""
        session = self._session
        while True:
            with session.lock:
                if self._error is not None:
                    raise self._error
                chunks = self._chunks
                if chunks:
                    first = chunks[0]
                    start = self._offset
                    if limit >= len(first) - start:
                        chunks.popleft()
                        self._offset = 0
                        out = first if not start else first[start:]
                    else:
                        self._offset = start + limit
                        out = first[start: start + limit]
                    self._consumed += len(out)
                    grant = self._consumed
                    if grant * 2 >= self._window and not self._done:
                        self._consumed = 0
                        self._allowed += grant
                    else:
                        grant = 0
                    break
                if self._ended or self._done:
                    return b""
                call = self._call
                if call is not None and call._cancelled:
                    raise Cancelled()
                self._waiting = True
            self._wait()
        if grant:
            session.notify("$/stream.credit", {"stream": self.id, "bytes": grant})
        return out

    def read(self, n: int = -1) -> bytes:
        """``n`` bytes, fewer only at the end (all the rest when ``n`` is negative); ``b""``
        at the end."""
        if n is None or n < 0:
            return b"".join(iter(lambda: self._next_chunk(1 << 62), b""))
        first = self._next_chunk(n) if n else b""
        if len(first) == n or not first:
            return first
        pieces, got = [first], len(first)
        while got < n:
            piece = self._next_chunk(n - got)
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
        return b"".join(pieces)

    def read1(self, n: int = -1) -> bytes:
        """What is there, up to ``n`` bytes (any number when negative), waiting for one."""
        return self._next_chunk(n if n is not None and n >= 0 else 1 << 62)

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` (fewer bytes only at the end); the number read (0 at the end)."""
        view = memoryview(buffer).cast("B")
        got = 0
        while got < len(view):
            data = self._next_chunk(len(view) - got)
            if not data:
                break
            view[got: got + len(data)] = data
            got += len(data)
        return got

    def __iter__(self) -> StreamReader:
        return self

    def __next__(self) -> bytes:
        chunk = self._next_chunk(1 << 62)
        if not chunk:
            raise StopIteration
        return chunk

    def close(self) -> None:
        """Stop reading: the host is told to stop (an abort, -32006) unless the stream ended."""
        self._abort(StreamError(self.id, f"the plugin stopped reading stream {self.id}"))
        with self._session.lock:
            self._chunks.clear()

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _finish(self, error: Error | None) -> None:
        """The request that carried the stream is answered: abort the stream unless it was
        read to its end (§12.4.1, §12.4.3)."""
        if not self._done:
            self._abort(error or StreamError(self.id, f"the plugin stopped reading stream "
                                             f"{self.id} before its end"))

    def __repr__(self) -> str:
        return f"<StreamReader {self.id}>"


class StreamWriter(_Channel):
    """A stream the plugin writes and the host reads, as a binary file: ``write(b)`` blocks
    while the host has granted no credit (§12.3); ``close()`` ends the stream; ``abort()``
    ends it with an error. A handler's writer still open when it returns is closed for it
    (aborted when the handler fails). Writes raise :class:`StreamError` once the host aborted
    the stream or the session ended.
    """

    mode = "write"

    def __init__(self, session: _Session, stream_id: int, call: Call | None) -> None:
        super().__init__(session, stream_id, call)
        self._credit = session.peer_credit

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._done

    def _on_credit(self, n: int) -> None:
        self._credit += n
        self._wake()

    def write(self, data: Any) -> int:
        """Send ``data`` (bytes-like), in chunks of at most the credit granted; its length."""
        session = self._session
        view = memoryview(data).cast("B")
        if not view.readonly:  # may be queued for another thread to write: keep a copy
            view = memoryview(bytes(view))
        total = len(view)
        if not total:
            return 0
        sent = 0
        while True:
            with session.lock:
                if self._error is not None:
                    raise self._error
                if self._done:
                    raise ValueError(f"write to stream {self.id}, which is closed")
                call = self._call
                if call is not None and call._cancelled:
                    raise Cancelled()
                n = min(total - sent, self._credit, session.max_chunk)
                if n == 0:
                    self._waiting = True
                else:
                    self._credit -= n
            if n == 0:
                self._wait()
                continue
            session.send_data(self.id, view[sent: sent + n])
            sent += n
            if sent == total:
                return total

    def flush(self) -> None:
        """Nothing to do: every write is sent when credit allows."""

    def close(self) -> None:
        """End the stream (``$/stream.end``); closing it again does nothing."""
        session = self._session
        with session.lock:
            if self._done:
                return
            self._done = True
            session.streams.pop(self.id, None)
        session.notify("$/stream.end", {"stream": self.id})

    def abort(self, message: str = "the plugin aborted the stream", code: int = -32006) -> None:
        """End the stream with an error (``$/stream.abort``): the host's reads fail."""
        self._abort(Error(code, message, {"stream": self.id}))

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None:
            self.close()
        else:
            self.abort(f"the plugin failed while writing: {exc!r}"[:500])

    def _finish(self, error: Error | None) -> None:
        """The request that carried the stream is answered: end it, or abort it on error."""
        if error is None:
            self.close()
        elif not self._done:
            self._abort(error)

    def _pump(self, source: Stream) -> None:
        """Send a :class:`Stream`'s source, then end (on its own thread)."""
        chunks = None
        try:
            chunks = source._chunks(self._session.max_chunk)
            for chunk in chunks:
                self.write(chunk)
            self.close()
        except Error as e:
            if not self._done:
                self._abort(e)
        except BaseException as e:  # noqa: BLE001 - the source failed: abort (§12.4.2)
            _report(f"the source of stream {self.id} failed: {e!r}")
            self._abort(StreamError(self.id, f"the plugin's source of stream {self.id} "
                                    f"failed: {type(e).__name__}: {e}"[:500]))
        finally:
            for thing in (source.source, chunks):
                close = getattr(thing, "close", None)
                if callable(close):
                    try:
                        close()
                    except Exception:  # noqa: BLE001
                        pass

    def __repr__(self) -> str:
        return f"<StreamWriter {self.id}>"


def _stream_converter(mode: str | None) -> Callable[[Any, str], Any]:
    """Params conversion of a stream (§12.1): the objects were made when the request arrived.
    ``mode`` is the schema's constant mode; None (a schema that allows both) takes either."""
    kind = (StreamReader if mode == "read" else StreamWriter if mode == "write"
            else _Channel)

    def convert(v: Any, path: str) -> Any:
        if isinstance(v, kind):
            return v
        if isinstance(v, _Channel):
            raise _Invalid(path, f"expected a stream of mode {mode}, not {v.mode}")
        if type(v) is dict and "$stream" in v:
            raise _Invalid(path, "a stream, but the streams capability was not negotiated")
        raise _Invalid(path, f'expected a stream {{"$stream": id, "mode": "{mode or "read"}"}}')

    return convert


# --------------------------------------------------------------------------------------------
# Calls being handled
# --------------------------------------------------------------------------------------------


_NO_PROGRESS = (0, None)


class Call:
    """The request a handler is serving; :func:`current` returns it inside a handler."""

    __slots__ = ("id", "method", "version", "_cancelled", "_latch", "_outgoing", "_streams",
                 "progress_token", "_progress_last", "_answered", "traceparent", "tracestate",
                 "trace_id", "span_id", "parent_span_id")

    def __init__(self, request_id: int | str, method: str, version: int | None) -> None:
        self.id = request_id
        self.method = method
        self.version = version  # the negotiated version of the method's interface
        self._answered = self._cancelled = False
        # One chained assignment (this runs for every request): the caller's
        # ``_meta.progressToken`` (§14), or None, and :meth:`progress` sends nothing; the trace
        # context (§15): the caller's ``traceparent``/``tracestate`` as sent, and, when the
        # traceparent is valid, this request's span (the caller's trace id, a new span id, the
        # caller's span id as parent), named by ``$/log`` sent while handling it; the latch held
        # until the call is cancelled, made (under the session lock) by the first
        # wait_cancelled, since most handlers never wait for a cancel; our unanswered requests
        # made for this call (a dict, made by the first one).
        self.progress_token: int | str | None = None
        self.traceparent = self.tracestate = self.trace_id = self.span_id = None
        self.parent_span_id = self._latch = self._outgoing = self.progress_token
        self._progress_last: tuple[int, int | None] = _NO_PROGRESS
        self._streams: list[_Channel] | tuple[()] = ()  # the streams its params carried (§12.4.3)

    @property
    def cancelled(self) -> bool:
        """Whether the host cancelled this request (or the session is ending)."""
        return self._cancelled

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Sleep until the request is cancelled or ``timeout`` seconds pass; the flag's value."""
        session = _session
        if session is not None:
            session.yield_lead()  # the cancel is read by another thread
        with session.lock if session is not None else allocate_lock():
            latch = self._latch
            if latch is None:
                self._latch = latch = allocate_lock()
                if not self._cancelled:
                    latch.acquire()  # cancel() releases it
        if latch.acquire(True, -1 if timeout is None else max(timeout, 0)):
            latch.release()
        return self._cancelled

    def check(self) -> None:
        """Raise :class:`Cancelled` when the request was cancelled."""
        if self._cancelled:
            raise Cancelled()

    @property
    def wants_progress(self) -> bool:
        """Whether the caller asked for progress (gave ``_meta.progressToken``, §14.1)."""
        return self.progress_token is not None

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> bool:
        """Report how far the request has come: ``done`` units of ``total`` (when known), as
        ``$/progress`` to the caller (§14.2). Does nothing when the caller gave no token, or
        once the request was answered or cancelled. ``done`` never goes back and never passes
        ``total`` (a smaller one is sent as the last, a larger one as ``total``); the first
        ``total`` given is kept. Returns whether a notification was sent."""
        session = _session
        if self.progress_token is None or self._answered or self._cancelled or session is None:
            return False
        last_done, last_total = self._progress_last
        total = last_total if last_total is not None else total
        done = max(int(done), last_done, 0)
        if total is not None:
            done = min(done, total)
        self._progress_last = (done, total)
        params: dict[str, Any] = {"token": self.progress_token}
        if message is not None:
            params["message"] = message
        params["done"] = done
        if total is not None:
            params["total"] = total
        session.notify("$/progress", params)
        return True

    def _take_meta(self, params: dict[str, Any]) -> None:
        """Take ``_meta`` out of the params (§14.1.2): it is about the call, not a parameter."""
        meta = params.pop("_meta", None)
        if type(meta) is not dict:
            return
        token = meta.get("progressToken")
        if _valid_id(token):
            self.progress_token = token
        parent = meta.get("traceparent")
        if type(parent) is str:
            self.traceparent = parent
            state = meta.get("tracestate")
            self.tracestate = state if type(state) is str else None
            ids = _parse_traceparent(parent)
            if ids is not None:
                self.trace_id, self.parent_span_id = ids
                self.span_id = os.urandom(8).hex()
                while self.span_id == "0" * 16:
                    self.span_id = os.urandom(8).hex()


_HEX = frozenset("0123456789abcdef")


def _parse_traceparent(text: str) -> tuple[str, str] | None:
    """The trace id and parent id of a W3C ``traceparent`` (§15), or None when it does not
    follow the grammar: lower-case hex ``version-trace_id-parent_id-flags``, neither id all
    zeros, version ``ff`` forbidden, version ``00`` with exactly four fields."""
    fields = text.split("-")
    if len(fields) < 4 or any(not f or not set(f) <= _HEX for f in fields[:4]):
        return None
    version, trace_id, parent_id, flags = fields[:4]
    if (len(version), len(trace_id), len(parent_id), len(flags)) != (2, 32, 16, 2):
        return None
    if version == "ff" or (version == "00" and len(fields) != 4):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id, parent_id


_calls_by_thread: dict[int, Call] = {}


def current() -> Call | None:
    """The request the calling thread is handling, or None outside a handler."""
    return _calls_by_thread.get(get_ident())


class _Pending:
    """One of our requests waiting for its response."""

    __slots__ = ("id", "call", "latch", "response", "cancelled", "on_progress", "progressed")

    def __init__(self, call: Call | None) -> None:
        self.id = 0
        self.call = call
        self.on_progress: Callable[[dict[str, Any]], Any] | None = None
        self.progressed = 0.0  # when the last $/progress came (monotonic), for the time-out
        self.latch = allocate_lock()
        self.latch.acquire()
        self.response: dict[str, Any] | None = None
        self.cancelled = False


class _Attached:
    """A frame with attachments (§2.8): its JSON and its attachments, views of one buffer."""

    __slots__ = ("body", "parts")

    def __init__(self, data: bytes | bytearray, lengths: list[int]) -> None:
        view = memoryview(data)
        at = len(data) - sum(lengths)
        self.body = view[:at]
        self.parts: list[memoryview] = []
        for n in lengths:
            self.parts.append(view[at: at + n])
            at += n


class _Unreadable:
    """A frame skipped whole because its attachment header is malformed (answered -32700)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Oversized:
    """A frame whose declared length is above the maximum, skipped: its size and first bytes."""

    __slots__ = ("size", "prefix")

    def __init__(self, size: int, prefix: bytes) -> None:
        self.size = size
        self.prefix = prefix


# --------------------------------------------------------------------------------------------
# Framing (§2)
# --------------------------------------------------------------------------------------------

_TOKEN = (b"!#$%&'*+-.^_`|~0123456789"
          b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_VALUE_BYTES = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
_MARKER = b"content-length:"
_PREFIX_KEPT = 65536  # how much of an oversized frame is kept to find its id
_CHUNK = 65536
_HAS_VECTORED_IO = hasattr(os, "readv") and hasattr(os, "writev")


_INLINE_LIMIT = 0.002  # seconds a handler may run on the reading thread before it hands over
_HOST_LEAVING_WINDOW = 1.0  # seconds a failed write waits for the end of stdin (§1.5)
_IOV_MAX = 512  # buffers per writev call (even-sized: header and body stay together)


def _nothing() -> None:
    pass


def _write_buffers(fd: int, buffers: list[bytes]) -> None:
    """Write all of ``buffers``, in order, in as few system calls as the pipe allows."""
    if not _HAS_VECTORED_IO:
        buffers = [b"".join(buffers)]
    left = sum(map(len, buffers))
    while left:
        n = os.writev(fd, buffers) if _HAS_VECTORED_IO else os.write(fd, buffers[0])
        left -= n
        if not left:
            return  # all of it: the common case, without walking the list
        # A pipe that took part of it: drop what went out, in one slice.
        i = 0
        while n >= len(buffers[i]):
            n -= len(buffers[i])
            i += 1
        buffers = buffers[i:]
        if n:
            buffers[0] = memoryview(buffers[0])[n:]


def _read_into(fd: int, view: memoryview) -> int:
    if _HAS_VECTORED_IO:
        return os.readv(fd, [view])
    data = os.read(fd, len(view))
    view[: len(data)] = data
    return len(data)


class _Reader:
    """Reads frames from a file descriptor: lenient headers (§2.3), bounded (§2.5), resyncing."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.pos = 0
        self.max_frame = DEFAULT_MAX_FRAME_SIZE
        self.attachments = False  # whether Tether-Attachments is read (negotiated, §2.8.3)
        # Called before every read that may block: the session writes the answers it held
        # back while frames were already buffered (see _Session.holder).
        self.before_read: Callable[[], None] = _nothing

    def _fill(self) -> bool:
        """Append what the pipe has (at least one byte); False at end of file."""
        if self.pos >= _CHUNK:
            del self.buf[: self.pos]
            self.pos = 0
        self.before_read()
        data = os.read(self.fd, _CHUNK)
        self.buf += data
        return bool(data)

    def next(self) -> bytes | bytearray | _Attached | _Unreadable | _Oversized | None:
        """The next frame's body (an :class:`_Attached` frame when it has attachments), a
        record of a frame skipped whole, or None at end of file."""
        buf = self.buf
        while True:
            pos = self.pos
            end = buf.find(b"\r\n\r\n", pos, pos + MAX_HEADER_BLOCK)
            if end < 0:
                if len(buf) - pos >= MAX_HEADER_BLOCK:
                    problem = "no end of header block within 4096 bytes"
                    if not self._resync(pos, problem):
                        return None
                elif not self._fill():
                    if len(buf) > pos:
                        _report("end of file inside a frame header: " + _shown(buf[pos:]))
                    return None
                continue
            lengths: list[int] | None = None
            digits = buf[pos + 16:end] if buf.startswith(b"Content-Length: ", pos, end) else b""
            if digits.isdigit():
                length = int(digits)  # the writer form of §2.2: the common case
            else:
                length, problem, listed = _parse_header(bytes(buf[pos:end]))
                if length < 0:
                    if not self._resync(pos, problem):
                        return None
                    continue
                if problem:  # a whole frame in a charset other than UTF-8: skip it (§2.3)
                    _report(f"skipped a frame of {length} bytes: {problem}")
                    if self._skip(end + 4, length) is None:
                        return None
                    continue
                if listed is not None and self.attachments and length <= self.max_frame:
                    # Checked against the total before anything is reserved (§2.8.5).
                    lengths = _attachment_lengths(listed, length)
                    if type(lengths) is str:
                        skipped = self._skip(end + 4, length)
                        return None if skipped is None else _Unreadable(lengths)
            start = end + 4
            if length > self.max_frame:
                return self._skip(start, length)
            if len(buf) - start < length:
                body = self._read_body(start, length)
            else:
                self.pos = start + length
                body = bytes(memoryview(buf)[start: self.pos])
                if self.pos == len(buf):
                    buf.clear()
                    self.pos = 0
            if lengths is None or body is None:
                return body
            return _Attached(body, lengths)

    def _read_body(self, start: int, length: int) -> bytearray | None:
        """Read the rest of a body straight into a buffer of its (bounded) declared length."""
        body = bytearray(length)
        have = len(self.buf) - start
        body[:have] = self.buf[start:]
        self.buf.clear()
        self.pos = 0
        view = memoryview(body)
        self.before_read()
        while have < length:
            n = _read_into(self.fd, view[have: have + 16 * _CHUNK])
            if not n:
                _report(f"end of file inside a frame body after {have} of {length} bytes: "
                        + _shown(body[:have]))
                return None
            have += n
        return body

    def _skip(self, start: int, length: int) -> _Oversized | None:
        """Skip an oversized body (§2.6.2), keeping only a bounded prefix."""
        prefix = bytes(self.buf[start: start + _PREFIX_KEPT])
        left = length - (len(self.buf) - start)
        if left <= 0:
            self.pos = start + length
            return _Oversized(length, prefix)
        self.buf.clear()
        self.pos = 0
        self.before_read()
        while left > 0:
            data = os.read(self.fd, min(left, 16 * _CHUNK))
            if not data:
                _report(f"end of file inside an oversized frame of {length} bytes")
                return None
            if len(prefix) < _PREFIX_KEPT:
                prefix += data[: _PREFIX_KEPT - len(prefix)]
            left -= len(data)
        return _Oversized(length, prefix)

    def _resync(self, start: int, problem: str) -> bool:
        """Discard input from ``start`` up to the next ``Content-Length:`` after its first byte
        (searched anywhere, in any case, §2.6.1) and report it; False at end of file."""
        buf = self.buf
        shown = b""  # the first 512 discarded bytes, for the report
        count = 0
        search = start + 1
        while True:
            found = _find_marker(buf, search)
            stop = found if found >= 0 else max(search, len(buf) - len(_MARKER) + 1)
            if len(shown) < 512:
                shown += bytes(buf[start: min(stop, start + 512 - len(shown))])
            count += stop - start
            if found >= 0:
                self.pos = found
                _report(f"skipped {count} bytes that are not a frame ({problem}): "
                        + _shown(shown, count))
                return True
            del buf[:stop]  # keep a tail that may hold the start of the marker
            self.pos = start = search = 0
            if not self._fill():
                count += len(buf)
                shown = (shown + bytes(buf))[:512]
                _report(f"end of file after {count} bytes that are not a frame ({problem}): "
                        + _shown(shown, count))
                return False


def _find_marker(buf: bytearray, start: int) -> int:
    """The index of the next ``content-length:`` (any case) at or after ``start``, or -1."""
    window = 1 << 16
    while start < len(buf):
        found = buf[start: start + window].lower().find(_MARKER)
        if found >= 0:
            return start + found
        if start + window >= len(buf):
            return -1
        start += window - len(_MARKER) + 1
    return -1


def _parse_header(header: bytes) -> tuple[int, str, bytes | None]:
    """Parse a header block (without its empty line) as the LSP base protocol allows (§2.3).

    Returns the body length and no problem; -1 and what is broken; or the length and a
    problem that spoils only this frame (a charset other than UTF-8), which is skipped whole.
    The third item is the value of ``Tether-Attachments`` (§2.8), or None without one (a
    second such header makes the value malformed).
    """
    length = -1
    charset_problem = ""
    listed: bytes | None = None
    for line in header.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(None, _TOKEN) or \
                value.translate(None, _VALUE_BYTES):
            return -1, f"a header line that is not 'Name: value': {line[:80]!r}", None
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"content-length":
            if length >= 0:
                return -1, "Content-Length given twice", None
            if not value.isdigit():
                return -1, f"Content-Length is not a decimal integer: {value[:40]!r}", None
            length = int(value)
        elif name == b"tether-attachments":
            listed = b"" if listed is not None else value  # given twice: malformed
        elif name == b"content-type":
            for param in value.split(b";")[1:]:
                key, _, charset = param.partition(b"=")
                if key.strip().lower() == b"charset":
                    charset = charset.strip().strip(b'"').lower()
                    if charset not in (b"utf-8", b"utf8"):
                        charset_problem = f"its charset is {charset[:40]!r}, not utf-8"
    if length < 0:
        return -1, "no Content-Length header", None
    return length, charset_problem, listed


def _attachment_lengths(listed: bytes, total: int) -> list[int] | str:
    """The attachment lengths of a ``Tether-Attachments`` value (§2.8.1), checked against the
    frame's total length; a string saying what is wrong when the value is malformed."""
    items = listed.split(b",")
    if not listed or not all(item.isdigit() and len(item) <= 20 for item in items):
        return (f"a malformed Tether-Attachments header {listed[:80]!r} (decimal lengths "
                "separated by commas expected)")
    lengths = [int(item) for item in items]
    if sum(lengths) > total:
        return (f"the attachment lengths {listed[:80]!r} add up to more than the frame's "
                f"{total} bytes")
    return lengths


def _peek_members(prefix: bytes) -> dict[str, Any]:
    """The top-level members of a truncated JSON object that can be read from its start:
    values of ``id`` and ``method`` when complete, and the names of all members seen."""
    text = prefix.decode("utf-8", "replace")
    seen: dict[str, Any] = {}
    i = len(text) - len(text.lstrip())
    if text[i: i + 1] != "{":
        return seen
    i += 1
    while True:
        i += len(text[i:]) - len(text[i:].lstrip())
        try:
            key, i = _scan(text, i)
        except Exception:  # noqa: BLE001 - truncated or not JSON: stop here
            return seen
        j = text.find(":", i)
        if type(key) is not str or j < 0 or text[i:j].strip():
            return seen
        seen[key] = _MISSING
        i = j + 1
        i += len(text[i:]) - len(text[i:].lstrip())
        try:
            value, i = _scan(text, i)
        except Exception:  # noqa: BLE001
            return seen
        seen[key] = value
        i += len(text[i:]) - len(text[i:].lstrip())
        if text[i: i + 1] != ",":
            return seen
        i += 1


# --------------------------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------------------------


def _valid_id(v: Any) -> bool:
    """An id is a string or an integer in the signed 64-bit range (§3.2)."""
    t = type(v)
    return t is str or (t is int and _I64_MIN <= v <= _I64_MAX)


class _Session:
    """One session with the host: reads frames, dispatches them, writes the answers."""

    def __init__(self, name: str, version: str, interfaces: Iterable[Interface],
                 capabilities: dict[str, Any], in_fd: int, out_fd: int) -> None:
        self.name = name
        self.version = version
        self.interfaces = {i.name: i for i in interfaces}
        self.capabilities = capabilities
        self.reader = _Reader(in_fd)
        self.out_fd = out_fd
        self.write_lock = allocate_lock()
        self.out_queue: list[bytes] = []  # frames waiting for the writer: header, body, ...
        # The leader, while it handles frames that were already read: what it sends waits in
        # out_queue and goes out in one writev before it next blocks (a read that waits, a
        # wait in a handler, the hand-over; the watchdog flushes for a handler that runs
        # long). Many answers per system call when requests arrive together; one otherwise.
        self.holder: int | None = None
        self.reader.before_read = self.flush
        self.lock = allocate_lock()  # guards everything below that threads share
        self.initialized = False
        self.shutting_down = False
        self.shutdown_id: Any = _MISSING  # a shutdown waiting for in-flight requests
        self.eof = False
        self.log_level = _LEVELS["info"]
        self.log_hooks: list[Callable[[int], None]] = []
        self.methods: dict[str, tuple[_Method, int]] = {}
        self.negotiated: dict[str, int] = {}
        self.calls: dict[Any, Call] = {}
        self.pending: dict[int, _Pending] = {}
        self.abandoned: set[int] = set()  # our cancelled requests: late answers are expected
        self.next_id = 1
        self.exports: dict[str, Export] = {}
        self.export_scopes: dict[int, list[Export]] = {}
        self.next_handle = 1
        self.exporting: dict[int, list[Export]] = {}  # per thread, while encoding a request
        # Attachments (§2.8) and streams (§12), once negotiated in tether/initialize.
        self.attachments = False
        self.streams_on = False
        self.progress_on = False  # whether both announced progress (§14)
        self.our_credit = DEFAULT_INITIAL_CREDIT  # what the host may send before our grants
        self.peer_credit = DEFAULT_INITIAL_CREDIT  # what we may send before the host's grants
        self.max_chunk = MAX_CHUNK
        self.streams: dict[int, _Channel] = {}  # live streams by id (guarded by self.lock)
        self.host_stream_ids: set[int] = set()  # every id the host opened: never reused
        self.next_stream = 2  # the plugin opens even ids (§12.1)
        self.opening: dict[int, list[tuple[StreamWriter, Stream]]] = {}  # per thread, encoding
        self.idle: list[Any] = []  # the latches of idle threads, waiting to lead
        # The leader runs a handler itself and goes on reading when it returns; the watchdog
        # (or the handler's first wait in this SDK) hands the reading to another thread when
        # the handler takes longer than _INLINE_LIMIT. Guarded by self.lock.
        self.inline_thread: int | None = None  # the leader while it runs a handler
        self.inline_seq = 0  # counts the handlers run by the leader, for the watchdog
        self.watchdog_parked = False
        self.watchdog_latch = allocate_lock()
        self.watchdog_latch.acquire()

    # ---- writing -----------------------------------------------------------------------

    def encode(self, msg: dict[str, Any], tid: int = 0) -> tuple[bytes, list[Any]]:
        """A message's body and its attachments: once attachments are negotiated every bytes
        value becomes one (§2.8), otherwise base64 (no attachments). ``tid``: the calling
        thread's id, when the caller has it at hand."""
        if not self.attachments:
            return _dumps(msg), ()  # type: ignore[return-value]
        tid = tid or get_ident()
        _attaching[tid] = parts = []
        try:
            return _dumps(msg), parts
        finally:
            del _attaching[tid]

    def send(self, body: bytes, parts: list[Any] | tuple[()] = (), tid: int = 0) -> None:
        """Write one frame in the exact form of §2.2 (§2.8 with attachments), one writer at a
        time.

        Frames queue up while another thread is writing, and that thread writes them all in
        one system call (``writev``), without copying the bodies or the attachments.
        """
        queue = self.out_queue
        if len(parts) == 1:  # one bytes value: the common case, formatted in one step
            size = len(parts[0])
            queue += (b"Content-Length: %d\r\nTether-Attachments: %d\r\n\r\n" % (
                len(body) + size, size), body, parts[0])
        elif parts:
            sizes = [len(p) for p in parts]
            queue += (b"Content-Length: %d\r\nTether-Attachments: %s\r\n\r\n" % (
                len(body) + sum(sizes), ",".join(map(str, sizes)).encode("ascii")),
                body, *parts)
        else:
            queue += (b"Content-Length: %d\r\n\r\n" % len(body), body)
        if self.holder == (tid or get_ident()):
            return  # the leader writes it before it next waits
        self.flush()

    def flush(self) -> None:
        """Write the frames waiting in the queue (unless another thread is writing them)."""
        queue = self.out_queue
        while queue:
            if not self.write_lock.acquire(False):
                return  # the writer re-checks the queue after releasing the lock
            try:
                while queue:
                    batch = queue[:_IOV_MAX]
                    del queue[: len(batch)]
                    _write_buffers(self.out_fd, batch)
            except OSError as e:
                # After the end of stdin the host is gone: nothing to say (§1.5).
                if not self.eof and not self.host_left(_HOST_LEAVING_WINDOW):
                    _report(f"cannot write to the host ({e}); giving up on the session")
                    _exit(2)
                queue.clear()
            finally:
                self.write_lock.release()

    def host_left(self, window: float) -> bool:
        """Whether stdin ends within ``window`` seconds of a failed write.

        A host that closes both pipes at once races their two ends, so the write may fail
        before the reader thread sees the end of stdin. This thread may be the reader, so it
        also asks the pipe itself (POLLHUP: every writer has closed it).
        """
        import select  # noqa: PLC0415 (only on this rare path: keeps start-up lean)

        deadline = time.monotonic() + window
        try:
            poller: Any = select.poll()
            poller.register(self.reader.fd, select.POLLHUP)
        except (OSError, ValueError, AttributeError):
            poller = None  # no poll() here: wait for the reader thread alone
        while True:
            if self.eof:
                return True
            if poller is None:
                time.sleep(0.005)
            else:
                try:
                    if any(ev & select.POLLHUP for _, ev in poller.poll(5)):
                        return True
                except OSError:
                    time.sleep(0.005)
            if time.monotonic() >= deadline:
                return False

    def reply(self, request_id: Any, result: dict[str, Any]) -> None:
        """Send a result."""
        body = _dumps({"jsonrpc": "2.0", "id": request_id, "result": result})
        self.send(self.fitted(request_id, body))

    def reply_error(self, request_id: Any, code: int, message: str, data: Any = _MISSING) -> None:
        """Send an error."""
        body = _dumps({"jsonrpc": "2.0", "id": request_id,
                       "error": Error(code, message, data).to_json()})
        self.send(self.fitted(request_id, body))

    def too_large(self, request_id: Any, size: int) -> Error:
        """The -32004 that replaces an answer of ``size`` bytes above the maximum frame size
        (§2.2), reported on stderr too: the host only sees the sizes, the plugin's author
        needs to know which answer it was."""
        limit = self.reader.max_frame
        what = f"is {size} bytes, above the session's maximum frame size of {limit}"
        _report(f"the answer to request {repr(request_id)[:100]} {what}; "
                "sent error -32004 (frame too large) in its place")
        return Error(-32004, f"frame too large: the answer {what}", {"size": size, "max": limit})

    def fitted(self, request_id: Any, body: bytes) -> bytes:
        """``body``, an answer without attachments, or the -32004 error that replaces it when
        it is longer than the maximum frame size (§2.2: a writer never emits such a frame)."""
        if len(body) <= self.reader.max_frame:
            return body
        error = self.too_large(request_id, len(body))
        return _dumps({"jsonrpc": "2.0", "id": request_id, "error": error.to_json()})

    def notify(self, method: str, params: dict[str, Any]) -> None:
        """Send a notification; one longer than the maximum frame size is dropped and reported
        on stderr (§2.2), since nobody waits for an answer to it."""
        body, parts = self.encode({"jsonrpc": "2.0", "method": method, "params": params})
        size = len(body) + sum(map(len, parts))
        if size > self.reader.max_frame:
            _report(f"dropped a {method} of {size} bytes: above the session's maximum frame "
                    f"size of {self.reader.max_frame}")
            return
        self.send(body, parts)

    def log(self, level: str, message: str, target: str | None, fields: dict[str, Any]) -> None:
        """Send a ``$/log`` when the session's level allows it (§8.1)."""
        if _LEVELS[level] < self.log_level:
            return
        params: dict[str, Any] = {"level": level, "message": message}
        if target:
            params["target"] = target
        call = _calls_by_thread.get(get_ident())
        if call is not None and call.trace_id is not None:
            # A handler's log names the trace and span it was handled in (§15).
            fields = {**fields}
            fields.setdefault("trace_id", call.trace_id)
            fields.setdefault("span_id", call.span_id)
        if fields:
            params["fields"] = fields
        try:
            body, parts = self.encode({"jsonrpc": "2.0", "method": "$/log", "params": params})
        except (TypeError, ValueError):
            params["fields"] = {k: repr(v) for k, v in fields.items()}
            body, parts = self.encode({"jsonrpc": "2.0", "method": "$/log", "params": params})
        size = len(body) + sum(map(len, parts))
        if size > self.reader.max_frame:
            _report(f"dropped a $/log of {size} bytes: above the session's maximum frame size "
                    f"of {self.reader.max_frame}; it said: {message[:200]}")
            return
        self.send(body, parts)

    # ---- reading and dispatching -------------------------------------------------------

    def serve(self) -> None:
        """Serve until stdin reaches end of file, then end the process (§1.6).

        Threads take turns (the leader/followers pattern): one thread, the leader, reads and
        routes frames. When a frame starts a handler, the leader runs it itself, answers, and
        goes on reading: most handlers return at once, and no thread hand-off is paid for them.
        Reading never waits long for a handler (§3.7): when the handler waits in this SDK
        (:func:`request`, :meth:`Call.wait_cancelled`), or runs longer than 2 ms (a watchdog
        thread checks), an idle thread is woken (or started) to lead in its place, and the
        handler's thread joins the idle ones when it is done. Threads are reused rather than
        created per call, and a request is never passed from thread to thread.
        """
        start_new_thread(self.watchdog, ())
        self.follow()

    def lead(self) -> None:
        """Read and route frames, running handlers inline, until the lead is handed over."""
        reader = self.reader
        me = get_ident()
        self.holder = me
        while True:
            try:
                frame = reader.next()
            except OSError as e:
                _report(f"cannot read from the host: {e}")
                frame = None
            if frame is None:
                self.holder = None
                self.flush()
                self.on_eof()  # does not return
            try:
                kind = type(frame)
                if kind is _Oversized:
                    job = self.on_oversized(frame)
                elif kind is _Attached:
                    job = self.dispatch(frame.body, frame.parts)
                elif kind is _Unreadable:
                    job = self.reply_error(None, -32700, f"parse error: {frame.reason}")
                else:
                    job = self.dispatch(frame)
            except Exception as e:  # noqa: BLE001 - the reader must go on (§2.6)
                _report(f"internal error while handling a frame: {e!r}")
                continue
            if job is None:
                continue
            # The handler runs here, on the leader (start() told the watchdog).
            try:
                still = self.run_call(*job, leader=me)
            except BaseException:
                with self.lock:
                    if self.inline_thread == me:
                        self.inline_thread = None
                raise
            if not still:
                if self.holder == me:
                    self.holder = None
                self.flush()
                return

    def yield_lead(self) -> None:
        """Before this thread blocks in a handler: hand the reading over if it still leads."""
        me = get_ident()
        with self.lock:
            mine = self.inline_thread == me
            if mine:
                self.inline_thread = None
        if self.holder == me:
            self.holder = None
        self.flush()  # what this thread held back, before it waits
        if mine:
            self.promote()

    def watchdog(self) -> None:
        """Hand the reading over when the leader's handler runs past _INLINE_LIMIT; park when
        no handler has run for a while (woken by start)."""
        quiet = 0
        while True:
            seq = self.inline_seq
            time.sleep(_INLINE_LIMIT)
            with self.lock:
                stuck = self.inline_thread is not None and self.inline_seq == seq
                if stuck:
                    self.inline_thread = None
                busy = stuck or self.inline_thread is not None or self.inline_seq != seq
                quiet = 0 if busy else quiet + 1
                park = quiet >= 50 and self.inline_thread is None
                if park:
                    self.watchdog_parked = True
            if stuck:
                self.promote()
                self.flush()  # what the leader held back before this long handler
            if park:
                quiet = 0
                self.watchdog_latch.acquire()  # released by start()

    def promote(self) -> None:
        """Hand the reading to an idle thread, or to a new one."""
        try:
            latch = self.idle.pop()
        except IndexError:
            start_new_thread(self.follow, ())
            return
        latch.release()

    def follow(self) -> None:
        """Lead, then wait among the idle threads until promoted, and lead again."""
        latch = allocate_lock()
        latch.acquire()
        while True:
            self.lead()
            self.idle.append(latch)
            latch.acquire()  # released by promote()

    def dispatch(self, body: bytes | bytearray | memoryview,
                 parts: list[memoryview] | None = None) -> Any:
        """Route one frame body (§3) with its attachments (§2.8); a job when it starts a
        handler."""
        try:
            text = str(body, "utf-8")
            msg = _loads(text)
        except RecursionError:
            return self.reply_error(None, -32700, "parse error: the JSON is nested too deeply")
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            return self.reply_error(None, -32700, f"parse error: {e}")
        if type(msg) is not dict:
            if type(msg) is list:
                return self.reply_error(None, -32600, "invalid request: batches are not "
                                        "part of Tether (SPEC.md §3.3)")
            return self.reply_error(None, -32600, "invalid request: a message is a JSON object")
        method = msg.get("method", _MISSING)
        if method is _MISSING:
            return self.on_response(msg, parts, self.streams_on and '"$stream"' in text)
        if "id" not in msg:
            return self.on_notification(msg, method, parts)
        rid = msg["id"]
        if not _valid_id(rid):
            what = "null" if rid is None else "not a string or a 64-bit integer"
            return self.reply_error(None, -32600, f"invalid request: the id is {what}")
        if msg.get("jsonrpc") != "2.0":
            return self.reply_error(rid, -32600, 'invalid request: "jsonrpc" must be "2.0"')
        if type(method) is not str:
            return self.reply_error(rid, -32600, "invalid request: the method is not a string")
        if "result" in msg or "error" in msg:
            return self.reply_error(rid, -32600, "invalid request: a request has no result or "
                                    "error member")
        params = msg.get("params", _MISSING)
        if params is _MISSING:
            params = {}
        elif type(params) is not dict:
            if type(params) is list:
                return self.reply_error(rid, -32602, "invalid params: Tether params are an "
                                        "object, not an array", {"path": "params",
                                                                  "reason": "expected an object"})
            return self.reply_error(rid, -32600, "invalid request: params must be an object")
        if self.streams_on and '"$stream"' in text:
            return self.on_request_with_streams(rid, method, params, parts)
        return self.on_request(rid, method, params, parts)

    def on_request_with_streams(self, rid: Any, method: str, params: dict[str, Any],
                                parts: list[memoryview] | None) -> Any:
        """A request whose params hold streams: they become stream objects bound to the call,
        and are aborted at once when the request is refused (§12.4.4)."""
        entry = self.methods.get(method) if not self.shutting_down else None
        if entry is None:  # refused, whatever the reason: the streams are not read
            self.abort_raw_streams(params, "the request that carried it was refused")
            return self.on_request(rid, method, params, parts)
        channels: list[_Channel] = []
        try:
            params = self.adopt_streams(params, channels, None, "")
        except _Invalid as e:
            for channel in channels:
                channel._abort(StreamError(channel.id, f"invalid params: {e}"))
            self.abort_raw_streams(params, f"invalid params: {e}")
            return self.reply_error(rid, -32602, f"invalid params: {e}",
                                    {"path": e.path, "reason": e.reason})
        job = self.on_request(rid, method, params, parts)
        if job is None:  # answered at once (a duplicate id): nobody reads the streams
            for channel in channels:
                channel._abort(StreamError(channel.id, "the request that carried it was "
                                           "refused"))
            return None
        job[0]._streams = channels
        for channel in channels:
            channel._call = job[0]
        return job

    def adopt_streams(self, value: Any, out: list[_Channel], call: Call | None,
                      path: str) -> Any:
        """``value`` with each stream object of the host made a :class:`StreamReader` or
        :class:`StreamWriter` (§12.1), collected in ``out``; _Invalid for a wrong one."""
        if type(value) is dict:
            if "$stream" in value:
                return self.adopt_stream(value, out, call, path)
            changed = None
            for k, v in value.items():
                if type(v) is dict or type(v) is list:
                    new = self.adopt_streams(v, out, call, _join(path, k))
                    if new is not v:
                        if changed is None:
                            changed = dict(value)
                        changed[k] = new
            return value if changed is None else changed
        if type(value) is list:
            return [self.adopt_streams(v, out, call, f"{path}[{i}]") if type(v) in (dict, list)
                    else v for i, v in enumerate(value)]
        return value

    def adopt_stream(self, v: dict[str, Any], out: list[_Channel], call: Call | None,
                     path: str) -> _Channel:
        sid, mode = v.get("$stream"), v.get("mode")
        if v.keys() != {"$stream", "mode"}:
            raise _Invalid(path, 'a stream has exactly the members "$stream" and "mode"')
        if type(sid) is not int or sid < 1 or sid > _I64_MAX:
            raise _Invalid(path, "$stream must be a positive integer")
        if mode not in ("read", "write"):
            raise _Invalid(path, f'the mode of stream {sid} is not "read" or "write"')
        with self.lock:
            if sid % 2 == 0:
                raise _Invalid(path, f"stream {sid} is not an id the host may open (the "
                               "host's ids are odd, SPEC.md §12.1)")
            if sid in self.host_stream_ids:
                raise _Invalid(path, f"stream {sid} is not a new id of the host (ids are "
                               "never reused, SPEC.md §12.1)")
            self.host_stream_ids.add(sid)
            channel = (StreamReader if mode == "read" else StreamWriter)(self, sid, call)
            self.streams[sid] = channel
        out.append(channel)
        return channel

    def abort_raw_streams(self, value: Any, why: str) -> None:
        """Abort the host's new streams found in ``value``, which nobody will read or write."""
        found: list[int] = []

        def walk(v: Any) -> None:
            if type(v) is dict:
                sid = v.get("$stream")
                if type(sid) is int and sid > 0 and sid % 2 == 1 and v.get("mode") in (
                        "read", "write"):
                    found.append(sid)
                for item in v.values():
                    walk(item)
            elif type(v) is list:
                for item in v:
                    walk(item)

        walk(value)
        for sid in found:
            with self.lock:
                new = sid not in self.host_stream_ids
                self.host_stream_ids.add(sid)
            if new:
                self.notify("$/stream.abort", {"stream": sid, "error": {
                    "code": -32006, "message": f"stream {sid} was not taken: {why}",
                    "data": {"stream": sid}}})

    def on_request(self, rid: Any, method: str, params: dict[str, Any],
                   parts: list[memoryview] | None = None) -> Any:
        """Answer a request, or return the job that will (§4, §5, §6)."""
        if self.shutting_down and method not in ("tether/invoke", "tether/retain"):
            # Calls on our handles are let through: they serve requests still in flight.
            return self.reply_error(rid, -32005, "shutting down: no new requests are accepted")
        if not self.initialized:
            if method == "tether/initialize":
                return self.initialize(rid, params)
            return self.reply_error(rid, -32002, "the session is not initialized: send "
                                    "tether/initialize first")
        entry = self.methods.get(method)
        if entry is not None:
            return self.start(rid, method, entry[1], entry[0], params, parts)
        if method.startswith("tether/"):
            if method == "tether/ping":
                return self.reply(rid, {})
            if method == "tether/invoke":
                return self.on_invoke(rid, params, parts)
            if method == "tether/retain":
                return self.on_retain(rid, params)
            if method == "tether/shutdown":
                return self.on_shutdown(rid)
            if method == "tether/initialize":
                return self.reply_error(rid, -32600, "invalid request: the session is already "
                                        "initialized")
            return self.not_found(rid, method, "not a tether/ request of protocol version 1")
        iface, dot, short = method.partition(".")
        if not dot or method.startswith("$/"):
            return self.not_found(rid, method, "not an application method (interface.method)")
        version = self.negotiated.get(iface)
        if version is None:
            reason = (f"interface {iface} was not negotiated in this session"
                      if iface in self.interfaces else f"this plugin has no interface {iface}")
            return self.not_found(rid, method, reason)
        needs = self.interfaces[iface].needs.get(short)
        if needs:
            return self.not_found(rid, method, f"{method} needs {iface} version "
                                  f"{' or '.join(map(str, needs))}; this session uses "
                                  f"version {version}")
        return self.not_found(rid, method, f"{iface} has no method {short}")

    def not_found(self, rid: Any, method: str, reason: str) -> None:
        """Answer -32601 with ``{"method", "reason"}`` (Appendix A)."""
        self.reply_error(rid, -32601, f"method not found: {method} ({reason})",
                         {"method": method, "reason": reason})

    def on_notification(self, msg: dict[str, Any], method: Any,
                        parts: list[memoryview] | None = None) -> None:
        """Handle a notification; none is ever answered (§3.5)."""
        params = msg.get("params", {})
        if msg.get("jsonrpc") != "2.0" or type(method) is not str or type(params) is not dict:
            return _report(f"ignored a malformed notification: {_shown(_dumps(msg))}")
        if not self.initialized:
            return  # notifications before initialize are ignored (§4.1)
        if method.startswith("$/stream.") and self.streams_on:
            return self.on_stream_message(method, params, parts)
        if method == "$/cancelRequest":
            rid = params.get("id")
            call = self.calls.get(rid) if _valid_id(rid) else None
            if call is not None:  # unknown or already answered ids are ignored (§7.1)
                self.cancel(call)
        elif method == "$/setLogLevel":
            level = params.get("level")
            level = _LEVEL_ALIASES.get(level, level) if isinstance(level, str) else level
            if level not in _LEVELS:
                return _report(f"ignored $/setLogLevel with an unknown level {level!r}")
            self.set_log_level(_LEVELS[level])
        elif method == "$/progress":
            # Progress for one of our requests that waits (§14.2); any other is ignored.
            token = params.get("token")
            pending = self.pending.get(token) if type(token) is int else None  # type: ignore
            if pending is not None and pending.on_progress is not None:
                pending.progressed = time.monotonic()
                try:
                    pending.on_progress(params)
                except Exception as e:  # noqa: BLE001 - the hook's failure is the caller's
                    _report(f"the progress hook of request {token} failed: {e!r}")
        elif method == "$/release":
            with self.lock:
                export = self.exports.get(params.get("handle"))  # type: ignore[arg-type]
                if export is not None:
                    export.retained = False
                    if not export.scopes:
                        del self.exports[export.id]  # type: ignore[arg-type]

    def on_stream_message(self, method: str, params: dict[str, Any],
                          parts: list[memoryview] | None) -> None:
        """``$/stream.data``, ``.end``, ``.credit`` and ``.abort`` from the host (§12.2-§12.4).
        Runs on the reading thread and never waits: data is buffered within the window."""
        sid = params.get("stream")
        with self.lock:
            channel = self.streams.get(sid) if type(sid) is int else None  # type: ignore
            if channel is None:
                return  # unknown, or no longer known: they may cross an abort (§12.4.6)
            problem: StreamError | None = None
            if method == "$/stream.data" and type(channel) is StreamReader:
                data = params.get("data")
                try:
                    if type(data) is str:
                        chunk: Any = _b64decode(data)
                    elif type(data) is dict:
                        chunk = bytes(_attachment_of(data, parts))
                    else:
                        raise ValueError("its data is not bytes")
                    channel._on_data(chunk)
                except ValueError as e:
                    problem = StreamError(sid, f"stream {sid}: a $/stream.data the plugin "  # type: ignore[arg-type]
                                          f"cannot read: {e}")
                except StreamError as e:
                    problem = e
            elif method == "$/stream.end" and type(channel) is StreamReader:
                channel._on_end()
            elif method == "$/stream.credit" and type(channel) is StreamWriter:
                n = params.get("bytes")
                if type(n) is int and n > 0:
                    channel._on_credit(n)
            elif method == "$/stream.abort":
                err = params.get("error")
                cause = err if _valid_error(err) and type(err) is dict else None
                why = str(cause["message"]) if cause else "no reason given"
                channel._fail(StreamError(sid, f"the host aborted stream {sid}: {why}",  # type: ignore[arg-type]
                                          cause))
        if problem is not None:  # the host broke the rules: stop it and fail the reader
            channel._abort(problem)

    def on_response(self, msg: dict[str, Any], parts: list[memoryview] | None = None,
                    has_streams: bool = False) -> None:
        """Route a message without ``method``: a response to one of our requests (§3.4)."""
        rid = msg.get("id", _MISSING)
        # What looks like a response (a result or an error) is never answered, even when
        # malformed (§3.4.2): answering it could collide with one of the host's own ids.
        response_like = "result" in msg or "error" in msg
        if rid is _MISSING:  # neither a request, a notification nor a response
            if response_like:
                return _report(f"ignored a response without an id: {_shown(_dumps(msg))}")
            return self.reply_error(None, -32600, "invalid request: a message without method "
                                    "or id")
        well_formed = (msg.get("jsonrpc") == "2.0" and ("result" in msg) != ("error" in msg)
                       and type(msg.get("result", {})) is dict
                       and _valid_error(msg.get("error", _MISSING)))
        if rid is None:
            # The host could not attribute something we sent. Never answered: answering a
            # response with id null could start an endless exchange of errors.
            return _report(f"the host sent a response with id null: {_shown(_dumps(msg))}")
        if not _valid_id(rid):
            if response_like:
                return _report(f"ignored a response with an invalid id: {_shown(_dumps(msg))}")
            return self.reply_error(None, -32600, "invalid request: the id is not a string or "
                                    "a 64-bit integer")
        if not well_formed:
            self.resolve(rid, {"error": {"code": -32600, "message": "the host answered with a "
                                         "malformed response"}}, quiet=True)
            if response_like:
                return _report(f"ignored a malformed response: {_shown(_dumps(msg))}")
            return self.reply_error(rid, -32600, "invalid request: a response has \"jsonrpc\": "
                                    "\"2.0\" and exactly one of result (an object) or error")
        if "result" in msg and (parts is not None or has_streams):
            waiting = type(rid) is int and rid in self.pending
            try:
                result = msg["result"]
                if parts is not None:
                    result = _resolve_attachments(result, parts)
                if has_streams:
                    if not waiting:  # nobody will read or write them (§12.4.4)
                        self.abort_raw_streams(result, "the response answered no request")
                    else:
                        result = self.adopt_streams(result, [], None, "result")
                msg = {**msg, "result": result}
            except (ValueError, _Invalid) as e:  # a local error (§2.8.2, §12.1)
                msg = {"jsonrpc": "2.0", "id": rid, "error": {
                    "code": -32602, "message": f"the host's answer cannot be read: {e}"}}
        self.resolve(rid, msg)

    def resolve(self, rid: Any, msg: dict[str, Any], quiet: bool = False) -> None:
        """Hand a response to the waiting request; report it when nobody waits."""
        with self.lock:
            pending = self.pending.pop(rid, None) if type(rid) is int else None
            if pending is None:
                if rid in self.abandoned:
                    self.abandoned.discard(rid)
                    self.expire_exports(rid)
                elif not quiet:
                    _report(f"ignored a response for an unknown id: {_shown(_dumps(msg))}")
                return
            if pending.call is not None and pending.call._outgoing:
                pending.call._outgoing.pop(rid, None)
            self.expire_exports(rid)
            pending.response = msg
        pending.latch.release()

    def on_oversized(self, frame: _Oversized) -> None:
        """Answer or report a frame above the maximum size (§2.6.2)."""
        seen = _peek_members(frame.prefix)
        rid = seen.get("id", _MISSING)
        data = {"size": frame.size, "max": self.reader.max_frame}
        what = f"a frame of {frame.size} bytes exceeds the maximum of {self.reader.max_frame}"
        if _valid_id(rid) and "method" in seen:
            _report(f"skipped {what} (request {rid!r})")
            return self.reply_error(rid, -32004, f"frame too large: {what}", data)
        if _valid_id(rid) and ("result" in seen or "error" in seen):
            _report(f"skipped {what} (a response to {rid!r})")
            return self.resolve(rid, {"error": {"code": -32004, "message": what, "data": data}})
        _report(f"skipped {what}; its id could not be read from its first bytes: "
                + _shown(frame.prefix[:512]))

    # ---- lifecycle (§4) ----------------------------------------------------------------

    def initialize(self, rid: Any, params: dict[str, Any]) -> None:
        """Negotiate versions and answer ``tether/initialize`` (§4.2-§4.4)."""
        problem = _check_initialize(params)
        if problem:
            return self.reply_error(rid, -32602, f"invalid params: {problem}",
                                    {"path": "params", "reason": problem})
        offered = params["protocolVersions"]
        common = [v for v in offered if v in PROTOCOL_VERSIONS]
        if not common:
            return self.unsupported(rid, "tether", offered, list(PROTOCOL_VERSIONS))
        chosen: dict[str, int] = {}
        for name, versions in params["interfaces"].items():
            iface = self.interfaces.get(name)
            if iface is None:
                continue  # not implemented: left out, the host decides (§4.3)
            both = [v for v in versions if v in iface.versions]
            if not both:
                return self.unsupported(rid, name, versions, iface.versions)
            chosen[name] = max(both)
        self.negotiated = chosen
        self.methods = {
            f"{name}.{short}": (method, version)
            for name, version in chosen.items()
            for short, method in self.interfaces[name].tables[version].items()
        }
        self.reader.max_frame = max_frame = params.get("maxFrameSize", DEFAULT_MAX_FRAME_SIZE)
        level = params.get("logLevel", "info")
        self.set_log_level(_LEVELS[_LEVEL_ALIASES.get(level, level)])
        # Each capability is announced back only when the host announced it (§10.2).
        host_caps = params.get("capabilities", {})
        capabilities = dict(self.capabilities)
        attachments = type(host_caps.get("attachments")) is dict
        streams = host_caps.get("streams")
        if attachments:
            capabilities["attachments"] = {}
        if type(streams) is dict:
            self.peer_credit = streams.get("initialCredit", DEFAULT_INITIAL_CREDIT)
            capabilities["streams"] = {"initialCredit": self.our_credit}
        # Progress and trace context (§14, §15): this SDK implements both.
        self.progress_on = type(host_caps.get("progress")) is dict
        if self.progress_on:
            capabilities["progress"] = {}
        if type(host_caps.get("traceContext")) is dict:
            capabilities["traceContext"] = {}
        # A chunk and its frame fit the maximum frame size: raw, or a third larger in base64.
        room = max_frame - 256
        self.max_chunk = min(MAX_CHUNK, room if attachments else room // 4 * 3)
        self.initialized = True
        self.reply(rid, {
            "protocolVersion": max(common),
            "plugin": {"name": self.name, "version": self.version},
            "capabilities": capabilities,
            "interfaces": {n: self.interfaces[n].described[v] for n, v in chosen.items()},
        })
        # From the frame after this answer both sides may use them (§2.8.3).
        self.attachments = self.reader.attachments = attachments
        self.streams_on = type(streams) is dict

    def unsupported(self, rid: Any, name: str, host: list[int], plugin: list[int]) -> None:
        """Answer -32001 naming both sides' versions (§4.3)."""
        self.reply_error(rid, -32001, f"no common version for interface {name}: host speaks "
                         f"{list(host)}, plugin speaks {list(plugin)}",
                         {"interface": name, "host": list(host), "plugin": list(plugin)})

    def set_log_level(self, level: int) -> None:
        self.log_level = level
        for hook in self.log_hooks:
            hook(level)

    def on_shutdown(self, rid: Any) -> None:
        """Stop accepting requests; answer once the in-flight ones are answered (§4.6)."""
        with self.lock:
            self.shutting_down = True
            if self.calls:
                self.shutdown_id = rid
                return
        self.reply(rid, {})

    def on_eof(self) -> None:
        """Stdin is closed: exit 0 within 2 seconds (§1.6). After a shutdown, in-flight requests
        may finish; otherwise, or when they take too long, they are cancelled."""
        self.eof = True
        self.fail_streams("the host closed the plugin's input (end of the session)")
        started = time.monotonic()
        while self.shutting_down and self.calls and time.monotonic() < started + 1.2:
            time.sleep(0.005)
        deadline = started + 1.8
        with self.lock:
            calls = list(self.calls.values())
            orphans = [p for p in self.pending.values() if p.call is None]
        for call in calls:
            self.cancel(call)
        for pending in orphans:
            with self.lock:
                if self.pending.pop(pending.id, None) is None:
                    continue
            pending.cancelled = True
            pending.latch.release()
        while self.calls and time.monotonic() < deadline:
            time.sleep(0.005)
        _exit(0)

    # ---- requests from the host -------------------------------------------------------

    def start(self, rid: Any, method: str, version: int | None, target: _Method,
              params: dict[str, Any], parts: list[memoryview] | None = None) -> Any:
        """Register a request whose handler is about to run; the job for :meth:`run_call`."""
        call = Call(rid, method, version)
        if "_meta" in params:
            call._take_meta(params)
            if not self.progress_on:
                call.progress_token = None  # a host that did not announce progress gets none
        # The leader runs the job at once (in lead()): the watchdog learns of it in the same
        # lock section that registers the call.
        me = get_ident()
        with self.lock:
            duplicate = rid in self.calls
            if not duplicate:
                self.calls[rid] = call
                self.inline_thread = me
                self.inline_seq += 1
                wake = self.watchdog_parked
                self.watchdog_parked = False
        if duplicate:
            return self.reply_error(rid, -32600, "invalid request: this id is already used by a "
                                    "request in flight (SPEC.md §3.2)")
        if wake:
            self.watchdog_latch.release()
        return call, target, params, parts

    def run_call(self, call: Call, target: _Method, params: dict[str, Any],
                 parts: list[memoryview] | None = None, leader: int | None = None) -> bool:
        """Call a handler on this thread and answer its request. ``leader``: this thread's id
        when it leads (:meth:`lead`); returns whether it still does."""
        tid = get_ident() if leader is None else leader
        _calls_by_thread[tid] = call
        try:
            body, attached, opened = self.answer(call, target, params, parts, tid)
        except SystemExit as e:  # sys.exit() in a handler ends the plugin, as without threads
            if e.code is not None and not isinstance(e.code, int):
                _report(str(e.code))
            _exit(e.code if isinstance(e.code, int) else 0 if e.code is None else 1)
        finally:
            del _calls_by_thread[tid]
        call._answered = True  # no $/progress after the answer (§14.2.1)
        self.send(body, attached, tid)
        if opened:
            self.start_streams(opened)
        with self.lock:  # one lock section for the call and for the leader's turn
            still = leader is not None and self.inline_thread == leader
            if still:
                self.inline_thread = None
            del self.calls[call.id]
            shutdown_id = _MISSING
            if not self.calls and self.shutdown_id is not _MISSING:
                shutdown_id, self.shutdown_id = self.shutdown_id, _MISSING
        if shutdown_id is not _MISSING:  # the last in-flight request: shutdown completes
            self.reply(shutdown_id, {})
        return still

    def answer(self, call: Call, target: _Method, params: dict[str, Any],
               parts: list[memoryview] | None = None, tid: int = 0
               ) -> tuple[bytes, list[Any], list[tuple[StreamWriter, Stream]]]:
        """Run the handler; its response, encoded: body, attachments, streams it opens.
        ``tid``: this thread's id."""
        opened: list[tuple[StreamWriter, Stream]] = []
        try:
            if call._cancelled:
                raise Cancelled()
            result = target.invoke(params, parts)
            if result is None:
                result = {}
            elif type(result) is not dict:
                raise TypeError(f"the handler returned a {type(result).__name__}, not a dict")
            msg = {"jsonrpc": "2.0", "id": call.id, "result": result}
            if not self.streams_on:
                body, attached = self.encode(msg, tid)
            else:
                if call._streams:
                    self.finish_streams(call, None)
                tid = tid or get_ident()
                self.opening[tid] = opened
                try:
                    body, attached = self.encode(msg, tid)
                finally:
                    del self.opening[tid]
            size = len(body) + sum(map(len, attached))
            if size > self.reader.max_frame:
                raise self.too_large(call.id, size)  # streams it opened are dropped below
            return body, attached, opened
        except Error as e:
            error = e.to_json()
        except RemoteError as e:
            error = {"code": -32603, "message": f"internal error: {e}",
                     "data": {"method": e.method, "cause": e.to_json()}}
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 - answered -32603; serving goes on
            import traceback

            _report(f"the handler of {call.method} (id {call.id!r}) failed:\n"
                    + "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip())
            error = {"code": -32603, "message": f"internal error: {type(e).__name__}: {e}",
                     "data": {"exception": type(e).__name__}}
        if opened:
            self.drop_streams(opened)
        if call._streams:
            self.finish_streams(call, Error(error["code"], error["message"],
                                            error.get("data", _MISSING)))
        try:
            body = _dumps({"jsonrpc": "2.0", "id": call.id, "error": error})
        except (TypeError, ValueError):  # data that JSON cannot carry
            del error["data"]
            body = _dumps({"jsonrpc": "2.0", "id": call.id, "error": error})
        return self.fitted(call.id, body), [], []

    # ---- streams (§12) -----------------------------------------------------------------

    def finish_streams(self, call: Call, error: Error | None) -> None:
        """The call is about to be answered: settle the streams its params carried."""
        streams, call._streams = call._streams, []
        for channel in streams:
            try:
                channel._finish(error)
            except Exception as e:  # noqa: BLE001 - the answer goes out whatever happens
                _report(f"cannot finish stream {channel.id}: {e!r}")

    def _open(self, source: Stream) -> dict[str, Any]:
        """Encoder hook: a :class:`Stream` in a message we send gets an even id (§12.1)."""
        opened = self.opening.get(get_ident())
        if opened is None:
            raise TypeError("a Stream can be sent only in a result or in request params")
        with self.lock:
            sid = self.next_stream
            self.next_stream += 2
            writer = StreamWriter(self, sid, None)
            self.streams[sid] = writer
        opened.append((writer, source))
        return {"$stream": sid, "mode": "read"}

    def drop_streams(self, opened: list[tuple[StreamWriter, Stream]]) -> None:
        """Streams opened in a message that was not sent: the host never knew them."""
        with self.lock:
            self.drop_streams_locked(opened)

    def drop_streams_locked(self, opened: list[tuple[StreamWriter, Stream]]) -> None:
        for writer, _ in opened:
            writer._done = True
            self.streams.pop(writer.id, None)

    def start_streams(self, opened: list[tuple[StreamWriter, Stream]]) -> None:
        """The message that carried them is sent: write each stream on a thread of its own,
        so that a host that reads slowly never holds up the reading (§12.5)."""
        for writer, source in opened:
            start_new_thread(writer._pump, (source,))

    def send_data(self, sid: int, chunk: Any) -> None:
        """Write one ``$/stream.data`` (§12.2): as an attachment when negotiated."""
        if self.attachments:
            self.send(b'{"jsonrpc":"2.0","method":"$/stream.data","params":{"stream":%d,'
                      b'"data":{"$bytes":0}}}' % sid, [chunk])
        else:
            self.send(b'{"jsonrpc":"2.0","method":"$/stream.data","params":{"stream":%d,'
                      b'"data":"%s"}}' % (sid, binascii.b2a_base64(chunk, newline=False)))

    def fail_streams(self, why: str) -> None:
        """The session ended: every unfinished stream fails with the reason (§12.4.5)."""
        with self.lock:
            for channel in list(self.streams.values()):
                channel._fail(StreamError(channel.id, f"stream {channel.id} failed: {why}"))

    def cancel(self, call: Call) -> None:
        """Cancel a handler and the requests it is waiting for (§7.2)."""
        with self.lock:
            if call._cancelled:
                return
            call._cancelled = True
            waiting = list(call._outgoing.values()) if call._outgoing else ()
            call._outgoing = None
            for pending in waiting:
                del self.pending[pending.id]
                self.abandoned.add(pending.id)
                pending.cancelled = True
            latch = call._latch  # None while no thread waits in wait_cancelled
        if latch is not None:
            latch.release()
        for channel in call._streams:  # at both ends, with -32800 (§12.4.3)
            channel._abort(Cancelled())
        for pending in waiting:
            self.notify("$/cancelRequest", {"id": pending.id})
        for pending in waiting:
            pending.latch.release()

    def on_invoke(self, rid: Any, params: dict[str, Any],
                  parts: list[memoryview] | None = None) -> Any:
        """The host calls a method of an object this plugin exported (§6.2)."""
        hid, method, args = params.get("handle"), params.get("method"), params.get("params", {})
        if type(hid) is not str or type(method) is not str or type(args) is not dict:
            return self.reply_error(rid, -32602, "invalid params: tether/invoke takes handle "
                                    "(string), method (string) and params (object)")
        export = self.exports.get(hid)
        if export is None:
            return self.reply_error(rid, -32003, f"unknown or expired handle {hid!r}",
                                    {"handle": hid})
        target = export._method(method)
        if target is None:
            return self.not_found(rid, method, f"interface {export.interface} of handle {hid} "
                                  f"has no method {method}")
        return self.start(rid, f"{export.interface}.{method}", None, target, args, parts)

    def on_retain(self, rid: Any, params: dict[str, Any]) -> None:
        """The host keeps a handle of ours after the request that carried it (§6.3)."""
        hid = params.get("handle")
        if type(hid) is not str:  # missing, or a list or object that no dict key could be
            return self.reply_error(rid, -32602, "invalid params: tether/retain takes handle "
                                    "(string)", {"path": "/handle", "reason": "expected a string"})
        with self.lock:
            export = self.exports.get(hid)
            if export is not None:
                export.retained = True
        if export is None:
            return self.reply_error(rid, -32003, f"unknown or expired handle {hid!r}",
                                    {"handle": hid})
        self.reply(rid, {})

    # ---- requests to the host ----------------------------------------------------------

    def request(self, method: str, params: dict[str, Any], timeout: float | None,
                on_progress: Callable[[dict[str, Any]], Any] | None = None) -> Any:
        """Send a request and wait for its result; see :func:`request`."""
        if not self.initialized:
            raise RuntimeError("the session is not initialized yet")
        call = current()
        pending = _Pending(call)
        with self.lock:
            if self.eof:
                raise Cancelled("the session ended")
            if call is not None and call._cancelled:
                raise Cancelled()
            pending.id = rid = self.next_id
            self.next_id += 1
        meta: dict[str, Any] = {}
        if on_progress is not None and self.progress_on:
            # The token is the request's id, unique among our pending requests (§14.1).
            meta["progressToken"] = rid
            pending.on_progress = on_progress
        if call is not None and call.trace_id is not None:
            # Calls made while handling a traced request carry its span on (§15.3).
            meta["traceparent"] = f"00-{call.trace_id}-{call.span_id}-01"
            if call.tracestate is not None:
                meta["tracestate"] = call.tracestate
        if meta:
            # In the params of the method called: for a handle, the inner params (§14.2.4).
            if method == "tether/invoke" and type(params.get("params")) is dict:
                params = {**params, "params": {**params["params"], "_meta": meta}}
            elif not method.startswith(("tether/", "$/")):
                params = {**params, "_meta": meta}
        tid = get_ident()
        self.exporting[tid] = exported = []
        self.opening[tid] = opened = []
        try:
            body, attached = self.encode({"jsonrpc": "2.0", "id": rid, "method": method,
                                          "params": params})
            size = len(body) + sum(map(len, attached))
            if size > self.reader.max_frame:
                raise ValueError(f"the {method} request of {size} bytes exceeds the session's "
                                 f"maximum frame size of {self.reader.max_frame}")
        except BaseException:
            self.drop_streams(opened)
            raise
        finally:
            del self.exporting[tid]
            del self.opening[tid]
        with self.lock:
            if call is not None:
                if call._cancelled:
                    self.drop_streams_locked(opened)
                    raise Cancelled()
                if call._outgoing is None:
                    call._outgoing = {}
                call._outgoing[rid] = pending
            self.pending[rid] = pending
            if exported:
                self.export_scopes[rid] = exported
                for export in exported:
                    export.scopes.add(rid)
        self.send(body, attached)
        self.start_streams(opened)
        self.yield_lead()  # the answer is read by another thread
        if not self.wait_answer(pending, timeout):
            with self.lock:
                mine = self.pending.get(rid) is pending
                if mine:
                    del self.pending[rid]
                    self.abandoned.add(rid)
                    if call is not None and call._outgoing:
                        call._outgoing.pop(rid, None)
            if mine:
                self.notify("$/cancelRequest", {"id": rid})
                raise TimeoutError(f"{method} got no answer within {timeout} s")
            pending.latch.acquire()  # the answer (or a cancel) arrived as time ran out
        if pending.cancelled:
            raise Cancelled("the session ended" if self.eof else "request cancelled")
        response = pending.response or {}
        if "error" in response:
            name = params.get("method", method) if method == "tether/invoke" else method
            raise RemoteError(str(name), response["error"])
        return response["result"]

    @staticmethod
    def wait_answer(pending: _Pending, timeout: float | None) -> bool:
        """Wait for the answer; False when ``timeout`` seconds passed without it. With progress
        the time-out measures silence: each ``$/progress`` restarts it (§14.3)."""
        if timeout is None:
            return pending.latch.acquire()
        started = time.monotonic()
        while True:
            last = max(started, pending.progressed)
            left = last + timeout - time.monotonic()
            if pending.latch.acquire(True, max(left, 0)):
                return True
            if pending.progressed <= last:
                return False

    def _export(self, export: Export) -> dict[str, str]:
        """Encoder hook: give an exported object its handle id, scoped to the request."""
        exported = self.exporting.get(get_ident())
        if exported is None:
            raise TypeError("an Export can only be sent in the params of a request")
        with self.lock:
            if export.id is None:
                export.id = f"h{self.next_handle}"
                self.next_handle += 1
            self.exports[export.id] = export
        exported.append(export)
        return {"$handle": export.id, "interface": export.interface}

    def expire_exports(self, rid: int) -> None:
        """The response to ``rid`` arrived: scoped handles it carried expire (caller locks)."""
        for export in self.export_scopes.pop(rid, ()):
            export.scopes.discard(rid)
            if not export.scopes and not export.retained:
                self.exports.pop(export.id, None)  # type: ignore[arg-type]


def _attachment_of(ref: dict[str, Any], parts: list[memoryview] | None) -> memoryview:
    """The attachment ``{"$bytes": i}`` stands for; ValueError when the frame lacks it."""
    i = ref.get("$bytes")
    if len(ref) != 1 or type(i) is not int or i < 0:
        raise ValueError('expected base64 or {"$bytes": i}')
    if parts is None or i >= len(parts):
        raise ValueError(f'{{"$bytes": {i}}} but the frame has {len(parts or ())} attachments')
    return parts[i]


def _valid_error(err: Any) -> bool:
    return err is _MISSING or (type(err) is dict and type(err.get("code")) is int
                               and type(err.get("message")) is str)


def _check_initialize(p: dict[str, Any]) -> str | None:
    """What is wrong with the params of ``tether/initialize``, or None (§4.2)."""
    versions = p.get("protocolVersions")
    if type(versions) is not list or not versions or \
            any(type(v) is not int or v < 1 for v in versions):
        return "protocolVersions must be a non-empty array of positive integers"
    interfaces = p.get("interfaces")
    if type(interfaces) is not dict or any(
            type(vs) is not list or any(type(v) is not int for v in vs)
            for vs in interfaces.values()):
        return "interfaces must map interface names to arrays of integers"
    host = p.get("host", {})
    if type(host) is not dict:
        return "host must be an object {name, version}"
    caps = p.get("capabilities", {})
    if type(caps) is not dict:
        return "capabilities must be an object"
    streams = caps.get("streams")
    if type(streams) is dict:
        credit = streams.get("initialCredit", DEFAULT_INITIAL_CREDIT)
        if type(credit) is not int or not 0 <= credit <= _I64_MAX:
            return "capabilities.streams.initialCredit must be a non-negative integer"
    size = p.get("maxFrameSize", DEFAULT_MAX_FRAME_SIZE)
    if type(size) is not int or size < MIN_MAX_FRAME_SIZE:
        return f"maxFrameSize must be an integer of at least {MIN_MAX_FRAME_SIZE}"
    level = p.get("logLevel", "info")
    if _LEVEL_ALIASES.get(level, level) not in _LEVELS:
        return "logLevel must be one of trace, debug, info, warn, error"
    return None


# --------------------------------------------------------------------------------------------
# Logging (§8)
# --------------------------------------------------------------------------------------------

_session: _Session | None = None


def log(level: str, message: str, /, *, target: str | None = None, **fields: Any) -> None:
    """Send a ``$/log`` to the host when the session's level allows it (§8.1).

    ``tether.log("debug", "put", target="kv", key=key, bytes=len(value))``: keyword arguments
    become ``fields``. Outside a session the line goes to stderr.
    """
    level = _LEVEL_ALIASES.get(level, level)
    if level not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}: use trace, debug, info, warn or error")
    session = _session
    if session is None:
        _report(f"{level} {target or '-'}: {message} {fields or ''}".rstrip())
    else:
        session.log(level, message, target, fields)


def log_enabled(level: str) -> bool:
    """Whether a ``$/log`` at ``level`` would be sent (to skip building costly messages)."""
    session = _session
    return _LEVELS[_LEVEL_ALIASES.get(level, level)] >= (
        session.log_level if session else _LEVELS["info"])


def _bridge_logging(logging: Any) -> None:
    """Forward records of the ``logging`` module to ``$/log``, at the session's level.

    The root logger's level follows the session's (``$/setLogLevel``), so disabled records cost
    nothing. ``extra={...}`` members of a record become the ``fields`` of its ``$/log``.
    """
    session = _session
    if session is None:
        return
    logging.addLevelName(5, "TRACE")
    standard = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
        "message", "asctime", "taskName"}
    python_level = [5, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR]

    class TetherHandler(logging.Handler):
        """Sends each record as a ``$/log`` notification."""

        def emit(self, record: Any) -> None:
            n = record.levelno
            level = ("trace" if n < 10 else "debug" if n < 20 else "info" if n < 30
                     else "warn" if n < 40 else "error")
            try:
                message = record.getMessage()
                if record.exc_info:
                    message += "\n" + logging.Formatter().formatException(record.exc_info)
                fields = {k: v for k, v in record.__dict__.items() if k not in standard}
                session.log(level, message, record.name, fields)
            except Exception:  # noqa: BLE001 - logging must never break a handler
                self.handleError(record)

    root = logging.getLogger()
    root.addHandler(TetherHandler())

    def follow(level: int) -> None:
        root.setLevel(python_level[level])

    session.log_hooks.append(follow)
    follow(session.log_level)


class _LoggingWatcher:
    """Import hook: bridges ``logging`` when the plugin first imports it, so that plugins that
    never log through it do not pay its ~8 ms import at start-up."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "logging":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None and spec.loader is not None:
                spec.loader = _BridgingLoader(spec.loader)
                return spec
        return None


class _BridgingLoader:
    """Wraps the loader of ``logging``: runs the module, then bridges it."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        _bridge_logging(module)


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def request(method: str, params: dict[str, Any] | None = None, *,
            timeout: float | None = None,
            on_progress: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """Send a request to the host and wait for its result (an object).

    Inside a handler, the request belongs to the call being handled: when that call is
    cancelled, this one is cancelled too and :class:`Cancelled` is raised at once (§7.2).
    An error answer raises :class:`RemoteError`; ``timeout`` raises ``TimeoutError`` after
    cancelling the request (§7.3). :class:`Export` objects in ``params`` become handles.

    ``on_progress`` asks the host for progress (§14, when it announced ``progress``): it is
    called on the reading thread with the params of each ``$/progress`` for this request
    (``token``, ``done``, ``total``, ``message``), and ``timeout`` then restarts on each one.
    Inside a traced handler the request carries the handler's span on (§15).
    """
    session = _session
    if session is None:
        raise RuntimeError("tether.request() works only while serving")
    return session.request(method, params or {}, timeout, on_progress)


def notify(method: str, params: dict[str, Any] | None = None) -> None:
    """Send a notification to the host."""
    session = _session
    if session is None:
        raise RuntimeError("tether.notify() works only while serving")
    session.notify(method, params or {})


def _exit(code: int) -> None:
    """End the process now: flush what Python buffered, skip the join of worker threads."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(code)


TRANSPORT_ENV = "TETHER_TRANSPORT"


def _transport(value: str | None) -> tuple[int, int] | None:
    """The (read, write) descriptors that ``TETHER_TRANSPORT`` announces, None for stdio (§13.2).

    Raises ValueError, with a sentence for a person, on a value outside the grammar.
    """
    if not value or value == "stdio":
        return None
    expected = "expected `stdio` or `fds:<read fd>,<write fd>`, two distinct descriptors of 3 or more"
    parts = value[4:].split(",") if value.startswith("fds:") else []
    if (len(parts) != 2 or not all(p.isascii() and p.isdigit() and (p == "0" or p[0] != "0") for p in parts)
            or int(parts[0]) < 3 or int(parts[1]) < 3 or parts[0] == parts[1]):
        raise ValueError(f'unknown transport "{value}" in {TRANSPORT_ENV} ({expected})')
    return int(parts[0]), int(parts[1])


def serve(name: str, version: str, *interfaces: Interface,
          cookie: tuple[str, str] | None = REFERENCE_COOKIE, host_app: str | None = None,
          capabilities: dict[str, Any] | None = None,
          initial_credit: int = DEFAULT_INITIAL_CREDIT) -> None:
    """Serve the interfaces over stdin and stdout until stdin closes; never returns.

    When the host announces the ``fds`` transport (``TETHER_TRANSPORT=fds:R,W``, §13), frames
    travel on descriptors R and W instead, the session ends with R, and stdin, stdout and stderr
    are left as they are: ``print`` and ``input`` reach the user's terminal.

    ``cookie`` is the (name, value) environment variable the host sets (§1.3), None to skip the
    check; ``host_app`` names the host application in the message for people who start the
    plugin by hand. The process exits 0 at the end of stdin, 1 when the cookie is wrong, 2 when
    the session cannot go on (§1.5). Exit happens through ``os._exit`` after flushing stdio, so
    ``atexit`` functions do not run: clean up in a handler of ``tether/shutdown`` instead.

    Attachments (§2.8) and streams (§12) are used when the host announces them.
    ``initial_credit`` is the number of bytes the host may send on each stream the plugin reads
    before the plugin grants more: the most a stream buffers while nobody reads it (§12.3).
    """
    global _session
    if type(initial_credit) is not int or initial_credit < 1:
        raise ValueError("initial_credit must be a positive number of bytes")
    if cookie is not None and os.environ.get(cookie[0]) != cookie[1]:
        host = f"by {host_app}" if host_app else "by its host application"
        sys.stderr.write(
            f"{name} is a Tether plugin and is not meant to be run directly: it is started "
            f"{host}, which sets {cookie[0]}. (This check stops a plugin run by hand from "
            f"waiting silently for input; it is not a security measure.)\n")
        sys.stderr.flush()
        os._exit(1)
    try:
        fds = _transport(os.environ.pop(TRANSPORT_ENV, None))
    except ValueError as e:
        _report(str(e))
        os._exit(1)
    if fds is not None:
        # §13: frames on the two inherited descriptors; 0, 1 and 2 stay what the host gave (the
        # user's terminal, say). Close-on-exec, so that our own children do not inherit them.
        in_fd, out_fd = fds
        try:
            for fd in fds:
                os.set_inheritable(fd, False)
        except OSError as e:
            _report(f"cannot use descriptor {fd} of {TRANSPORT_ENV}: {e} (the host did not pass it)")
            os._exit(1)
    else:
        # §8.4: frames get a private copy of stdout; descriptor 1 (and Python's sys.stdout) now
        # lead to stderr, so stray prints and child processes cannot corrupt the stream. Stdin
        # gets the same treatment, so that a child process cannot swallow frames meant for us.
        out_fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout.flush()  # anything printed before serve() goes to stderr too
        sys.stdout = sys.stderr
        in_fd = os.dup(0)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    _session = _Session(name, version, interfaces, dict(capabilities or {}), in_fd, out_fd)
    _session.our_credit = initial_credit
    if "logging" in sys.modules:
        _bridge_logging(sys.modules["logging"])
    else:
        sys.meta_path.insert(0, _LoggingWatcher())
    try:
        _session.serve()
    except KeyboardInterrupt:  # SIGINT reached the main thread: end as a program does
        _report("interrupted")
        _exit(130)
