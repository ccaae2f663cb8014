#!/usr/bin/env python3
"""A stdio tunnel for rust-host/tests/remote.rs that looks like `ssh host cmd` to the host.

    relay.py PROGRAM [ARG...]

The relay (the "ssh client") starts a detached "remote side" in a new session (as sshd would on
another machine, out of reach of the host's process-group kill); the remote side runs the plugin
with the remote side's stdin and stdout, like a remote command. The relay copies its stdin to the
remote side and the remote side's stdout and stderr back to its own. When its stdin ends it closes
the remote stdin (as sshd does on EOF), waits for the remote command to end and exits with its
status.

Environment (optional, for the tests): TETHER_RELAY_PID_FILE receives the plugin's pid once it
runs; TETHER_RELAY_EXIT_FILE receives "code N" or "signal N" when the plugin ends (written by the
remote side, so it is written even when the relay was killed).
"""

import os
import subprocess
import sys
import threading

CHUNK = 1 << 16


def write_atomically(path, text):
    """Writes `text` to `path` through a rename, so a reader never sees half of it."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def remote(argv):
    """The remote side: runs the command on this side's stdin/stdout/stderr, records how it ends."""
    plugin = subprocess.Popen(argv)
    pid_file = os.environ.get("TETHER_RELAY_PID_FILE")
    if pid_file:
        write_atomically(pid_file, str(plugin.pid))
    code = plugin.wait()
    exit_file = os.environ.get("TETHER_RELAY_EXIT_FILE")
    if exit_file:
        write_atomically(exit_file, "code %d" % code if code >= 0 else "signal %d" % -code)
    return code if code >= 0 else 128 - code


def pump(src, dst, at_end=None):
    """Copies bytes from fd `src` to fd `dst` until `src` ends; then calls `at_end`."""
    try:
        while True:
            data = os.read(src, CHUNK)
            if not data:
                break
            view = memoryview(data)
            while view:
                n = os.write(dst, view)
                view = view[n:]
    except OSError:
        pass  # the other end went away: the tunnel is closing
    finally:
        if at_end is not None:
            at_end()


def relay(argv):
    """The local side: the tunnel the host runs."""
    side = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--remote", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # the host's killpg of the relay's group cannot reach it
    )
    # Raw descriptors: the file objects would buffer, and a frame must go through at once.
    to_remote = side.stdin.fileno()
    # End of our stdin closes the remote stdin, which is how the remote plugin learns (§1.6).
    up = threading.Thread(target=pump, args=(0, to_remote, side.stdin.close), daemon=True)
    out = threading.Thread(target=pump, args=(side.stdout.fileno(), 1))
    err = threading.Thread(target=pump, args=(side.stderr.fileno(), 2))
    for t in (up, out, err):
        t.start()
    # Like ssh: the session ends when the remote command has ended and its output is drained.
    out.join()
    err.join()
    return side.wait()


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--remote":
        sys.exit(remote(sys.argv[2:]))
    if len(sys.argv) < 2:
        sys.stderr.write("usage: relay.py PROGRAM [ARG...]\n")
        sys.exit(2)
    sys.exit(relay(sys.argv[1:]))
