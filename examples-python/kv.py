"""kv: the reference key/value store of SPEC.md §9.1 and §9.2, in memory, as a Tether plugin."""
import tether

store: dict[str, bytes] = {}

# A put of more than this many bytes reports its progress in steps of it (SPEC.md §9.1, §14).
PROGRESS_STEP = 16384


def put(key: str, value: bytes) -> dict:
    tether.log("debug", "put", target="kv", key=key, bytes=len(value))
    store[key] = value
    call = tether.current()
    if call is not None and call.wants_progress and len(value) > PROGRESS_STEP:
        # Kept as received (no copy): the steps count bytes accepted, then the whole value.
        for done in range(PROGRESS_STEP, len(value), PROGRESS_STEP):
            call.progress(done, len(value))
        call.progress(len(value), len(value))
    return {}


def get(key: str) -> dict:
    value = store.get(key)
    if value is None:
        raise tether.Error(1001, f"key not found: {key}", {"key": key})
    return {"value": value}


def delete(key: str) -> dict:
    return {"existed": store.pop(key, None) is not None}


KEY = {"type": "string", "minLength": 1}  # keys are non-empty Unicode strings
V1 = {
    # bytes: base64 on the wire (§5.3), or an attachment once negotiated (§2.8)
    "put": ({"key": KEY, "value": bytes}, {}),
    "get": ({"key": KEY}, {"value": bytes}),
}
V2 = {**V1, "delete": ({"key": KEY}, {"existed": bool})}

if __name__ == "__main__":
    tether.serve("kv-python", "0.1.0", tether.Interface("kv", {1: V1, 2: V2}, globals()))
