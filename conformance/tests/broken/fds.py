#!/usr/bin/env python3
"""The Python kv example, served by the Python SDK over the fds transport (SPEC.md §13), that
breaks exactly one rule of that transport when given a flag:

    python3 fds.py [--break FLAG]

It proves the judge's `transport.*` checks: with no flag they pass; with a flag, only the check
of that rule fails.
"""

import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "examples-python"))
import kv  # noqa: E402
import tether  # noqa: E402

BREAKS = {
    "stdin-ends-session": "exits when stdin reaches end of file, as over stdio",
    "inheritable": "leaves the frame descriptors inheritable by its children",
    "protects-stdout": "points descriptor 1 at stderr, as over stdio",
}

flag = sys.argv[2] if len(sys.argv) == 3 and sys.argv[1] == "--break" else None
if flag is not None and flag not in BREAKS:
    sys.exit(f"unknown flag {flag!r}; known: {', '.join(BREAKS)}")
if flag == "stdin-ends-session":
    def end_with_stdin() -> None:
        while os.read(0, 65536):
            pass
        os._exit(0)
    threading.Thread(target=end_with_stdin, daemon=True).start()
elif flag == "inheritable":
    os.set_inheritable = lambda fd, inheritable: None
elif flag == "protects-stdout":
    os.dup2(2, 1)

tether.serve("kv-fds", "0.1.0", tether.Interface("kv", {1: kv.V1, 2: kv.V2}, vars(kv)))
