#!/usr/bin/env python3
"""Side-by-side benchmark: memcached-lite vs real memcached (and Redis).

Run through `bash bench/run.sh` (it builds the `profiling` profile: the
release build plus debug info, at target/profiling/; and raises
the open-file limit first). Every load comes from `memcached-lite bench`,
whose client runs on ONE thread; servers alternate A B A B per workload so
machine drift cancels. Writes bench/results.md, bench/results.json and
bench/results.svg (if matplotlib is installed).
"""

import argparse
import datetime
import json
import os
import platform
import random
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("MEMCACHED_LITE_BIN", os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "profiling", "memcached-lite"))
COMMANDS = []  # every load/server command, recorded for results.md
TMP = ["/nonexistent"]  # the run's scratch directory, shown as $TMP


def display(argv):
    """A command as a shell line, scratch paths and binary path made generic."""
    line = " ".join(shlex.quote(str(a)) for a in argv)
    return line.replace(TMP[0], "$TMP").replace(ROOT + "/", "")


def free_port():
    """Any free loopback port, or a free one in $BENCH_PORTS (`lo-hi`) on a
    machine shared with someone who benchmarks on ports of their own."""
    span = os.environ.get("BENCH_PORTS")
    if not span:
        candidates = [0]
    else:
        lo, hi = map(int, span.split("-"))
        candidates = random.sample(range(lo, hi + 1), hi + 1 - lo)
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError(f"no free port in {span}")


def http_port():
    """memcached-lite's HTTP listener: any port, unless $BENCH_PORTS confines them."""
    return free_port() if os.environ.get("BENCH_PORTS") else 0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def request(port, payload, until, timeout=2.0):
    """Sends payload, reads until the reply ends with `until`."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        buf = b""
        while not buf.endswith(until):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf


class Server:
    """One server process on a free loopback port."""

    def __init__(self, name, argv_fn, cwd=None, ready=b"version\r\n", ready_until=b"\r\n"):
        self.name = name
        self.port = free_port()
        self.argv = argv_fn(self.port)
        COMMANDS.append(display(self.argv).replace(str(self.port), "$PORT"))
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env=dict(os.environ, MEMCACHED_LITE_LOG="warn"))
        self.ready_after = self.wait_ready(ready, ready_until)

    def wait_ready(self, payload, until, limit=60.0):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.argv}")
            try:
                if self.probe(payload, until):
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} not ready after {limit}s")

    def probe(self, payload, until):
        """Whether the server answers `payload` with a reply ending in `until`."""
        return request(self.port, payload, until, timeout=1.0).endswith(until)

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def cpu_seconds(self):
        """User + system CPU the process has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def quiesce(self, limit=120.0, idle_share=0.05):
        """Waits until the server's background work after a fill is done:
        its CPU use over one second falls below `idle_share` of a core (at
        most `limit` seconds). Returns the seconds waited."""
        start = time.monotonic()
        before = self.cpu_seconds()
        while time.monotonic() - start < limit:
            time.sleep(1.0)
            now = self.cpu_seconds()
            if now - before < idle_share:
                break
            before = now
        return time.monotonic() - start

    def rss_kib(self):
        return rss_kib(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def lite(data_dir, max_conns=1024, durability=None, mirror=False, flush_ms=None, unix=None):
    """memcached-lite: periodic durability (or `--durability sync`), without
    the CSV mirror unless `mirror` (the mirror is a CSV snapshot, like Redis's
    RDB which the Redis here runs without; rows with it on are extra);
    `flush_ms` sets `--flush-interval-ms` (periodic mode's loss window)."""
    extra = ["--durability", durability] if durability else []
    if not mirror:
        extra.append("--no-csv-mirror")
    if flush_ms:
        extra += ["--flush-interval-ms", str(flush_ms)]
    if unix:
        extra += ["--unix-socket", unix]
    name = "memcached-lite"
    if durability:
        name += f" ({durability})"
    if flush_ms:
        name += f" (flush every {flush_ms} ms)"
    if mirror:
        name += " (CSV mirror on)"
    return Server(name, lambda p: [
        BIN, "serve", "--listen", f"127.0.0.1:{p}", "--http-listen", f"127.0.0.1:{http_port()}", "--data-dir", data_dir,
        "--max-connections", str(max_conns)] + extra)


def memcached(max_conns=1024):
    root = ["-u", "root"] if os.geteuid() == 0 else []
    return Server("memcached", lambda p: [
        "memcached", "-t", "2", "-m", "1024", "-U", "0", "-l", "127.0.0.1", "-p", str(p),
        "-c", str(max_conns)] + root)


class UnixMemcached(Server):
    """Real memcached on a unix socket only (its `-s` turns TCP off)."""

    def __init__(self, path, max_conns=1024):
        self.path = path
        root = ["-u", "root"] if os.geteuid() == 0 else []
        super().__init__("memcached (unix socket)", lambda _p: [
            "memcached", "-t", "2", "-m", "1024", "-U", "0", "-s", path, "-a", "0700",
            "-c", str(max_conns)] + root)

    def probe(self, payload, until):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1.0)
            s.connect(self.path)
            s.sendall(payload)
            return s.recv(4096).endswith(until)

    @property
    def addr(self):
        return f"unix:{self.path}"


