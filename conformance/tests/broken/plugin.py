#!/usr/bin/env python3
"""A minimal, correct Tether plugin (kv v1/v2 and counter v1 in one process), written from
scratch with the standard library only, that breaks exactly one rule when given a flag:

    python3 plugin.py [--break FLAG]

It proves the conformance judge: with no flag every check passes; with a flag, the checks of
that rule (and only those) fail. The flags are listed in BREAKS below.
"""

import base64
import binascii
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time

BREAKS = {
    "stdout-print": "writes a stray line on the frame stream on every kv.put",
    "adds-itself": "stores a+b instead of what the host's adder answered",
    "ignore-cancel": "ignores $/cancelRequest",
    "no-exit-on-eof": "keeps running when stdin reaches end of file",
    "answers-notifications": "answers notifications with an error",
    "wrong-missing-code": "answers a missing key with -32602 instead of 1001",
    "sequential": "handles one request at a time, in order (one worker thread)",
    "no-cookie-check": "does not check the magic cookie (hangs on stdin when run by hand)",
    "leaves-child": "starts a child process that outlives the plugin",
    "no-debug-log": "never sends the debug $/log of kv.put",
    "content-type": "writes the Content-Type line §2.2 allows in every frame (breaks nothing: proves the judge accepts it)",
    "extra-header": "writes an extra header `X-Extra: 1` after Content-Length in every frame",
    "lists-unoffered": "lists every interface it implements in the initialize answer, offered or not",
    "eager-shutdown": "answers tether/shutdown at once, before the requests in flight",
    "callback-code": "answers a counter.put whose sum failed with the sum's own error code",
    "handle-32601": "answers tether/invoke and tether/retain on an unknown handle with -32601",
    "malformed-as-response": "takes {\"jsonrpc\":\"2.0\"} for a response and ignores it",
    "app-notification": "sends an application notification right after the initialize answer (breaks nothing)",
    "late-retain": "sends tether/retain for the adder handle after answering counter.put",
    "hangs-after-handshake": "answers tether/initialize and tether/ping, then nothing else",
    "exit-at-once": "exits with status 3 at start, after the cookie check",
    "silent": "reads stdin and never writes anything",
    "garbage": "answers every frame with a line of text",
    "lf-frames": "ends its header lines with LF instead of CRLF",
    "log-below-level": "sends its debug $/log whatever the session's level",
    "bad-log": "also sends a $/log with a level that does not exist on every kv.put",
    "strict-reader": "reads only the exact header `Content-Length: N` (a naive reader)",
    "ignores-max-frame": "reads and serves frames above maxFrameSize",
    "rounds-big-ids": "echoes integer ids above 2^32 wrapped to 32 bits, as an int32 would",
    "progress-token-as-string": "echoes a progress token as a string (\"1\" for 1, \"x\" kept)",
    "progress-goes-back": "reports done going back once in the progress of a large kv.put",
    "progress-unasked": "reports the progress of every large kv.put, with or without a token",
}

# Attachments and streams (§2.8, §9.5, §12), which this plugin does not implement: for these
# flags streams.py serves kv and blob through the Python SDK with that one rule broken.
STREAM_BREAKS = {
    "exceeds-credit": "sends stream chunks beyond the credit the host granted",
    "ignores-abort": "keeps producing a stream after the host's $/stream.abort",
    "odd-stream-ids": "opens its streams with odd ids (the host's parity)",
    "no-stream-end": "never sends $/stream.end",
    "stores-partial-upload": "blob.upload stores what it read of an aborted or cancelled stream",
    "blocks-when-stalled": "a stream waiting for credit blocks every other blob call",
    "attachments-with-streams": "uses attachments whenever streams are negotiated, announced or not",
    "attachments-bad-ref": "reads a reference to a missing attachment as empty bytes",
    "attachments-no-base64": "refuses base64 bytes once attachments are negotiated",
}
BREAKS.update(STREAM_BREAKS)

COOKIE_KEY = "TETHER_MAGIC_COOKIE"
COOKIE_VALUE = "7c1e4b9a-tether-reference-plugin"
LEVELS = ["trace", "debug", "info", "warn", "error"]

