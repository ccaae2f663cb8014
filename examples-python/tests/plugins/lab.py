"""A test plugin exercising SDK features the reference examples do not use."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import tether  # noqa: E402

if os.environ.get("LAB_IMPORT_LOGGING"):
    import logging  # noqa: F401 - bridged by serve() because it is already imported


def shout(text: str) -> dict:
    """Everything that could break stdout: print, fd 1, a child process, sys.__stdout__."""
    print(text)
    os.write(1, f"fd1 {text}\n".encode())
    subprocess.run(["echo", f"child {text}"], check=True)
    sys.__stdout__.write(f"dunder {text}\n")
    sys.__stdout__.flush()
    return {}


def fail() -> dict:
    return {"never": 1 / 0}


def refuse() -> dict:
    raise tether.Error(4242, "refused", {"why": "test"})


def wait(seconds: float) -> dict:
    call = tether.current()
    if call.wait_cancelled(seconds):
        raise tether.Cancelled()
    return {"cancelled": call.cancelled}


def nap(seconds: float) -> dict:
    """Blocks outside the SDK: the reading must go on without it."""
    import time
    time.sleep(seconds)
    return {}


def spin(seconds: float) -> dict:
    """Burns CPU, holding the GIL as much as Python lets it."""
    import time
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return {"loops": n}


def poll_cancel(seconds: float) -> dict:
    """Polls its cancellation flag between short sleeps (no SDK wait)."""
    import time
    call = tether.current()
    end = time.monotonic() + seconds
    while not call.cancelled and time.monotonic() < end:
        time.sleep(0.005)
    return {"cancelled": call.cancelled}


def log_py(message: str, level: str) -> dict:
    import logging  # lazily: the SDK bridges the module when it is first imported

    logging.getLogger("lab").log(getattr(logging, level), message, extra={"key": message})
    return {}


class Visitor:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def greet(self, name: str) -> dict:
        self.seen.append(name)
        return {"text": f"hello {name}"}


def visit(retain: bool) -> dict:
    """Pass a plugin object to the host as a handle; the host calls it back."""
    result = tether.request("host.visit", {"visitor": tether.Export(Visitor(), "visitor"),
                                           "retain": retain})
    return {"host": result}


def echo_bytes(data: bytes) -> dict:
    return {"data": data, "len": len(data)}


def types(i: int, f: float, b: bool, s: str, items: list, obj: dict, opt: int = -1) -> dict:
    return {"i": i, "f": f, "b": b, "s": s, "items": items, "obj": obj, "opt": opt}


def call_host(method: str, timeout: float) -> dict:
    try:
        return {"result": tether.request(method, {}, timeout=timeout)}
    except TimeoutError:
        return {"timeout": True}
    except tether.RemoteError as e:
        return {"remote_error": e.code}


def many_bytes(first: bytes, rest: list, note: str) -> dict:
    """Bytes in several places of one frame (attachments in document order, §2.8)."""
    return {"rest": rest, "note": note, "first": first, "nested": {"again": first}}


def sink(data: tether.StreamReader, stop_after: int) -> dict:
    """Reads up to ``stop_after`` bytes with readinto, then returns: the SDK aborts the rest."""
    buf = bytearray(stop_after)
    view, got = memoryview(buf), 0
    while got < stop_after:
        n = data.readinto(view[got:])
        if not n:
            break
        got += n
    return {"got": got, "head": bytes(buf[:got][:16])}


def read_all(data: tether.StreamReader, chunk: int) -> dict:
    """Reads to the end with read(chunk); the size, and the number of reads of each length."""
    total, lengths = 0, {}
    while True:
        piece = data.read(chunk)
        if not piece:
            return {"size": total, "reads": lengths}
        total += len(piece)
        lengths[str(len(piece))] = lengths.get(str(len(piece)), 0) + 1


def hold(data: tether.StreamReader) -> dict:
    """Never reads: waits for the request to be cancelled, or for the session to end."""
    call = tether.current()
    call.wait_cancelled(60)
    if call.cancelled:
        raise tether.Cancelled()
    return {}


def block_reading(data: tether.StreamReader) -> dict:
    """Blocks in a read until data, the end, an abort or the end of the session."""
    return {"first": data.read(1)}


def write_to(out: tether.StreamWriter, size: int, fail: bool = False) -> dict:
    """Writes ``size`` bytes (byte i = i mod 256) to a stream the host reads."""
    pattern = bytes(range(256)) * 256
    sent = 0
    while sent < size:
        n = min(size - sent, len(pattern))
        out.write(pattern[:n])
        sent += n
    if fail:
        raise tether.Error(4243, "failed after writing")
    return {"written": sent}


def fetch(method: str) -> dict:
    """Asks the host for a stream and reads it (a stream in the result of our own call)."""
    result = tether.request(method, {})
    return {"got": result["data"].read(), "value": result.get("value")}


def note(data: bytes) -> dict:
    """Bytes in a $/log and in a notification of ours: attachments too, once negotiated."""
    tether.log("info", "note", target="lab", raw=data)
    tether.notify("host.note", {"data": data})
    return {}


def read_stdin() -> dict:
    return {"read": sys.stdin.read()}


def bad_result() -> list:
    return [1, 2]


def big(size: int, fail: bool = False) -> dict:
    """An answer of about ``size`` bytes: a result, or an error whose data is that long."""
    if fail:
        raise tether.Error(4243, "too much", {"blob": "e" * size})
    return {"text": "x" * size}


def big_log(size: int) -> dict:
    """A ``$/log`` of about ``size`` bytes, then a short one."""
    tether.log("warn", "L" * size)
    tether.log("info", "after the big one")
    return {}


schema_bytes = tether.schema(bytes)

def traced() -> dict:
    """What the handler sees of trace context (SPEC.md §15), and a request it makes meanwhile."""
    call = tether.current()
    return {"trace_id": call.trace_id, "span_id": call.span_id,
            "parent_span_id": call.parent_span_id, "traceparent": call.traceparent}


def steps(n: int, total: int) -> dict:
    """Reports progress ``n`` times, with a done that goes back once and one past total."""
    call = tether.current()
    sent = [call.progress(d, total, f"at {d}") for d in (1, 3, 2, total + 5)[:n]]
    return {"sent": sent, "wanted": call.wants_progress}


def call_host_progress(method: str, timeout: float) -> dict:
    """Calls the host with progress asked for; what progress came (SPEC.md §14)."""
    seen: list = []
    result = tether.request(method, {}, timeout=timeout, on_progress=seen.append)
    return {"result": result, "progress": seen}


V1 = {
    "traced": ({}, dict),
    "steps": ({"n": int, "total": int}, dict),
    "call_host_progress": ({"method": str, "timeout": float}, dict),
    "shout": ({"text": str}, {}),
    "fail": ({}, {}),
    "refuse": ({}, {}),
    "wait": ({"seconds": float}, {"cancelled": bool}),
    "nap": ({"seconds": float}, {}),
    "spin": ({"seconds": float}, {"loops": int}),
    "poll_cancel": ({"seconds": float}, {"cancelled": bool}),
    "log_py": ({"message": str, "level": {"type": "string", "enum": ["DEBUG", "INFO"]}}, {}),
    "visit": ({"retain": bool}, {"host": dict}),
    "echo_bytes": ({"data": bytes}, {"data": bytes, "len": int}),
    "types": ({"i": int, "f": float, "b": bool, "s": str, "items": {"type": "array",
               "items": {"type": "integer", "minimum": 0}}, "obj": dict, "opt?": int}, dict),
    "call_host": ({"method": str, "timeout": float}, dict),
    "read_stdin": ({}, {"read": str}),
    "many_bytes": ({"first": bytes, "rest": {"type": "array", "items": schema_bytes},
                    "note": str}, dict),
    "sink": ({"data": tether.stream("read"), "stop_after": int}, {"got": int, "head": bytes}),
    "read_all": ({"data": tether.stream("read"), "chunk": int}, {"size": int, "reads": dict}),
    "hold": ({"data": tether.stream("read")}, {}),
    "block_reading": ({"data": tether.stream("read")}, {"first": bytes}),
    "write_to": ({"out": tether.stream("write"), "size": int, "fail?": bool}, {"written": int}),
    "fetch": ({"method": str}, dict),
    "note": ({"data": bytes}, {}),
    "bad_result": ({}, {}),
    "big": ({"size": int, "fail?": bool}, {"text": str}),
    "big_log": ({"size": int}, {}),
}

if __name__ == "__main__":
    tether.serve("lab", "0.0.1", tether.Interface("lab", {1: V1}, globals()),
                 initial_credit=int(os.environ.get("LAB_CREDIT", tether.DEFAULT_INITIAL_CREDIT)))
