"""Start-up time of a Tether plugin: spawn until the answered `tether/initialize`.

Compared with the bare interpreter: spawned until it exits (`python3 -c pass`), and spawned
until its first byte on stdout. Runs are interleaved so that machine noise hits all alike;
prints medians and minimums in ms. Run it once before measuring, or run
`python3 -m py_compile tether.py`, so that tether.py is not compiled at every start.

    cd examples-python && /usr/bin/python3 bench/startup.py [runs] [plugin.py ...]
"""
import os
import statistics
import subprocess
import sys
import time

PYTHON = "/usr/bin/python3"
INIT = (b'{"jsonrpc":"2.0","id":1,"method":"tether/initialize","params":{"protocolVersions":[1],'
        b'"interfaces":{"kv":[1,2],"counter":[1]},"host":{"name":"bench","version":"0"},'
        b'"capabilities":{},"maxFrameSize":33554432,"logLevel":"info"}}')
FRAME = b"Content-Length: %d\r\n\r\n%s" % (len(INIT), INIT)
ENV = dict(os.environ, TETHER_MAGIC_COOKIE="7c1e4b9a-tether-reference-plugin")


def bare() -> float:
    """The bare interpreter, spawn to exit (includes its shutdown, ~1 ms)."""
    t = time.perf_counter()
    subprocess.run([PYTHON, "-c", "pass"], check=True)
    return time.perf_counter() - t


def first_byte() -> float:
    """The bare interpreter, spawn to its first byte on stdout (no shutdown in the figure)."""
    t = time.perf_counter()
    p = subprocess.Popen([PYTHON, "-c", "import os; os.write(1, b'x')"], stdout=subprocess.PIPE)
    os.read(p.stdout.fileno(), 1)
    elapsed = time.perf_counter() - t
    p.wait()
    p.stdout.close()
    return elapsed


def plugin(script: str) -> float:
    t = time.perf_counter()
    p = subprocess.Popen([PYTHON, script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV)
    os.write(p.stdin.fileno(), FRAME)
    out = b""
    while b"\r\n\r\n" not in out or len(out) < out.index(b"\r\n\r\n") + 4 + int(
            out.split(b"\r\n")[0].split(b":")[1]):
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            raise SystemExit(f"{script} closed stdout early")
        out += chunk
    elapsed = time.perf_counter() - t
    p.stdin.close()
    p.wait()
    p.stdout.close()
    return elapsed


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    scripts = sys.argv[2:] or ["kv.py", "counter.py"]
    times: dict[str, list[float]] = {"python3 -c pass": [], "first byte": []}
    for s in scripts:
        times[s] = []
    for _ in range(runs):
        times["python3 -c pass"].append(bare())
        times["first byte"].append(first_byte())
        for s in scripts:
            times[s].append(plugin(s))
    base = statistics.median(times["python3 -c pass"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:20} median {med * 1e3:6.2f} ms  min {min(ts) * 1e3:6.2f} ms"
              f"  (+{(med - base) * 1e3:5.2f} ms over bare)")


if __name__ == "__main__":
    main()