flag = None
if len(sys.argv) == 3 and sys.argv[1] == "--break" and sys.argv[2] in BREAKS:
    flag = sys.argv[2]
elif len(sys.argv) != 1:
    sys.stderr.write("usage: plugin.py [--break FLAG]; flags: %s\n" % ", ".join(BREAKS))
    sys.exit(1)

# §1.3: check the cookie before reading anything.
if flag != "no-cookie-check" and os.environ.get(COOKIE_KEY) != COOKIE_VALUE:
    sys.stderr.write("This program is a Tether plugin; it is not meant to be run directly.\n")
    sys.exit(1)

if flag in STREAM_BREAKS:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import streams  # noqa: E402

    streams.run(flag)

# §8.4: keep a private descriptor for frames, point fd 1 at stderr.
frames_fd = os.dup(1)
os.dup2(2, 1)
out = os.fdopen(frames_fd, "wb", buffering=0)
out_lock = threading.Lock()


def write_raw(data):
    with out_lock:
        out.write(data)


def send(msg):
    body = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    header = b"Content-Length: %d\r\n\r\n" % len(body)
    if flag == "content-type":
        header = b"Content-Length: %d\r\nContent-Type: application/vscode-jsonrpc; charset=utf8\r\n\r\n" % len(body)
    elif flag == "extra-header":
        header = b"Content-Length: %d\r\nX-Extra: 1\r\n\r\n" % len(body)
    elif flag == "lf-frames":
        header = b"Content-Length: %d\n\n" % len(body)
    elif flag == "garbage":
        write_raw(b"hello from the plugin\n")
        return
    elif flag == "silent":
        return
    write_raw(header + body)


def answer_id(rid):
    if flag == "rounds-big-ids" and isinstance(rid, int) and abs(rid) >= 2**32:
        return rid & 0xFFFFFFFF
    return rid


def respond(rid, result):
    send({"jsonrpc": "2.0", "id": answer_id(rid), "result": result})


def respond_error(rid, code, message, data=None):
    err = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    send({"jsonrpc": "2.0", "id": answer_id(rid), "error": err})


class RpcError(Exception):
    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class Cancelled(Exception):
    pass


state_lock = threading.Lock()
state = {"max_frame": 32 * 1024 * 1024, "initialized": False, "shutdown": False, "level": "info", "kv_version": 0, "counter": False, "progress": False}
store = {}
counts = {}
# The host's requests in flight: id -> {"cancelled": bool, "invokes": set of our ids}.
inflight = {}
# Our requests to the host: id -> [event, response].
pending = {}
next_id = [0]


def log(level, message, fields):
    if flag == "bad-log":
        send({"jsonrpc": "2.0", "method": "$/log", "params": {"level": "verbose", "message": message}})
    if flag == "log-below-level" or LEVELS.index(level) >= LEVELS.index(state["level"]):
        send({"jsonrpc": "2.0", "method": "$/log", "params": {"level": level, "message": message, "target": "broken", "fields": fields}})


def invoke(host_rid, handle, method, params):
    with state_lock:
        next_id[0] += 1
        my_id = next_id[0]
        slot = [threading.Event(), None]
        pending[my_id] = slot
        entry = inflight.get(host_rid)
        if entry is not None:
            entry["invokes"].add(my_id)
    send({"jsonrpc": "2.0", "id": my_id, "method": "tether/invoke", "params": {"handle": handle, "method": method, "params": params}})
    slot[0].wait()
    with state_lock:
        pending.pop(my_id, None)
        if entry is not None:
            entry["invokes"].discard(my_id)
    if slot[1] == "cancelled":
        raise Cancelled()
    resp = slot[1]
    if "error" in resp:
        e = resp["error"]
        if flag == "callback-code":
            raise RpcError(e.get("code", -32603), "the adder failed: %s" % e.get("message"), e.get("data"))
        raise RpcError(-32603, "the adder failed: %s" % e.get("message"), {"cause": e})
    return resp["result"]


