"""The attachment and stream breakages of plugin.py (SPEC.md §2.8, §9.5, §12).

plugin.py, written from scratch, implements neither attachments nor streams; for these flags it
hands over to this file, which serves the repository's Python kv and blob examples through the
Python SDK (examples-python/tether.py) with exactly one rule broken by patching the SDK. With a
flag of plugin.py's STREAM_BREAKS, only the checks of that rule fail.
"""

import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "examples-python"))

import blob  # noqa: E402
import kv  # noqa: E402
import tether  # noqa: E402


def exceeds_credit():
    """Producers ignore the credit: every chunk as large as the frame allows."""
    writer_init = tether.StreamWriter.__init__

    def init(self, *args):
        writer_init(self, *args)
        self._credit = 1 << 62

    tether.StreamWriter.__init__ = init


def ignores_abort():
    """A producer keeps its stream after the host's $/stream.abort."""
    fail = tether._Channel._fail

    def writer_fail(self, error):
        if str(getattr(error, "message", "")).startswith("the host aborted"):
            return
        fail(self, error)

    tether.StreamWriter._fail = writer_fail


def odd_stream_ids():
    """The plugin opens streams with odd ids, the host's parity."""
    session_init = tether._Session.__init__

    def init(self, *args, **kwargs):
        session_init(self, *args, **kwargs)
        self.next_stream = 1

    tether._Session.__init__ = init


def no_stream_end():
    """A finished stream is forgotten without $/stream.end."""
    def close(self):
        session = self._session
        with session.lock:
            self._done = True
            session.streams.pop(self.id, None)

    tether.StreamWriter.close = close


def stores_partial_upload():
    """blob.upload stores what it read even when the stream was aborted or the call cancelled."""
    def upload(name, data):
        chunks = []
        try:
            return blob.digest(data, chunks)
        finally:
            blob.store[name] = b"".join(chunks)

    blob.upload = upload


def blocks_when_stalled():
    """One lock for every blob call, held by a produced stream until it is sent: a stream that
    waits for credit blocks every other blob call."""
    lock = threading.Lock()
    produce = blob.produce

    def locked(fn):
        def call(*args, **kwargs):
            with lock:
                pass
            return fn(*args, **kwargs)
        return call

    def held_produce(size):
        source = produce(size)["data"].source

        def chunks():
            with lock:
                yield from source
        return {"data": tether.Stream(chunks())}

    for name in ("upload", "download", "count"):
        setattr(blob, name, locked(getattr(blob, name)))
    blob.produce = locked(held_produce)


def attachments_with_streams():
    """Attachments are used whenever streams were negotiated, even when the host did not
    announce attachments."""
    initialize = tether._Session.initialize

    def init(self, rid, params):
        initialize(self, rid, params)
        if getattr(self, "streams_on", False):
            self.attachments = True

    tether._Session.initialize = init


def attachments_bad_ref():
    """A reference to an attachment the frame does not have reads as empty bytes."""
    attachment = tether._attachment

    def lenient(v, path):
        i = v.get("$bytes")
        if len(v) == 1 and type(i) is int and i >= 0:
            try:
                return attachment(v, path)
            except tether._Invalid:
                return b""
        return attachment(v, path)

    tether._attachment = lenient


def attachments_no_base64():
    """Once attachments are negotiated, base64 strings are refused."""
    initialize = tether._Session.initialize

    def refuse(text):
        raise ValueError("base64 is refused once attachments are negotiated")

    def init(self, rid, params):
        initialize(self, rid, params)
        if self.attachments:
            tether._b64decode = refuse

    tether._Session.initialize = init


PATCHES = {
    "exceeds-credit": exceeds_credit,
    "ignores-abort": ignores_abort,
    "odd-stream-ids": odd_stream_ids,
    "no-stream-end": no_stream_end,
    "stores-partial-upload": stores_partial_upload,
    "blocks-when-stalled": blocks_when_stalled,
    "attachments-with-streams": attachments_with_streams,
    "attachments-bad-ref": attachments_bad_ref,
    "attachments-no-base64": attachments_no_base64,
}


def run(flag):
    """Serve kv and blob with the rule of ``flag`` broken; never returns."""
    PATCHES[flag]()
    tether.serve(
        "broken-streams", "0.1.0",
        tether.Interface("kv", {1: kv.V1, 2: kv.V2}, kv),
        tether.Interface("blob", {1: blob.V1}, blob),
    )
