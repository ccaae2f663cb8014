"""The SDK's own cost per call: recorded frames replayed into `tether.py`'s reading loop.

No host and no pipe: the frames a `tether-host` sends for `tether/initialize` (announcing
attachments, streams, progress and trace context), one `kv.put` of a 16-byte value as an
attachment and then N `kv.get` are written to a file; a `_Session` of `tether.py` serving the kv
example reads them from that file on this thread, and writes its answers to another file. What
is measured is therefore only the SDK's work: reading and parsing frames, checking params,
dispatch, the handler, encoding and writing the answers (one `writev` each, or fewer when the
SDK batches them). Wake-ups and the host's share, which the `tether-bench` rows include, are
not. The answers are counted and the last one is compared with the expected bytes, so a
broken SDK cannot look fast.

    cd examples-python && /usr/bin/python3 bench/replay.py [calls] [--profile] [--repeat R]
    cd examples-python && /usr/bin/python3 bench/replay.py [calls] --process python|node
    cd examples-python && /usr/bin/python3 bench/replay.py [calls] --sequential python|node

``--profile`` runs one replay under cProfile and prints the 25 functions with the most own time.
``--process`` replays the same frames into the Python or the Node kv example as a whole process
(stdin read from the file, stdout written to a file; it exits at the end of its input), so
that both SDKs are measured alike: CPU time of the process (user + system, from the rusage of
children) per call, minus that of a replay without gets (the start-up). Profile Node there with
``NODE_OPTIONS=--cpu-prof``. ``--sequential`` sends the same requests over pipes one at a time,
each after the previous answer was read (a sequential caller): the plugin process's CPU per
call (rusage, minus a run without gets) and the wall time per call, medians of the runs. Unlike
``--process`` this includes what the SDK does per wake-up (the event loop's turn in Node).
"""
import cProfile
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

import kv  # noqa: E402
import tether  # noqa: E402

INIT = (b'{"jsonrpc":"2.0","id":1,"method":"tether/initialize","params":{"protocolVersions":[1],'
        b'"interfaces":{"kv":[1,2]},"host":{"name":"tether-host","version":"0.1.0"},'
        b'"capabilities":{"attachments":{},"streams":{},"progress":{},"traceContext":{}},'
        b'"maxFrameSize":33554432,"logLevel":"info"}}')
PUT = b'{"jsonrpc":"2.0","id":2,"method":"kv.put","params":{"key":"k","value":{"$bytes":0}}}'
VALUE = b"0123456789abcdef"


class _Done(Exception):
    """Raised by the replayed session at the end of its input, instead of exiting."""


