#!/usr/bin/env python3
"""Write throughput with 100 idle watchers vs none (docs/watch.md).

Two memcached-lite servers on loopback, the same flags and fresh data
directories; the second has 100 `GET /v1/watch?prefix=idle:<n>:` streams
open for the whole run, on prefixes nobody writes (so the feed is on: every
write is published, filtered against 100 watchers and kept in the history,
but no event goes out). Set-only load from `memcached-lite bench`, servers
alternating A B A B so machine drift cancels. Prints one line per round and
a side-by-side summary with the ratio (target: >= 0.9), and with `--json`
writes the summary there too.

    python3 bench/watch.py [--rounds 4] [--duration 5] [--watchers 100] [--json out.json]

Uses target/release/memcached-lite (or $MEMCACHED_LITE_BIN); build it
first with `cargo build --release`.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("MEMCACHED_LITE_BIN", os.path.join(ROOT, "target", "release", "memcached-lite"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name, data_dir):
        self.name = name
        self.port, self.http = free_port(), free_port()
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", f"127.0.0.1:{self.port}",
             "--http-listen", f"127.0.0.1:{self.http}", "--data-dir", data_dir,
             "--no-csv-mirror"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=dict(os.environ, MEMCACHED_LITE_LOG="warn"))
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                socket.create_connection(("127.0.0.1", self.http), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start")
                time.sleep(0.02)
        self.watchers = []

    def watch(self, n):
        """Opens n idle-prefix watchers and checks each got its 200."""
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", self.http), timeout=10)
            s.sendall(f"GET /v1/watch?prefix=idle:{i}: HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("watch stream closed")
                head += chunk
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"watch refused: {head[:200]!r}")
            self.watchers.append(s)

    def stat(self, name):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"stats\r\n")
            buf = b""
            while not buf.endswith(b"END\r\n"):
                buf += s.recv(65536)
        for line in buf.decode().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == name:
                return int(parts[2])
        return None

    def stop(self):
        for s in self.watchers:
            s.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def load(server, seconds, connections, data_size):
    argv = [BIN, "bench", "--json", "--server", f"127.0.0.1:{server.port}",
            "--connections", str(connections), "--ratio", "1:0", "--data-size", str(data_size),
            "--key-space", "100000", "--duration", str(seconds)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    rep = json.loads(out.stdout)
    if rep["errors"]:
        raise RuntimeError(f"{server.name}: {rep['errors']} errors")
    return rep


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--watchers", type=int, default=100)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--data-size", type=int, default=100)
    ap.add_argument("--json", help="also write the summary here")
    ap.add_argument("--markdown", help="also append the table to this file (bench/run.sh: bench/results.md)")
    args = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit(f"no {BIN}: build it with `cargo build --release` (or set MEMCACHED_LITE_BIN)")
    tmp = tempfile.mkdtemp(prefix="mcl-watch-bench-")
    plain = Server("no watchers", os.path.join(tmp, "a"))
    watched = Server(f"{args.watchers} idle watchers", os.path.join(tmp, "b"))
    try:
        watched.watch(args.watchers)
        assert watched.stat("watchers") == args.watchers, "watchers not registered"
        servers = [plain, watched]
        for s in servers:  # warm-up, not recorded
            load(s, 2, args.connections, args.data_size)
        runs = {s.name: [] for s in servers}
        for r in range(args.rounds):
            for s in servers:
                rep = load(s, args.duration, args.connections, args.data_size)
                runs[s.name].append(rep)
                print(f"round {r + 1} {s.name:20} {rep['ops_per_sec']:>10.0f} sets/s  "
                      f"p50 {rep['p50_ms']:.3f}  p99 {rep['p99_ms']:.3f} ms", flush=True)
        events = watched.stat("watch_events")
        summary = {}
        for s in servers:
            reps = runs[s.name]
            summary[s.name] = {
                "sets_per_sec": statistics.mean(r["ops_per_sec"] for r in reps),
                "p50_ms": statistics.mean(r["p50_ms"] for r in reps),
                "p99_ms": statistics.mean(r["p99_ms"] for r in reps),
                "runs": [round(r["ops_per_sec"]) for r in reps],
            }
        ratio = summary[watched.name]["sets_per_sec"] / summary[plain.name]["sets_per_sec"]
        print()
        print(f"| | {plain.name} | {watched.name} |")
        print("| --- | ---: | ---: |")
        for field, fmt in [("sets_per_sec", "{:.0f}"), ("p50_ms", "{:.3f}"), ("p99_ms", "{:.3f}")]:
            a, b = summary[plain.name][field], summary[watched.name][field]
            print(f"| {field} | {fmt.format(a)} | {fmt.format(b)} |")
        print(f"\nratio (watched / plain): {ratio:.3f}  (target >= 0.9); "
              f"changes published to the feed: {events}")
        if args.markdown:
            with open(args.markdown, "a") as f:
                f.write(f"\n## Writes with {args.watchers} idle watchers (bench/watch.py)\n\n"
                        f"Set-only, {args.data_size} B values, {args.connections} connections, "
                        f"{args.rounds} rounds of {args.duration:g} s alternating A B; the second server has "
                        f"{args.watchers} `GET /v1/watch` streams open on prefixes nobody writes.\n\n")
                f.write(f"| | {plain.name} | {watched.name} |\n| --- | ---: | ---: |\n")
                for field, fmt in [("sets_per_sec", "{:.0f}"), ("p50_ms", "{:.3f}"), ("p99_ms", "{:.3f}")]:
                    a, b = summary[plain.name][field], summary[watched.name][field]
                    f.write(f"| {field} | {fmt.format(a)} | {fmt.format(b)} |\n")
                f.write(f"\nRatio {ratio:.2f} (target >= 0.9).\n")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"ratio": ratio, "servers": summary, "rounds": args.rounds,
                           "duration_s": args.duration, "watchers": args.watchers,
                           "connections": args.connections, "data_size": args.data_size}, f, indent=2)
    finally:
        plain.stop()
        watched.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