def schema(props, required):
    return {"type": "object", "properties": props, "required": required}


BYTES = {"type": "string", "contentEncoding": "base64"}
KEY = {"type": "string", "minLength": 1}
HANDLE = schema({"$handle": {"type": "string", "minLength": 1}, "interface": {"const": "adder"}}, ["$handle", "interface"])
KV_METHODS = {
    "put": {"params": schema({"key": KEY, "value": BYTES}, ["key", "value"]), "result": {"type": "object"}},
    "get": {"params": schema({"key": KEY}, ["key"]), "result": schema({"value": BYTES}, ["value"])},
    "delete": {"params": schema({"key": KEY}, ["key"]), "result": schema({"existed": {"type": "boolean"}}, ["existed"])},
}
COUNTER_METHODS = {
    "put": {"params": schema({"key": {"type": "string"}, "value": {"type": "integer"}, "adder": HANDLE}, ["key", "value", "adder"]), "result": {"type": "object"}},
    "get": {"params": schema({"key": {"type": "string"}}, ["key"]), "result": schema({"value": {"type": "integer"}}, ["value"])},
}


def initialize(params):
    offered = params.get("protocolVersions")
    if not isinstance(offered, list) or 1 not in offered:
        raise RpcError(-32001, "no common version for interface tether", {"interface": "tether", "host": offered, "plugin": [1]})
    result_ifaces = {}
    ifaces = params.get("interfaces") or {}
    for name, mine in (("kv", [1, 2]), ("counter", [1])):
        if name not in ifaces and flag != "lists-unoffered":
            continue
        common = [v for v in ifaces.get(name, mine) if v in mine]
        if not common:
            raise RpcError(-32001, "no common version for interface %s" % name, {"interface": name, "host": ifaces[name], "plugin": mine})
        version = max(common)
        if name == "kv":
            methods = {k: v for k, v in KV_METHODS.items() if version == 2 or k != "delete"}
        else:
            methods = COUNTER_METHODS
        result_ifaces[name] = {"version": version, "methods": methods}
    with state_lock:
        state["initialized"] = True
        state["max_frame"] = params.get("maxFrameSize") or state["max_frame"]
        state["level"] = params.get("logLevel") or "info"
        state["kv_version"] = result_ifaces.get("kv", {}).get("version", 0)
        state["counter"] = "counter" in result_ifaces
        # Progress (§14), announced back when offered.
        state["progress"] = isinstance((params.get("capabilities") or {}).get("progress"), dict)
    capabilities = {"progress": {}} if state["progress"] else {}
    return {"protocolVersion": 1, "plugin": {"name": "broken-python", "version": "0.1.0"}, "capabilities": capabilities, "interfaces": result_ifaces}


PROGRESS_STEP = 16384


def put_progress(params, length):
    """The $/progress of a kv.put (§9.1, §14): one per 16384 bytes and one at the end, when the
    put carries a token and progress was negotiated."""
    meta = params.get("_meta")
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    if flag == "progress-unasked" and token is None:
        token = "unasked"
    if token is None or length <= PROGRESS_STEP or not (state["progress"] or flag == "progress-unasked"):
        return
    if flag == "progress-token-as-string":
        token = str(token)
    steps = list(range(PROGRESS_STEP, length, PROGRESS_STEP)) + [length]
    if flag == "progress-goes-back" and len(steps) > 2:
        steps[1] = steps[0] - 1
    for done in steps:
        send({"jsonrpc": "2.0", "method": "$/progress", "params": {"token": token, "done": done, "total": length}})


def need_str(params, name):
    v = params.get(name)
    if not isinstance(v, str) or (name == "key" and v == ""):
        raise RpcError(-32602, "invalid params: %s must be a non-empty string" % name)
    return v