class ViaSocket:
    """A memcached-lite server reached through its `--unix-socket` instead of TCP."""

    def __init__(self, server, path):
        self.server, self.path = server, path
        self.name = server.name + " (unix socket)"

    @property
    def addr(self):
        return f"unix:{self.path}"


def unix_rows(tmp, rounds, args):
    """Workload 1 over loopback TCP and over a unix socket, for memcached-lite
    (one process, both listeners) and memcached (one process per transport:
    its `-s` disables TCP)."""
    sock = os.path.join(tmp, "lite.sock")
    A = lite(os.path.join(tmp, "lite-unix"), unix=sock)
    B = memcached()
    U = UnixMemcached(os.path.join(tmp, "memcached.sock"))
    try:
        for s in (A, B, U):
            if populate(s, 100_000)["errors"]:
                raise RuntimeError(f"{s.name} refused sets while populating")
        return alternate([(A, "memcache"), (ViaSocket(A, sock), "memcache"), (B, "memcache"), (U, "memcache")],
                         rounds, args)
    finally:
        for s in (A, B, U):
            s.stop()


def redis(data_dir, fsync="everysec"):
    return Server(f"redis (AOF {fsync})", lambda p: [
        "redis-server", "--port", str(p), "--bind", "127.0.0.1", "--appendonly", "yes",
        "--appendfsync", fsync, "--save", "", "--dir", data_dir],
        ready=b"PING\r\n", ready_until=b"+PONG\r\n")


def bench(server, *args, protocol="memcache", allow_errors=False):
    argv = [BIN, "bench", "--json", "--server", server.addr, "--protocol", protocol, *map(str, args)]
    COMMANDS.append(display(argv).replace(server.addr, "$" + server.name.split()[0].upper().replace("-", "_")))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, RUST_BACKTRACE="0"))
    if out.returncode != 0:
        raise RuntimeError(f"bench failed against {server.name}: {out.stderr.strip()}")
    report = json.loads(out.stdout)
    if report["errors"] and not allow_errors:
        raise RuntimeError(f"{server.name} answered {report['errors']} errors")
    return report


def populate(server, keys, data_size=100, prefix="key:", protocol="memcache"):
    return bench(server, "--connections", 8, "--pipeline", 32, "--ratio", "1:0",
                 "--key-pattern", "sequential", "--key-space", keys, "--requests", keys,
                 "--data-size", data_size, "--key-prefix", prefix, protocol=protocol,
                 allow_errors=True)


def log(msg):
    print(msg, flush=True)


WARMUP = [2.0]  # seconds of unrecorded load per server before a workload's rounds


def alternate(servers, rounds, args, allow_errors=False):
    """Runs `args` against each server in turn, `rounds` times (A B A B),
    after one unrecorded warm-up run per server (caches, a store just filled
    still flushing)."""
    if WARMUP[0] > 0:
        warm = list(args)
        warm[warm.index("--duration") + 1] = WARMUP[0]
        for server, proto in servers:
            bench(server, *warm, protocol=proto, allow_errors=True)
    runs = {s.name: [] for s, _ in servers}
    for r in range(rounds):
        for server, proto in servers:
            rep = bench(server, *args, protocol=proto, allow_errors=allow_errors)
            runs[server.name].append(rep)
            log(f"    round {r + 1} {server.name:30} {rep['ops_per_sec']:>10.0f} ops/s  "
                f"p50 {rep['p50_ms']:.3f}  p99 {rep['p99_ms']:.3f}  p99.9 {rep['p999_ms']:.3f} ms")
    return {name: summarize(reps) for name, reps in runs.items()}


def summarize(reps):
    return {
        "ops_per_sec": statistics.mean(r["ops_per_sec"] for r in reps),
        "p50_ms": statistics.mean(r["p50_ms"] for r in reps),
        "p99_ms": statistics.mean(r["p99_ms"] for r in reps),
        "p999_ms": statistics.mean(r["p999_ms"] for r in reps),
        "runs": [round(r["ops_per_sec"]) for r in reps],
        "hit_rate": sum(r["hits"] for r in reps) / max(1, sum(r["gets"] for r in reps)),
        "errors": sum(r["errors"] for r in reps),
    }


def memaslap(server, seconds, cfg):
    exe = shutil.which("memcaslap") or shutil.which("memaslap")
    if not exe:
        return None
    argv = [exe, "-s", server.addr, "-T", "1", "-c", "50", "-t", f"{seconds}s", "-F", cfg]
    COMMANDS.append(display(argv).replace(server.addr, "$" + server.name.upper().replace("-", "_")))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("Run time:"):
            return float(line.split("TPS:")[1].split()[0])
    raise RuntimeError(f"memaslap output not understood: {out.stdout[-300:]} {out.stderr[-300:]}")


