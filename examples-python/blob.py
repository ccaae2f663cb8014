"""blob: the store of named byte strings of SPEC.md §9.5, moved by streams, as a Tether plugin."""
import hashlib

import tether

store: dict[str, bytes] = {}


def digest(data: tether.StreamReader, keep: "list | None" = None) -> dict:
    """Read a stream to its end: its size and SHA-256 (an abort raises tether.StreamError)."""
    sha, size = hashlib.sha256(), 0
    for chunk in data:
        sha.update(chunk)
        size += len(chunk)
        if keep is not None:
            keep.append(chunk)
    return {"size": size, "sha256": sha.hexdigest()}


def upload(name: str, data: tether.StreamReader) -> dict:
    chunks: list = []
    answer = digest(data, chunks)
    store[name] = b"".join(chunks)  # only once the whole stream arrived
    return answer


def download(name: str) -> dict:
    value = store.get(name)
    if value is None:
        raise tether.Error(1002, f"blob not found: {name}", {"name": name})
    return {"size": len(value), "data": tether.Stream(value)}


def count(data: tether.StreamReader) -> dict:
    return digest(data)


PATTERN = bytes(i % 251 for i in range(251)) * 4200  # about 1 MiB, starting at every i mod 251


def produce(size: int) -> dict:
    def chunks():  # byte i is i mod 251; views of one pattern, nothing allocated per chunk
        view, sent = memoryview(PATTERN), 0
        while sent < size:
            n = min(size - sent, len(PATTERN) - 251)
            yield view[sent % 251: sent % 251 + n]
            sent += n

    return {"data": tether.Stream(chunks())}


DIGEST = {"size": int, "sha256": str}
V1 = {
    "upload": ({"name": str, "data": tether.stream("read")}, DIGEST),
    "download": ({"name": str}, {"size": int, "data": tether.stream("read")}),
    "count": ({"data": tether.stream("read")}, DIGEST),
    "produce": ({"size": {"type": "integer", "minimum": 0, "maximum": 2**40}},
                {"data": tether.stream("read")}),
}

if __name__ == "__main__":
    tether.serve("blob-python", "0.1.0", tether.Interface("blob", {1: V1}, globals()))
