"""tty_plugin: a test-only plugin for the fds transport (SPEC.md §13), on the Python SDK.

It reports whether its stdin, stdout and stderr are terminals, prints to its stdout on request,
and starts a child that lists the descriptors it inherited, so that the host's tests can observe
that the terminal is kept and the session's pipes are not leaked.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples-python"))
import tether  # noqa: E402

# The child prints, as JSON, where each of its descriptors above 2 leads (`pipe:[…]`, a file…).
CHILD = """
import json, os
links = {}
for n in os.listdir('/proc/self/fd'):
    try:
        links[n] = os.readlink('/proc/self/fd/' + n)
    except OSError:  # the listing's own descriptor, closed by now
        pass
print(json.dumps({n: link for n, link in links.items() if int(n) > 2}))
"""


def report() -> dict:
    return {"isatty": [os.isatty(0), os.isatty(1), os.isatty(2)],
            "transport": os.environ.get("TETHER_TRANSPORT", "")}


def say(text: str) -> dict:
    print(text, flush=True)
    return {}


def child_fds() -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, check=True, timeout=60).stdout
    return {"fds": json.loads(out)}


V1 = {
    "report": ({}, {"isatty": list, "transport": str}),
    "say": ({"text": str}, {}),
    "child_fds": ({}, {"fds": dict}),
}

if __name__ == "__main__":
    tether.serve("tty-python", "0.1.0", tether.Interface("tty", {1: V1}, globals()))