def idle_rss(make_server, n):
    """RSS growth per idle connection: open n connections, one request each."""
    server = make_server()
    try:
        time.sleep(0.3)
        before = server.rss_kib()
        socks = []
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        for s in socks:
            s.sendall(b"version\r\n")
        for s in socks:
            buf = b""
            while not buf.endswith(b"\r\n"):
                chunk = s.recv(100)
                if not chunk:
                    raise RuntimeError(f"{server.name} closed an idle connection")
                buf += chunk
            if not buf.startswith(b"VERSION"):
                raise RuntimeError(f"{server.name}: {buf!r}")
        time.sleep(0.5)
        after = server.rss_kib()
        for s in socks:
            s.close()
        return {"before_kib": before, "after_kib": after, "per_conn_kib": (after - before) / n}
    finally:
        server.stop()


def machine_facts():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception as e:  # noqa: BLE001 - facts are best effort
            return f"({e})"
    lscpu = sh("lscpu | grep -E '^(Model name|CPU\\(s\\)|Thread|Core|Socket|L2|L3|Hypervisor)'")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": sh("nproc"),
        "lscpu": lscpu,
        "free": sh("free -m"),
        "kernel": platform.release(),
        "load": sh("cat /proc/loadavg"),
        "memcached": sh("memcached -V"),
        "redis": sh("redis-server --version"),
        "rustc": sh("rustc --version"),
    }


def rss_per_million(tmp):
    """RSS growth of each server filled with 1,000,000 items of 100 B (8
    connections, pipeline 32), read 1 s after the fill; leaves the filled
    memcached-lite store in $TMP/lite-million for the start-up step."""
    items = {}
    for name, make in [("memcached-lite", lambda: lite(os.path.join(tmp, "lite-million"))), ("memcached", memcached)]:
        s = make()
        try:
            time.sleep(0.3)
            before = s.rss_kib()
            if populate(s, 1_000_000)["errors"]:
                raise RuntimeError(f"{s.name} refused sets while populating 1M items")
            time.sleep(1.0)
            after = s.rss_kib()
            items[name] = {"before_kib": before, "after_kib": after, "per_million_mib": (after - before) / 1024}
            log(f"    {name}: +{(after - before) / 1024:.0f} MiB RSS for 1M items")
        finally:
            s.stop()
    return items