def frames(calls: int) -> bytes:
    """The recorded input: initialize, the put, ``calls`` gets (ids from 3)."""
    out = [b"Content-Length: %d\r\n\r\n%s" % (len(INIT), INIT),
           b"Content-Length: %d\r\nTether-Attachments: 16\r\n\r\n%s%s" % (
               len(PUT) + len(VALUE), PUT, VALUE)]
    for rid in range(3, calls + 3):
        body = b'{"jsonrpc":"2.0","id":%d,"method":"kv.get","params":{"key":"k"}}' % rid
        out.append(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return b"".join(out)


def replay(path: str, calls: int, profiler: cProfile.Profile | None = None) -> tuple[float, float]:
    """Serve the recorded input once; (wall seconds, CPU seconds) of the serving loop."""
    iface = tether.Interface("kv", {1: kv.V1, 2: kv.V2}, vars(kv))
    in_fd = os.open(path, os.O_RDONLY)
    out_fd, out_path = tempfile.mkstemp(prefix="tether-replay-")
    session = tether._Session("kv-python", "0.1.0", [iface], {}, in_fd, out_fd)
    tether._session = session

    def done() -> None:
        raise _Done

    session.on_eof = done
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        if profiler is not None:
            profiler.enable()
        session.lead()
    except _Done:
        pass
    finally:
        if profiler is not None:
            profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    os.close(in_fd)
    os.close(out_fd)
    with open(out_path, "rb") as f:
        answers = f.read()
    os.unlink(out_path)
    check(answers, calls)
    return wall, cpu


def check(answers: bytes, calls: int) -> None:
    """Every request answered, the last get with the stored value as its attachment."""
    count = answers.count(b"Content-Length: ")
    last = (b'Content-Length: %d\r\nTether-Attachments: 16\r\n\r\n'
            b'{"jsonrpc":"2.0","id":%d,"result":{"value":{"$bytes":0}}}%s')
    body_len = len(b'{"jsonrpc":"2.0","id":%d,"result":{"value":{"$bytes":0}}}' % (calls + 2))
    expected = last % (body_len + len(VALUE), calls + 2, VALUE)
    if count != calls + 2 or (calls and not answers.endswith(expected)):
        sys.exit(f"wrong answers: {count} frames for {calls + 2} requests; the end: "
                 f"{answers[-200:]!r}")


PLUGINS = {
    "python": ["/usr/bin/python3", os.path.join(HERE, "kv.py")],
    "node": ["/usr/bin/node", os.path.join(os.path.dirname(HERE), "examples-node", "kv.mjs")],
}


def replay_process(language: str, calls: int) -> tuple[float, float]:
    """Run the kv example of ``language`` on the recorded input once; (wall, CPU) seconds."""
    fd, path = tempfile.mkstemp(prefix="tether-replay-in-")
    with os.fdopen(fd, "wb") as f:
        f.write(frames(calls))
    env = dict(os.environ, TETHER_MAGIC_COOKIE="7c1e4b9a-tether-reference-plugin")
    try:
        with open(path, "rb") as stdin, tempfile.TemporaryFile() as stdout:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall = time.perf_counter()
            subprocess.run(PLUGINS[language], stdin=stdin, stdout=stdout, env=env, check=True)
            wall = time.perf_counter() - wall
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            stdout.seek(0)
            check(stdout.read(), calls)
    finally:
        os.unlink(path)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main_process(language: str, calls: int, repeat: int) -> None:
    base = sorted(replay_process(language, 0) for _ in range(repeat))
    runs = sorted(replay_process(language, calls) for _ in range(repeat))
    wall = (runs[0][0] - base[0][0]) / calls
    cpus = sorted(c for _, c in runs)
    base_cpu = sorted(c for _, c in base)[len(base) // 2]
    cpu = (cpus[len(cpus) // 2] - base_cpu) / calls
    print(f"{language}: {calls} kv.get replayed into a process, {repeat} runs: CPU "
          f"{cpu * 1e6:.2f} µs per call (median, start-up of {base_cpu * 1e3:.0f} ms taken "
          f"out; best {(cpus[0] - base_cpu) / calls * 1e6:.2f} µs), wall {wall * 1e6:.2f} µs "
          "per call (best)")


def _read_frame(fd: int, buf: bytes) -> bytes:
    """Read until one whole frame is in ``buf``; what follows it."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            length = int(buf[:end].split(b"Content-Length: ")[1].split(b"\r\n")[0])
            while len(buf) < end + 4 + length:
                chunk = os.read(fd, 65536)
                if not chunk:
                    sys.exit("the plugin closed its stdout inside a frame")
                buf += chunk
            return buf[end + 4 + length:]
        chunk = os.read(fd, 65536)
        if not chunk:
            sys.exit("the plugin closed its stdout")
        buf += chunk


def sequential_process(language: str, calls: int) -> tuple[float, float]:
    """One request at a time over pipes; (wall of the gets, CPU of the whole process) seconds."""
    env = dict(os.environ, TETHER_MAGIC_COOKIE="7c1e4b9a-tether-reference-plugin")
    p = subprocess.Popen(PLUGINS[language], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         env=env)
    w, r = p.stdin.fileno(), p.stdout.fileno()
    prologue = frames(0)
    first = prologue.index(b"Content-Length: ", 1)
    os.write(w, prologue[:first])
    buf = _read_frame(r, b"")
    os.write(w, prologue[first:])
    buf = _read_frame(r, buf)
    wall = time.perf_counter()
    for rid in range(3, calls + 3):
        body = b'{"jsonrpc":"2.0","id":%d,"method":"kv.get","params":{"key":"k"}}' % rid
        os.write(w, b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        buf = _read_frame(r, buf)
    wall = time.perf_counter() - wall
    p.stdin.close()
    _, status, usage = os.wait4(p.pid, 0)
    p.stdout.close()
    if status != 0:
        sys.exit(f"the {language} plugin exited with status {status}")
    return wall, usage.ru_utime + usage.ru_stime


def main_sequential(language: str, calls: int, repeat: int) -> None:
    cpus, walls = [], []
    for _ in range(repeat):
        _, base = sequential_process(language, 0)
        wall, cpu = sequential_process(language, calls)
        cpus.append((cpu - base) / calls)
        walls.append(wall / calls)
    cpus.sort()
    walls.sort()
    print(f"{language}: {calls} sequential kv.get over pipes, {repeat} runs: plugin CPU "
          f"{cpus[len(cpus) // 2] * 1e6:.1f} µs per call (median; start-up taken out), wall "
          f"{walls[len(walls) // 2] * 1e6:.1f} µs per call (median)")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    calls = int(args[0]) if args else 100_000
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 5
    if "--repeat" in sys.argv:
        args.remove(str(repeat))
    if "--process" in sys.argv:
        language = sys.argv[sys.argv.index("--process") + 1]
        args.remove(language)
        calls = int(args[0]) if args else 100_000
        return main_process(language, calls, repeat)
    if "--sequential" in sys.argv:
        language = sys.argv[sys.argv.index("--sequential") + 1]
        args.remove(language)
        calls = int(args[0]) if args else 100_000
        return main_sequential(language, calls, repeat)
    fd, path = tempfile.mkstemp(prefix="tether-replay-in-")
    with os.fdopen(fd, "wb") as f:
        f.write(frames(calls))
    try:
        if "--profile" in sys.argv:
            profiler = cProfile.Profile()
            replay(path, calls, profiler)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return
        results = sorted(replay(path, calls) for _ in range(repeat))
        best_wall, best_cpu = results[0]
        cpus = sorted(c for _, c in results)
        print(f"{calls} kv.get replayed, best of {repeat}: {best_wall / calls * 1e6:.2f} µs wall, "
              f"CPU {cpus[0] / calls * 1e6:.2f} µs per call (median CPU "
              f"{cpus[len(cpus) // 2] / calls * 1e6:.2f} µs); {calls / best_wall:,.0f} calls/s")
    finally:
        os.unlink(path)


if __name__ == "__main__":
    main()