def need_bytes(params, name):
    v = params.get(name)
    if not isinstance(v, str):
        raise RpcError(-32602, "invalid params: %s must be base64" % name)
    try:
        return base64.b64decode(v.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise RpcError(-32602, "invalid params: %s is not padded base64" % name)


def handle(rid, method, params):
    if method == "tether/ping":
        return {}
    if method == "tether/shutdown":
        state["shutdown"] = True
        # §4.6: answer the requests in flight first (serve forgets a request once answered).
        while flag != "eager-shutdown":
            with state_lock:
                if not any(r != rid for r in inflight):
                    break
            time.sleep(0.01)
        return {}
    if method in ("tether/invoke", "tether/retain"):
        handle_id = params.get("handle")
        if flag == "handle-32601":
            raise RpcError(-32601, "method not found: %s" % method)
        raise RpcError(-32003, "unknown handle: %s" % handle_id, {"handle": handle_id})
    kv = state["kv_version"]
    if method in ("kv.put", "kv.get") and kv or method == "kv.delete" and kv == 2:
        key = need_str(params, "key")
        if method == "kv.put":
            value = need_bytes(params, "value")
            if flag == "stdout-print":
                write_raw(b"storing a value\n")
            if flag != "no-debug-log":
                log("debug", "put", {"key": key, "bytes": len(value)})
            store[key] = value
            put_progress(params, len(value))
            return {}
        if method == "kv.get":
            if key not in store:
                if flag == "wrong-missing-code":
                    raise RpcError(-32602, "no such key")
                raise RpcError(1001, "key not found: %s" % key, {"key": key})
            return {"value": base64.b64encode(store[key]).decode("ascii")}
        return {"existed": store.pop(key, None) is not None}
    if method in ("counter.put", "counter.get") and state["counter"]:
        key = params.get("key")
        if not isinstance(key, str):
            raise RpcError(-32602, "invalid params: key must be a string")
        if method == "counter.get":
            return {"value": counts.get(key, 0)}
        value, adder = params.get("value"), params.get("adder")
        if not isinstance(value, int) or not isinstance(adder, dict) or not isinstance(adder.get("$handle"), str):
            raise RpcError(-32602, "invalid params: value must be an integer and adder a handle")
        a = counts.get(key, 0)
        result = invoke(rid, adder["$handle"], "sum", {"a": a, "b": value})
        counts[key] = a + value if flag == "adds-itself" else result["result"]
        return {}
    raise RpcError(-32601, "method not found: %s" % method, {"method": method, "reason": "unknown"})


def serve(rid, method, params):
    try:
        result = handle(rid, method, params)
        respond(rid, result)
        if flag == "late-retain" and method == "counter.put":
            # Too late (§6.3): the put that carried the handle is answered.
            send({"jsonrpc": "2.0", "id": "late-retain-%s" % rid, "method": "tether/retain", "params": {"handle": params["adder"]["$handle"]}})
    except Cancelled:
        respond_error(rid, -32800, "request cancelled")
    except RpcError as e:
        respond_error(rid, e.code, e.message, e.data)
    except Exception as e:  # noqa: BLE001 - a handler bug is an internal error
        respond_error(rid, -32603, "internal error: %r" % e)
    # Forgotten only once answered: a shutdown waits for this (§4.6).
    with state_lock:
        inflight.pop(rid, None)


def cancel(rid):
    if flag == "ignore-cancel":
        return
    with state_lock:
        entry = inflight.pop(rid, None)
        if entry is None:
            return
        mine = list(entry["invokes"])
    for my_id in mine:
        send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": my_id}})
        slot = pending.get(my_id)
        if slot is not None:
            slot[1] = "cancelled"
            slot[0].set()


def on_message(body):
    try:
        msg = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        respond_error(None, -32700, "parse error")
        return
    if isinstance(msg, list):
        respond_error(None, -32600, "batches are not supported")
        return
    if not isinstance(msg, dict):
        respond_error(None, -32600, "invalid request")
        return
    has_id = "id" in msg
    rid = msg.get("id")
    if has_id and (rid is None or isinstance(rid, bool) or not isinstance(rid, (int, str))):
        respond_error(None, -32600, "invalid request: bad id")
        return
    if msg.get("jsonrpc") != "2.0":
        if has_id:
            respond_error(rid, -32600, "invalid request: jsonrpc must be 2.0")
        return
    method = msg.get("method")
    if method is None and "result" not in msg and "error" not in msg and flag != "malformed-as-response":
        # Neither a request, a notification nor a response (§3.4 item 2).
        respond_error(rid if has_id else None, -32600, "invalid request")
        return
    if method is None:
        # A response to one of our invokes.
        slot = pending.get(rid) if has_id else None
        if slot is not None and slot[1] is None:
            slot[1] = msg
            slot[0].set()
        return
    params = msg.get("params", {})
    if not isinstance(params, dict):
        if has_id:
            respond_error(rid, -32600, "invalid request: params must be an object")
        return
    if not has_id:
        if flag == "answers-notifications":
            respond_error(None, -32601, "this was a notification")
        if method == "$/cancelRequest":
            cancel(params.get("id"))
        elif method == "$/setLogLevel" and params.get("level") in LEVELS:
            state["level"] = params["level"]
        return
    if method == "tether/initialize":
        if state["initialized"]:
            respond_error(rid, -32600, "already initialized")
            return
        try:
            respond(rid, initialize(params))
        except RpcError as e:
            respond_error(rid, e.code, e.message, e.data)
            return
        if flag == "app-notification":
            send({"jsonrpc": "2.0", "method": "broken.ready", "params": {"pid": os.getpid()}})
        return
    if not state["initialized"]:
        respond_error(rid, -32002, "not initialized")
        return
    if state["shutdown"]:
        respond_error(rid, -32005, "shutting down")
        return
    if flag == "hangs-after-handshake" and method != "tether/ping":
        return
    with state_lock:
        inflight[rid] = {"cancelled": False, "invokes": set()}
    if flag == "sequential":
        work.put((rid, method, params))
    else:
        threading.Thread(target=serve, args=(rid, method, params), daemon=True).start()


ID_IN_PREFIX = re.compile(rb'"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?[0-9]+)')


def read_frames(stream):
    """Yields ("frame", body) and ("oversized", declared length, bounded prefix)."""
    while True:
        length, broken = None, False
        while True:
            line = stream.readline()
            if not line:
                return
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if flag == "strict-reader" and not line.startswith(b"Content-Length: "):
                continue
            if name.strip().lower() == "content-length":
                value = value.strip()
                broken |= length is not None or not value.isdigit()
                length = int(value) if value.isdigit() else None
        if length is None or broken:
            sys.stderr.write("skipped bytes that are not a frame\n")
            continue
        if length > state["max_frame"] and flag != "ignores-max-frame":
            prefix = stream.read(min(length, 4096))
            left = length - len(prefix)
            while left > 0:
                chunk = stream.read(min(left, 65536))
                if not chunk:
                    return
                left -= len(chunk)
            yield ("oversized", length, prefix)
            continue
        body = stream.read(length)
        if len(body) < length:
            return
        yield ("frame", body)


def on_oversized(length, prefix):
    found = ID_IN_PREFIX.search(prefix)
    if found is None or b'"method"' not in prefix:
        sys.stderr.write("skipped an oversized frame of %d bytes\n" % length)
        return
    rid = json.loads(found.group(1))
    respond_error(rid, -32004, "frame too large", {"size": length, "max": state["max_frame"]})


work = queue.Queue()


def worker():
    while True:
        serve(*work.get())


def main():
    if flag == "exit-at-once":
        sys.stderr.write("broken plugin: exiting at once, as asked\n")
        sys.exit(3)
    if flag == "sequential":
        threading.Thread(target=worker, daemon=True).start()
    if flag == "leaves-child":
        # The last argument marks the process, so that the tests can look for it.
        subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(30)", "tether-broken-leftover"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    for item in read_frames(sys.stdin.buffer):
        if item[0] == "frame":
            on_message(item[1])
        else:
            on_oversized(item[1], item[2])
    if flag == "no-exit-on-eof":
        while True:
            time.sleep(1)
    # Cancel what is in flight, then leave without waiting for handler threads.
    for rid in list(inflight):
        cancel(rid)
    out.flush()
    os._exit(0)


main()