def write_rows(tmp, rounds, d):
    """Issue 15's write workloads: 7, set-only 1 KB with every write on disk
    before its reply (memcached-lite `--durability sync`, Redis `appendfsync
    always`); 8, set-only 100 B, pipeline 16, over 10^6 keys filled first."""
    out = {}
    log("== workload 7: set-only 1 KB, 50 connections, --durability sync vs Redis appendfsync always")
    A = lite(os.path.join(tmp, "lite-w7"), durability="sync")
    os.makedirs(os.path.join(tmp, "redis-always"), exist_ok=True)
    C = redis(os.path.join(tmp, "redis-always"), fsync="always")
    try:
        w7 = ["--connections", 50, "--pipeline", 1, "--ratio", "1:0", "--data-size", 1024,
              "--key-space", 100_000, "--key-prefix", "big:"]
        out["7"] = alternate([(A, "memcache"), (C, "resp")], rounds, w7 + d)
    finally:
        A.stop()
        C.stop()
    log("== workload 8: set-only 100 B, 50 connections, pipeline 16, 10^6 keys (filled first)")
    A, B = lite(os.path.join(tmp, "lite-w8")), memcached()
    try:
        for s in (A, B):
            if populate(s, 1_000_000)["errors"]:
                raise RuntimeError(f"{s.name} refused sets while populating 1M items")
        w8 = ["--connections", 50, "--pipeline", 16, "--ratio", "1:0", "--data-size", 100,
              "--key-space", 1_000_000]
        out["8"] = alternate([(A, "memcache"), (B, "memcache")], rounds, w8 + d)
    finally:
        A.stop()
        B.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    ap.add_argument("--rounds", type=int, default=2, help="A B rounds per workload")
    ap.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds per server before each workload")
    ap.add_argument("--scale", default="4,5,6,7", help="powers of ten for the scale curve")
    ap.add_argument("--idle-connections", type=int, default=10_000)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench"))
    ap.add_argument("--only-unix", action="store_true",
                    help="run only workload 1 over TCP vs a unix socket and print it (results files untouched)")
    ap.add_argument("--only-cluster", action="store_true",
                    help="run only the replicated group's workloads (bench/cluster.py, a few minutes) and merge "
                         "them into the results files")
    ap.add_argument("--no-cluster", action="store_true", help="skip the replicated group's workloads")
    ap.add_argument("--only-writes", action="store_true",
                    help="run only workloads 7 and 8 (issue 15's write targets) and the RSS-per-million step, "
                         "and print them (results files untouched)")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite results.md and the chart from results.json without measuring")
    opts = ap.parse_args()
    if opts.render_only:
        with open(os.path.join(opts.out, "results.json")) as f:
            results = json.load(f)
        with open(os.path.join(opts.out, "results.md"), "w") as f:
            f.write(render(results))
        chart(results, os.path.join(opts.out, "results.svg"))
        return

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = opts.idle_connections + 2000
    if hard != resource.RLIM_INFINITY and hard < want:
        sys.exit(f"open-file hard limit {hard} < {want}; raise it (ulimit -Hn) first")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    if opts.only_cluster:
        cluster_module().run_standalone(opts)
        return

    if opts.only_writes:
        WARMUP[0] = opts.warmup
        tmp = tempfile.mkdtemp(prefix="mcl-bench-")
        TMP[0] = tmp
        try:
            res = {"workloads": write_rows(tmp, opts.rounds, ["--duration", opts.duration]),
                   "items": rss_per_million(tmp)}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(json.dumps(res, indent=1))
        return

    if opts.only_unix:
        WARMUP[0] = opts.warmup
        tmp = tempfile.mkdtemp(prefix="mcl-bench-")
        TMP[0] = tmp
        try:
            res = unix_rows(tmp, opts.rounds, UNIX_W1 + ["--duration", opts.duration])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(json.dumps(res, indent=1))
        return

    t0 = time.monotonic()
    facts = machine_facts()
    log(f"== machine: {facts['nproc']} cores, load {facts['load']}")
    d = ["--duration", opts.duration]
    WARMUP[0] = opts.warmup
    w1 = ["--connections", 50, "--pipeline", 1, "--ratio", "1:10", "--data-size", 100, "--key-space", 100_000]
    workloads = {}
    tmp = tempfile.mkdtemp(prefix="mcl-bench-")
    TMP[0] = tmp
    try:
        A = lite(os.path.join(tmp, "lite"))
        B = memcached()
        try:
            log("== populating 100,000 keys of 100 B in both servers")
            for s in (A, B):
                if populate(s, 100_000)["errors"]:
                    raise RuntimeError(f"{s.name} refused sets while populating")
            pair = [(A, "memcache"), (B, "memcache")]
            log("== workload 1: get:set 10:1, 50 connections, 100 B, 100k keys, no pipelining")
            workloads["1"] = alternate(pair, opts.rounds, w1 + d)
            log("== workload 2: workload 1 with pipeline 16")
            w2 = list(w1)
            w2[3] = 16
            workloads["2"] = alternate(pair, opts.rounds, w2 + d)
            log("== workload 4: get-only, every key present")
            w4 = ["--connections", 50, "--pipeline", 1, "--ratio", "0:1", "--key-space", 100_000]
            workloads["4"] = alternate(pair, opts.rounds, w4 + d)
            log("== workload 3: set-only, 1 KB values (also Redis, AOF everysec)")
            os.makedirs(os.path.join(tmp, "redis"), exist_ok=True)
            C = redis(os.path.join(tmp, "redis"))
            # The same one-second loss window as Redis's everysec.
            A1 = lite(os.path.join(tmp, "lite-1s"), flush_ms=1000)
            try:
                w3 = ["--connections", 50, "--pipeline", 1, "--ratio", "1:0", "--data-size", 1024,
                      "--key-space", 100_000, "--key-prefix", "big:"]
                workloads["3"] = alternate(pair + [(A1, "memcache"), (C, "resp")], opts.rounds, w3 + d)
            finally:
                C.stop()
                A1.stop()
            log("== cross-check: memaslap (libmemcached) vs memcached-lite bench, workload 1, against memcached")
            cfg = os.path.join(tmp, "memaslap.cfg")
            with open(cfg, "w") as f:
                f.write("key\n20 20 1\nvalue\n100 100 1\ncmd\n0 0.0909\n1 0.9091\n")
            cross = {"memaslap": [], "bench": []}
            for _ in range(opts.rounds):
                cross["memaslap"].append(memaslap(B, int(opts.duration), cfg))
                rep = bench(B, *w1, "--key-prefix", "memaslap-like-key:", *d)
                cross["bench"].append(rep["ops_per_sec"])
                log(f"    memaslap {cross['memaslap'][-1]} TPS, bench {rep['ops_per_sec']:.0f} ops/s")
        finally:
            A.stop()
            B.stop()

        log("== workload 1 over a unix socket vs loopback TCP")
        workloads["1u"] = unix_rows(tmp, opts.rounds, w1 + d)

        def w1_and_w3(lite_server, redis_dir):
            """Workloads 1 and 3 on a fresh memcached-lite variant, memcached (and Redis for 3)."""
            A, B = lite_server, memcached()
            try:
                for s in (A, B):
                    if populate(s, 100_000)["errors"]:
                        raise RuntimeError(f"{s.name} refused sets while populating")
                out = {"1": alternate([(A, "memcache"), (B, "memcache")], opts.rounds, w1 + d)}
                os.makedirs(os.path.join(tmp, redis_dir), exist_ok=True)
                C = redis(os.path.join(tmp, redis_dir))
                try:
                    out["3"] = alternate([(A, "memcache"), (B, "memcache"), (C, "resp")], opts.rounds, w3 + d)
                finally:
                    C.stop()
                return out
            finally:
                A.stop()
                B.stop()

        log("== workload 6: workloads 1 and 3 with --durability sync (every write on disk before its reply)")
        sync = w1_and_w3(lite(os.path.join(tmp, "lite-sync"), durability="sync"), "redis-sync")
        log("== workloads 1 and 3 with the CSV mirror on (serve's default)")
        mirror = w1_and_w3(lite(os.path.join(tmp, "lite-mirror"), mirror=True), "redis-mirror")

        workloads.update(write_rows(tmp, opts.rounds, d))

        log("== workload 5: scale curve (workload 1 at growing pre-filled key counts)")
        scale = {}
        A = lite(os.path.join(tmp, "lite-scale"))
        B = memcached()
        try:
            for exp in [int(e) for e in opts.scale.split(",") if e.strip()]:
                n = 10 ** exp
                t = time.monotonic()
                fill = populate(A, n)
                fill_b = populate(B, n)
                log(f"  10^{exp}: filled in {time.monotonic() - t:.1f} s (memcached-lite {fill['ops_per_sec']:.0f} "
                    f"sets/s, {fill['errors']} errors; memcached {fill_b['errors']} errors)")
                # Pre-filled means the fill is over, background work included
                # (memcached-lite hands the fill to sled and flushes it).
                waited = {s.name: s.quiesce() for s in (A, B)}
                log("  quiet after " + ", ".join(f"{k} {v:.0f} s" for k, v in waited.items()))
                w5 = list(w1)
                w5[-1] = n
                scale[str(exp)] = alternate([(A, "memcache"), (B, "memcache")], opts.rounds, w5 + d,
                                            allow_errors=exp >= 7)
                scale[str(exp)]["memcached-lite"]["fill_sets_per_sec"] = fill["ops_per_sec"]
                for name, secs in waited.items():
                    scale[str(exp)][name]["quiesce_s"] = secs
                scale[str(exp)]["memcached-lite"]["fill_errors"] = fill["errors"]
                scale[str(exp)]["memcached"]["fill_errors"] = fill_b["errors"]
        finally:
            A.stop()
            B.stop()

        log(f"== RSS with {opts.idle_connections} idle connections")
        idle = {
            "memcached-lite": idle_rss(lambda: lite(os.path.join(tmp, "lite-idle"), opts.idle_connections + 1000), opts.idle_connections),
            "memcached": idle_rss(lambda: memcached(opts.idle_connections + 1000), opts.idle_connections),
        }
        for k, v in idle.items():
            log(f"    {k}: {v['per_conn_kib']:.1f} KiB per connection")

        log("== RSS per million 100 B items, and time to serving with 1,000,000 keys on disk")
        items = rss_per_million(tmp)
        du = subprocess.run(["du", "-sk", os.path.join(tmp, "lite-million")], capture_output=True, text=True).stdout.split()[0]
        def start_million():
            s = Server("memcached-lite", lambda p: [
                BIN, "serve", "--listen", f"127.0.0.1:{p}", "--http-listen", "127.0.0.1:0", "--no-csv-mirror",
                "--data-dir", os.path.join(tmp, "lite-million")],
                ready=b"get key:999999\r\n", ready_until=b"END\r\n")
            hit = request(s.port, b"get key:999999\r\n", b"END\r\n")
            if not hit.startswith(b"VALUE key:999999"):
                s.stop()
                raise RuntimeError(f"restarted store lost key:999999: {hit!r}")
            return s
        # After a clean shutdown (SIGTERM): the item counts were saved.
        starts = []
        for _ in range(3):
            s = start_million()
            starts.append(s.ready_after)
            s.stop()
        # After kill -9: sled recovers its log and the store counts every item.
        crash_starts = []
        s = start_million()
        for _ in range(3):
            time.sleep(1.5)  # let the background index load get going
            s.proc.kill()
            s.proc.wait()
            s = start_million()
            crash_starts.append(s.ready_after)
        s.stop()
        startup = {"seconds": starts, "after_kill_seconds": crash_starts, "disk_kib": int(du)}
        log(f"    ready after {', '.join(f'{x:.2f}' for x in starts)} s (clean restarts), "
            f"{', '.join(f'{x:.2f}' for x in crash_starts)} s (after kill -9); {int(du) // 1024} MiB on disk")
        cluster = None
        if not opts.no_cluster:
            log("== replicated group (bench/cluster.py)")
            c0 = time.monotonic()
            cl = cluster_module()
            cluster = {"options": {"rounds": opts.rounds, "duration": opts.duration, "warmup": opts.warmup},
                       "workloads": cl.cluster_workloads(os.path.join(tmp, "cluster"), opts.rounds,
                                                         opts.duration, opts.warmup)}
            cluster["elapsed_s"] = time.monotonic() - c0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    results = {"facts": facts, "options": vars(opts), "workloads": workloads, "cross_check": cross,
               "scale": scale, "sync": sync, "mirror": mirror, "idle": idle, "items": items, "startup": startup,
               "commands": COMMANDS, "elapsed_s": time.monotonic() - t0}
    if cluster:
        results["cluster"] = cluster
    with open(os.path.join(opts.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    md = render(results)
    with open(os.path.join(opts.out, "results.md"), "w") as f:
        f.write(md)
    print(md)
    chart(results, os.path.join(opts.out, "results.svg"))


# Workload 1's shape, for --only-unix (main() builds the same list as w1).
UNIX_W1 = ["--connections", 50, "--pipeline", 1, "--ratio", "1:10", "--data-size", 100, "--key-space", 100_000]

TITLES = {
    "1": "1: get:set 10:1, 50 conns, 100 B, 100k keys",
    "2": "2: as 1, pipeline 16",
    "3": "3: set-only, 1 KB values",
    "4": "4: get-only, all keys present",
    "1u": "1 over a unix socket (`--unix-socket`, memcached `-s`) and loopback TCP",
    "7": "7: set-only 1 KB, every write on disk first (`--durability sync` / `appendfsync always`)",
    "8": "8: set-only 100 B, pipeline 16, 10^6 keys",
}


def render(r):
    f = r["facts"]
    lines = ["# Benchmark results", "",
             f"Generated by `bash bench/run.sh` on {f['date']} in {r['elapsed_s'] / 60:.1f} min. "
             f"Load: `memcached-lite bench`, **one client thread** (tokio current-thread runtime) on the same "
             f"{f['nproc']}-core machine as the server, so client and server share the cores. "
             f"Each figure is the mean of {r['options']['rounds']} runs of {r['options']['duration']:g} s, "
             f"servers alternating A B A B, after one unrecorded {r['options'].get('warmup', 0):g} s warm-up run "
             f"per server. Ratios are memcached-lite / memcached (workload 3 also / Redis).",
             "",
             "memcached-lite runs with its defaults (sled persistence, `--durability periodic`: writes handed to "
             "sled and flushed every 100 ms, where Redis's `appendfsync everysec` fsyncs every second; in-memory "
             "read index) except `--no-csv-mirror`: the "
             "CSV mirror is a full snapshot file rewritten every second, the counterpart of Redis's RDB snapshots, "
             "which the Redis here also runs without (`--save \"\"`). The rows \"with its CSV mirror on\" show "
             "what the mirror costs.",
             "", "| workload | server | ops/s | p50 ms | p99 ms | p99.9 ms | ops/s ratio | p99 ratio | runs (ops/s) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]

    def rows(title, res):
        # Workload 7 has no memcached (it cannot put a write on disk): its ratios are / Redis.
        base = res.get("memcached") or next(v for n, v in res.items() if n.startswith("redis"))
        for name, s in res.items():
            ratio = s["ops_per_sec"] / base["ops_per_sec"]
            p99r = s["p99_ms"] / base["p99_ms"] if base["p99_ms"] else float("nan")
            lines.append(f"| {title} | {name} | {s['ops_per_sec']:,.0f} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | "
                         f"{s['p999_ms']:.3f} | {ratio:.2f}x | {p99r:.2f}x | {', '.join(f'{x:,}' for x in s['runs'])} |")

    for k in ["1", "2", "3", "4", "1u", "7", "8"]:
        if k in r["workloads"]:
            rows(TITLES[k], r["workloads"][k])
    for exp, res in r["scale"].items():
        rows(f"5: workload 1 at 10^{exp} keys", res)
    for k, res in r.get("sync", {}).items():
        rows(f"6: workload {k}, memcached-lite `--durability sync`", res)
    for k, res in r.get("mirror", {}).items():
        rows(f"workload {k}, memcached-lite with its CSV mirror on", res)
    w3 = r["workloads"]["3"]
    redis_name = next(n for n in w3 if n.startswith("redis"))
    lines += ["", f"Workload 3, memcached-lite / Redis (AOF everysec): "
              f"**{w3['memcached-lite']['ops_per_sec'] / w3[redis_name]['ops_per_sec']:.2f}x** ops/s with the "
              "default 100 ms flush interval"]
    one_s = next((n for n in w3 if "1000 ms" in n), None)
    if one_s:
        lines[-1] += (f"; **{w3[one_s]['ops_per_sec'] / w3[redis_name]['ops_per_sec']:.2f}x** with "
                      "`--flush-interval-ms 1000`, the same one-second loss window as Redis's everysec.")
    else:
        lines[-1] += "."
    exps = sorted(r["scale"], key=int)
    if len(exps) >= 2:
        lo, hi = exps[0], exps[-1]
        for name in ["memcached-lite", "memcached"]:
            a = r["scale"][lo][name]["ops_per_sec"]
            b = r["scale"][hi][name]["ops_per_sec"]
            lines.append(f"Scale curve, {name}: ops/s at 10^{hi} keys / at 10^{lo} keys = **{b / a:.2f}**.")
        waits = [(e, r["scale"][e]["memcached-lite"].get("quiesce_s")) for e in exps]
        if all(w is not None for _, w in waits):
            lines.append("After each fill, both servers were left until their CPU use fell below 5% of a core "
                         "(at most 120 s) before the warm-up and the runs; memcached-lite took "
                         + ", ".join(f"{w:.0f} s at 10^{e}" for e, w in waits)
                         + " (handing the fill to sled and flushing it), memcached "
                         + ", ".join(f"{r['scale'][e]['memcached']['quiesce_s']:.0f} s" for e in exps) + ".")
    if "7" in r["scale"]:
        m = r["scale"]["7"]["memcached"]
        refused = m.get("fill_errors", 0)
        lines.append(f"At 10^7 keys real memcached (`-m 1024`) cannot hold every item: it evicts"
                     + (f" and refused {refused:,} sets while filling (`SERVER_ERROR out of memory`)" if refused else "")
                     + f", so its get hit rate there is {m['hit_rate']:.0%} ({m.get('errors', 0)} errors in the runs); "
                     f"memcached-lite keeps every item on disk "
                     f"({r['scale']['7']['memcached-lite']['hit_rate']:.0%} hits).")
    else:
        lines.append("The 10^7 point was skipped in this run (`--scale` without 7): filling 10^7 keys into "
                     "both servers takes several minutes on this machine.")
    if r.get("sync"):
        s3 = r["sync"]["3"]
        rn = next(n for n in s3 if n.startswith("redis"))
        lite_sync = next(n for n in s3 if n.startswith("memcached-lite"))
        lines += ["", "Workload 6: workloads 1-5 above run memcached-lite in its default `--durability periodic` "
                  "(writes reach sled and are flushed every `--flush-interval-ms`, 100 ms); the rows marked `--durability sync` run "
                  "workloads 1 and 3 with every write on disk (group commit, fdatasync) before its reply. "
                  f"Workload 3 in sync mode, memcached-lite / Redis (AOF everysec): "
                  f"**{s3[lite_sync]['ops_per_sec'] / s3[rn]['ops_per_sec']:.2f}x** "
                  "(Redis still acknowledges before its once-a-second fsync)."]
    lines += targets(r)
    if r.get("cluster"):
        lines += cluster_module().render_cluster(r["cluster"]["workloads"], r["cluster"]["options"],
                                                 r["cluster"].get("facts"))
    c = r["cross_check"]
    lines += ["", "## Cross-check against libmemcached's memaslap", "",
              "Same workload 1 shape (50 connections, 1 client thread, 100 B values, set:get 1:10) "
              "against the same real memcached, alternating:", "",
              f"- memaslap (`memcaslap`): {', '.join(f'{x:,.0f}' for x in c['memaslap'])} TPS "
              f"(mean {statistics.mean(c['memaslap']):,.0f})",
              f"- `memcached-lite bench`: {', '.join(f'{x:,.0f}' for x in c['bench'])} ops/s "
              f"(mean {statistics.mean(c['bench']):,.0f}); ratio bench/memaslap "
              f"{statistics.mean(c['bench']) / statistics.mean(c['memaslap']):.2f}"]
    lines += ["", "## Memory and start-up", "", "| measure | memcached-lite | memcached |", "| --- | ---: | ---: |"]
    i = r["idle"]
    lines.append(f"| RSS per idle connection ({r['options']['idle_connections']:,} open, one `version` each) | "
                 f"{i['memcached-lite']['per_conn_kib']:.1f} KiB | {i['memcached']['per_conn_kib']:.1f} KiB |")
    it = r["items"]
    lines.append(f"| RSS growth per million 100 B items | {it['memcached-lite']['per_million_mib']:.0f} MiB | "
                 f"{it['memcached']['per_million_mib']:.0f} MiB |")
    st = r["startup"]
    lines.append(f"| start to serving a get with 1,000,000 keys on disk ({st['disk_kib'] // 1024} MiB), after a clean shutdown | "
                 f"{', '.join(f'{x:.2f}' for x in st['seconds'])} s | n/a (not persistent) |")
    if "after_kill_seconds" in st:
        lines.append(f"| the same after `kill -9` (sled log recovery, every item counted) | "
                     f"{', '.join(f'{x:.2f}' for x in st['after_kill_seconds'])} s | n/a |")
    lines += ["", "## Machine", "", "```", f"nproc: {f['nproc']}", f['lscpu'], f['free'],
              f"kernel {f['kernel']}; load at start {f['load']}", f['memcached'], f['redis'], f['rustc'], "```",
              "", "## Exact commands", "",
              "`$MEMCACHED_LITE`, `$MEMCACHED`, `$REDIS` stand for each server's loopback address (`unix:<path>` in "
              "the unix-socket rows), `$PORT` for a free "
              "port, `$TMP` for the run's scratch directory; memaslap.cfg holds "
              "`key 20 20 1 / value 100 100 1 / cmd 0 0.0909, 1 0.9091`.",
              "", "```"]
    for cmd in dict.fromkeys(r["commands"]):
        lines.append(cmd)
    lines += ["```", ""]
    return "\n".join(lines)


def cluster_module():
    """bench/cluster.py, sharing this module's state (commands, scratch dir)
    even when this file runs as __main__."""
    sys.modules.setdefault("run", sys.modules[__name__])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import cluster
    return cluster


def targets(r):
    """The issue's targets, each with its measured value and verdict."""
    w = r["workloads"]
    ratio = lambda k, key="ops_per_sec", other="memcached": w[k]["memcached-lite"][key] / w[k][other][key]  # noqa: E731
    redis_name = next(n for n in w["3"] if n.startswith("redis"))
    rows = [
        ("workload 1 ops/s >= 0.9x memcached", ratio("1"), ratio("1") >= 0.9),
        ("workload 1 p99 <= 1.5x memcached", ratio("1", "p99_ms"), ratio("1", "p99_ms") <= 1.5),
        ("workload 2 ops/s >= 0.8x memcached", ratio("2"), ratio("2") >= 0.8),
        ("workload 3 ops/s >= 1.0x Redis AOF everysec (default 100 ms flush)", ratio("3", other=redis_name),
         ratio("3", other=redis_name) >= 1.0),
    ]
    one_s = next((n for n in w["3"] if "1000 ms" in n), None)
    if one_s:
        v = w["3"][one_s]["ops_per_sec"] / w["3"][redis_name]["ops_per_sec"]
        rows.append(("workload 3 ops/s >= 1.0x Redis AOF everysec (both with a 1 s loss window)", v, v >= 1.0))
    exps = sorted(r["scale"], key=int)
    if len(exps) >= 2:
        lite = [r["scale"][e]["memcached-lite"]["ops_per_sec"] for e in (exps[-1], exps[0])]
        rows.append((f"ops/s at 10^{exps[-1]} keys >= 0.8x ops/s at 10^{exps[0]}", lite[0] / lite[1], lite[0] / lite[1] >= 0.8))
    if "7" in w:
        r7 = next(n for n in w["7"] if n.startswith("redis"))
        lite7 = next(n for n in w["7"] if n.startswith("memcached-lite"))
        v = w["7"][lite7]["ops_per_sec"] / w["7"][r7]["ops_per_sec"]
        rows.append(("workload 7 ops/s >= 1.0x Redis AOF always (issue 15)", v, v >= 1.0))
        p99 = w["7"][lite7]["p99_ms"] / w["7"][r7]["p99_ms"]
        rows.append(("workload 7 p99 <= Redis AOF always's (ratio, issue 15)", p99, p99 <= 1.0))
    if "8" in w:
        rows.append(("workload 8 ops/s >= 1.0x memcached (issue 15)", ratio("8"), ratio("8") >= 1.0))
    it = r["items"]
    v = it["memcached-lite"]["per_million_mib"] / it["memcached"]["per_million_mib"]
    rows.append(("RSS growth per 10^6 items of 100 B <= 1.5x memcached", v, v <= 1.5))
    idle = r["idle"]["memcached-lite"]["per_conn_kib"]
    rows.append(("<= 16 KiB RSS per idle connection", idle, idle <= 16))
    ready = max(r["startup"]["seconds"])
    rows.append(("ready in <= 2 s with 1,000,000 keys (slowest of 3 clean starts)", ready, ready <= 2.0))
    if "after_kill_seconds" in r["startup"]:
        ready = max(r["startup"]["after_kill_seconds"])
        rows.append(("ready in <= 2 s with 1,000,000 keys (slowest of 3 starts after kill -9)", ready, ready <= 2.0))
    out = ["", "## Targets of the issue", "", "| target | measured | met |", "| --- | ---: | --- |"]
    verdict = {True: "yes", False: "**no**", None: "n/a"}
    out += [f"| {name} | {value:.2f} | {verdict[ok]} |" for name, value, ok in rows]
    return out


def chart(r, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small, diffable SVG
        matplotlib.rcParams["svg.hashsalt"] = "memcached-lite"  # stable ids: re-rendering changes nothing
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed (pip install matplotlib): no chart")
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = ["memcached-lite", "memcached"]
    keys = ["1", "2", "3", "4"]
    width = 0.27
    colors = {"memcached-lite": "#d95f02", "memcached": "#1b9e77", "redis": "#7570b3"}
    for i, name in enumerate(names):
        vals = [r["workloads"][k][name]["ops_per_sec"] / 1000 for k in keys]
        ax1.bar([x + (i - 1) * width for x in range(len(keys))], vals, width, label=name, color=colors[name])
    rn = next(n for n in r["workloads"]["3"] if n.startswith("redis"))
    ax1.bar([2 + width], [r["workloads"]["3"][rn]["ops_per_sec"] / 1000], width, label=rn, color=colors["redis"])
    ax1.set_xticks(range(len(keys)), ["1: get:set 10:1", "2: pipeline 16", "3: set 1 KB", "4: get-only"])
    ax1.set_ylabel("k ops/s (1 client thread, 2 cores shared)")
    ax1.set_title("Workloads 1-4")
    ax1.legend(fontsize=8)
    exps = sorted(r["scale"], key=int)
    for name in names:
        ax2.plot([10 ** int(e) for e in exps], [r["scale"][e][name]["ops_per_sec"] / 1000 for e in exps],
                 marker="o", label=name, color=colors[name])
    ax2.set_xscale("log")
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("keys pre-filled")
    ax2.set_ylabel("k ops/s")
    ax2.set_title("Workload 5: scale curve (workload 1)")
    ax2.legend(fontsize=8)
    fig.suptitle(f"memcached-lite vs memcached, {r['facts']['date']}")
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    log(f"chart: {path}")


if __name__ == "__main__":
    main()
