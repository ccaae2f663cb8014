"""A Python kv plugin with one robustness bug, for the judge's --fuzz tests (tests/fuzz.rs).

It serves the repository's Python kv example through the Python SDK (examples-python/tether.py),
patched so that one kind of input kills the process, as a careless plugin would:

    --break deep    exits (status 3) on a body nested deeper than 64 levels, as a reader with
                    a recursive walk and no depth check would crash
    --break stray   exits (status 4) on a response whose id it never used (SPEC.md §3.4.3 says:
                    ignore it)

Only that input makes it fail; everything else is the SDK's correct behaviour, so the fuzzer's
minimized replay file should hold the offending frame and little else.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "examples-python"))

import kv  # noqa: E402
import tether  # noqa: E402

MAX_DEPTH = 64


def depth_of(text: str) -> int:
    """The nesting depth of a JSON text, counted without recursion (brackets outside strings)."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def break_deep() -> None:
    loads = tether._loads

    def shallow_only(text):
        if depth_of(text) > MAX_DEPTH:
            sys.stderr.write("fuzzy.py: a body nested too deeply: giving up\n")
            sys.stderr.flush()
            os._exit(3)
        return loads(text)

    tether._loads = shallow_only


def break_stray() -> None:
    on_response = tether._Session.on_response

    def strict(self, msg, parts=None, has_streams=False):
        rid = msg.get("id")
        if isinstance(rid, str) and ("result" in msg or "error" in msg):
            sys.stderr.write(f"fuzzy.py: a response to {rid!r}, which I never sent: giving up\n")
            sys.stderr.flush()
            os._exit(4)
        return on_response(self, msg, parts, has_streams)

    tether._Session.on_response = strict


if __name__ == "__main__":
    flag = sys.argv[sys.argv.index("--break") + 1] if "--break" in sys.argv else ""
    {"deep": break_deep, "stray": break_stray}.get(flag, lambda: None)()
    tether.serve("kv-fuzzy", "0.1.0", tether.Interface("kv", {1: kv.V1, 2: kv.V2}, vars(kv)))
