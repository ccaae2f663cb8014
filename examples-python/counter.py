"""counter: the broker callback of SPEC.md §9.3. The host's `adder` handle does the adding."""
import tether

counts: dict[str, int] = {}


def put(key: str, value: int, adder: tether.RemoteHandle) -> dict:
    # No lock is held across the callback: other requests are served while `sum` is pending,
    # and a cancelled put raises tether.Cancelled out of adder.sum (answered -32800).
    total = adder.sum(a=counts.get(key, 0), b=value)["result"]
    counts[key] = total
    return {}


def get(key: str) -> dict:
    return {"value": counts.get(key, 0)}


V1 = {
    "put": ({"key": str, "value": int, "adder": tether.handle("adder")}, {}),
    "get": ({"key": str}, {"value": int}),
}

if __name__ == "__main__":
    tether.serve("counter-python", "0.1.0", tether.Interface("counter", {1: V1}, globals()))
