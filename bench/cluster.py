#!/usr/bin/env python3
"""The replicated group's workloads (issue 12, "Speed"), side by side.

Run alone with `bash bench/run.sh --only-cluster` (about 4 minutes), or as
part of the full `bash bench/run.sh`. Everything runs on loopback, every
load is bounded in time, and peers alternate A B A B within one run so the
figures that matter are the ratios:

- C1: memcached-protocol set-only, 100 B values, 50 connections, through
  the leader of a 3-node group vs a single node, both `--durability sync`
  (same load tool as the other workloads: `memcached-lite bench`).
- C2: get-only on 100,000 present keys, leader of a group with the default
  linearizable reads, leader of a group with `--read-consistency local`,
  vs the single node (sync).
- C3: HTTP PUT of 100 B values with distinct keys, 50 connections, through
  the leader, vs an etcd 3.4 group of three (its JSON gateway,
  `POST /v3/kv/put` with base64 key and value); load from `wrk` with a Lua
  script on both sides.

Every process started here is stopped at the end (etcd included).
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import run
from run import BIN, COMMANDS, Server, alternate, display, free_port, log, populate

GROUP_FLAGS = ["--durability", "sync", "--no-csv-mirror"]


def http_json(url, body=None, timeout=2.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


class Node(Server):
    """One memcached-lite node of a group, with its HTTP port known."""

    def __init__(self, name, argv_fn, http_port):
        self.http_port = http_port
        super().__init__(name, argv_fn)


class Group:
    """Three memcached-lite processes forming one replicated group."""

    def __init__(self, name, tmp, extra=(), slug="group"):
        self.name = name
        raft = [free_port() for _ in range(3)]
        peers = ",".join(f"{i + 1}=127.0.0.1:{p}" for i, p in enumerate(raft))
        self.nodes = []
        try:
            for i in range(3):
                http = free_port()
                argv = lambda p, i=i, http=http: [  # noqa: E731
                    BIN, "serve", "--listen", f"127.0.0.1:{p}", "--http-listen", f"127.0.0.1:{http}",
                    "--data-dir", os.path.join(tmp, f"{slug}-n{i + 1}"), "--node-id", str(i + 1),
                    "--raft-listen", f"127.0.0.1:{raft[i]}", "--peers", peers, *GROUP_FLAGS, *extra]
                self.nodes.append(Node(f"{name} node {i + 1}", argv, http))
            self.leader = self.wait_leader()
            self.leader.name = name
        except BaseException:
            self.stop()
            raise

    def wait_leader(self, limit=30.0):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for n in self.nodes:
                try:
                    st = http_json(f"http://127.0.0.1:{n.http_port}/v1/cluster")
                except OSError:
                    continue
                if st.get("role") == "leader" and st.get("applied_index", 0) >= 1:
                    return n
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: no leader after {limit}s")

    def stop(self):
        for n in self.nodes:
            n.stop()


def single(tmp):
    return Server("single node (sync)", lambda p: [
        BIN, "serve", "--listen", f"127.0.0.1:{p}", "--http-listen", "127.0.0.1:0",
        "--data-dir", os.path.join(tmp, "single"), *GROUP_FLAGS])


class Etcd:
    """An etcd 3.4 group of three on loopback, data in `tmp`."""

    def __init__(self, tmp):
        self.name = "etcd 3.4 (3 nodes)"
        peer = [free_port() for _ in range(3)]
        self.client = [free_port() for _ in range(3)]
        cluster = ",".join(f"e{i + 1}=http://127.0.0.1:{p}" for i, p in enumerate(peer))
        self.procs = []
        try:
            for i in range(3):
                argv = ["etcd", "--name", f"e{i + 1}", "--data-dir", os.path.join(tmp, f"etcd-{i + 1}"),
                        "--listen-client-urls", f"http://127.0.0.1:{self.client[i]}",
                        "--advertise-client-urls", f"http://127.0.0.1:{self.client[i]}",
                        "--listen-peer-urls", f"http://127.0.0.1:{peer[i]}",
                        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer[i]}",
                        "--initial-cluster", cluster, "--initial-cluster-token", "mcl-bench",
                        "--initial-cluster-state", "new", "--log-level", "error"]
                COMMANDS.append(display(argv))
                self.procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL))
            self.port = self.wait_leader()
        except BaseException:
            self.stop()
            raise

    def wait_leader(self, limit=60.0):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for port in self.client:
                try:
                    st = http_json(f"http://127.0.0.1:{port}/v3/maintenance/status", {})
                except OSError:
                    continue
                if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                    return port
            time.sleep(0.2)
        raise RuntimeError(f"etcd: no leader after {limit}s")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# wrk scripts: one request per call, a distinct key each (a per-thread
# random prefix and a counter), 100 B values; `done` prints the figures as
# JSON (latency in microseconds), counting non-2xx answers as errors.
WRK_COMMON = r"""
local counter = 0
local prefix = string.format("%08x", math.random(0, 0x7fffffff))
local value = string.rep("v", 100)
local errors = 0
response = function(status, headers, body)
  if status < 200 or status > 299 then errors = errors + 1 end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"socket_errors":%d,"status_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), e.connect + e.read + e.write + e.timeout, e.status))
end
"""

WRK_LITE = WRK_COMMON + r"""
request = function()
  counter = counter + 1
  return wrk.format("PUT", "/v1/keys/put:" .. prefix .. ":" .. counter, nil, value)
end
"""

WRK_ETCD = WRK_COMMON + r"""
local b64chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function b64(data)
  return ((data:gsub('.', function(x)
    local r, b = '', x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and '1' or '0') end
    return r
  end) .. '0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
    if #x < 6 then return '' end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == '1' and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ '', '==', '=' })[#data % 3 + 1])
end
local value64 = b64(value)
local headers = { ["Content-Type"] = "application/json" }
request = function()
  counter = counter + 1
  local body = '{"key":"' .. b64("put:" .. prefix .. ":" .. counter) .. '","value":"' .. value64 .. '"}'
  return wrk.format("POST", "/v3/kv/put", headers, body)
end
"""


def wrk(port, script, seconds, label):
    argv = ["wrk", "-t", "1", "-c", "50", "-d", f"{seconds:g}s", "--timeout", "5s", "-s", script,
            f"http://127.0.0.1:{port}"]
    COMMANDS.append(display(argv).replace(str(port), "$" + label))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk output not understood: {out.stdout[-400:]} {out.stderr[-400:]}")
    r = json.loads(line[len("WRKJSON "):])
    return {"ops_per_sec": r["requests"] / (r["duration_us"] / 1e6), "p50_ms": r["p50_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000, "p999_ms": r["p999_us"] / 1000,
            "errors": r["socket_errors"] + r["status_errors"]}


def wrk_alternate(targets, rounds, seconds, warmup):
    """`targets`: (name, port, script, label). A B A B after a warm-up each."""
    if warmup > 0:
        for _, port, script, label in targets:
            wrk(port, script, warmup, label)
    runs = {name: [] for name, *_ in targets}
    for r in range(rounds):
        for name, port, script, label in targets:
            rep = wrk(port, script, seconds, label)
            runs[name].append(rep)
            log(f"    round {r + 1} {name:30} {rep['ops_per_sec']:>10.0f} puts/s  p50 {rep['p50_ms']:.3f}  "
                f"p99 {rep['p99_ms']:.3f}  p99.9 {rep['p999_ms']:.3f} ms  errors {rep['errors']}")
    out = {}
    for name, reps in runs.items():
        out[name] = {
            "ops_per_sec": sum(r["ops_per_sec"] for r in reps) / len(reps),
            "p50_ms": sum(r["p50_ms"] for r in reps) / len(reps),
            "p99_ms": sum(r["p99_ms"] for r in reps) / len(reps),
            "p999_ms": sum(r["p999_ms"] for r in reps) / len(reps),
            "runs": [round(r["ops_per_sec"]) for r in reps],
            "errors": sum(r["errors"] for r in reps),
        }
    return out


def cluster_workloads(tmp, rounds, duration, warmup):
    """Runs C1-C3; returns {"C1": {...}, "C2": {...}, "C3": {...}} (each a
    name -> summary map, as `run.alternate` returns)."""
    os.makedirs(tmp, exist_ok=True)
    d = ["--duration", duration]
    res = {}
    S = single(tmp)
    G = L = None
    try:
        G = Group("3-node group (sync)", tmp)
        log("== C1: set-only, 100 B, 50 connections: 3-node group leader vs single node, both --durability sync")
        c1 = ["--connections", 50, "--pipeline", 1, "--ratio", "1:0", "--data-size", 100,
              "--key-space", 100_000, "--key-prefix", "set:"]
        res["C1"] = alternate([(S, "memcache"), (G.leader, "memcache")], rounds, c1 + d)
        log("== C2: get-only, 100,000 present keys: group leader (linearizable, local) vs single node")
        L = Group("3-node group (sync, --read-consistency local)", tmp, ["--read-consistency", "local"], slug="local")
        for s in (S, G.leader, L.leader):
            if populate(s, 100_000)["errors"]:
                raise RuntimeError(f"{s.name} refused sets while populating")
        c2 = ["--connections", 50, "--pipeline", 1, "--ratio", "0:1", "--key-space", 100_000]
        res["C2"] = alternate([(S, "memcache"), (G.leader, "memcache"), (L.leader, "memcache")], rounds, c2 + d)
    finally:
        for x in (L, G):
            if x:
                x.stop()
        S.stop()

    log("== C3: HTTP PUT 100 B, distinct keys, 50 connections (wrk): group leader vs etcd 3.4 group of three")
    scripts = {}
    for name, text in [("lite", WRK_LITE), ("etcd", WRK_ETCD)]:
        scripts[name] = os.path.join(tmp, f"put-{name}.lua")
        with open(scripts[name], "w") as f:
            f.write(text)
    G = E = None
    try:
        G = Group("3-node group (sync)", os.path.join(tmp, "c3"))
        E = Etcd(os.path.join(tmp, "c3"))
        res["C3"] = wrk_alternate([(G.name, G.leader.http_port, scripts["lite"], "LITE_LEADER_HTTP"),
                                   (E.name, E.port, scripts["etcd"], "ETCD_LEADER")],
                                  rounds, duration, warmup)
    finally:
        for x in (G, E):
            if x:
                x.stop()
    return res


CLUSTER_TITLES = {
    "C1": "C1: set-only, 100 B, 50 conns (memcache protocol)",
    "C2": "C2: get-only, 100k keys present",
    "C3": "C3: HTTP PUT 100 B, distinct keys, 50 conns (wrk)",
}


def cluster_targets(c):
    """The issue's targets for the group, (target, measured, met)."""
    rows = []
    if "C1" in c:
        s, g = c["C1"]["single node (sync)"], c["C1"]["3-node group (sync)"]
        v = g["ops_per_sec"] / s["ops_per_sec"]
        rows.append(("C1 group sets/s >= 0.5x single node (both `--durability sync`)", v, v >= 0.5))
    if "C2" in c:
        s = c["C2"]["single node (sync)"]
        for name in c["C2"]:
            if name.startswith("3-node"):
                v = c["C2"][name]["ops_per_sec"] / s["ops_per_sec"]
                what = "local reads" if "local" in name else "linearizable reads"
                rows.append((f"C2 group gets/s >= 0.8x single node ({what})", v, v >= 0.8))
    if "C3" in c:
        e = next(v for k, v in c["C3"].items() if k.startswith("etcd"))
        g = next(v for k, v in c["C3"].items() if k.startswith("3-node"))
        v = g["ops_per_sec"] / e["ops_per_sec"]
        rows.append(("C3 HTTP puts/s >= 5x etcd 3.4 (3 nodes)", v, v >= 5.0))
        v = g["p99_ms"] / e["p99_ms"]
        rows.append(("C3 HTTP PUT p99 < etcd's (ratio group/etcd)", v, v < 1.0))
    return rows


def render_cluster(c, opts, facts=None):
    """The "Replicated group" section of results.md."""
    lines = ["", "## Replicated group", "",
             "Issue 12's speed targets. Three memcached-lite processes on loopback form one group "
             "(`--peers`, `--durability sync`, `--no-csv-mirror`); the load goes to the leader. C1 and C2 use "
             "`memcached-lite bench` (one client thread) against the group and a single node started with the "
             "same flags but no `--peers`; C3 uses `wrk -t 1 -c 50` with a Lua script (a distinct key per "
             "request, 100 B values) against the group's HTTP API (`PUT /v1/keys/{key}`) and an etcd "
             f"{'3.4'} group of three (`POST /v3/kv/put`, base64 key and value, the request sent to its "
             f"leader). Each figure is the mean of {opts['rounds']} runs of {opts['duration']:g} s, alternating "
             f"A B A B after a {opts.get('warmup', 0):g} s warm-up each; ratios are against the first row of "
             "each workload." + (f" Measured {facts['date']}." if (facts or {}).get("date") else ""),
             "",
             "| workload | server | ops/s | p50 ms | p99 ms | p99.9 ms | ops/s ratio | p99 ratio | runs (ops/s) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for k in ["C1", "C2", "C3"]:
        if k not in c:
            continue
        res = c[k]
        names = list(res)
        if k == "C3":  # etcd is the baseline there
            names.sort(key=lambda n: not n.startswith("etcd"))
        base = res[names[0]]
        for name in names:
            s = res[name]
            ratio = s["ops_per_sec"] / base["ops_per_sec"]
            p99r = s["p99_ms"] / base["p99_ms"] if base["p99_ms"] else float("nan")
            lines.append(f"| {CLUSTER_TITLES[k]} | {name} | {s['ops_per_sec']:,.0f} | {s['p50_ms']:.3f} | "
                         f"{s['p99_ms']:.3f} | {s['p999_ms']:.3f} | {ratio:.2f}x | {p99r:.2f}x | "
                         f"{', '.join(f'{x:,}' for x in s['runs'])} |")
    lines += ["", "| target | measured | met |", "| --- | ---: | --- |"]
    lines += [f"| {n} | {v:.2f} | {'yes' if ok else '**no**'} |" for n, v, ok in cluster_targets(c)]
    return lines


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--out", default=os.path.join(run.ROOT, "bench"))
    ap.add_argument("--no-write", action="store_true", help="print only; results files untouched")
    opts = ap.parse_args()
    run_standalone(opts)


def run_standalone(opts):
    """Measures C1-C3 and merges them into results.json / results.md
    (the other workloads' figures stay as the last full run left them)."""
    for tool in ("wrk", "etcd"):
        if not shutil.which(tool):
            raise SystemExit(f"missing {tool}: apt-get install wrk etcd-server")
    run.WARMUP[0] = opts.warmup
    tmp = tempfile.mkdtemp(prefix="mcl-cluster-")
    run.TMP[0] = tmp
    t0 = time.monotonic()
    try:
        c = cluster_workloads(tmp, opts.rounds, opts.duration, opts.warmup)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info = {"options": {"rounds": opts.rounds, "duration": opts.duration, "warmup": opts.warmup},
            "facts": run.machine_facts(), "commands": list(dict.fromkeys(COMMANDS)),
            "elapsed_s": time.monotonic() - t0, "workloads": c}
    print("\n".join(render_cluster(c, info["options"])))
    if getattr(opts, "no_write", False):
        return
    path = os.path.join(opts.out, "results.json")
    with open(path) as f:
        results = json.load(f)
    results["cluster"] = info
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(opts.out, "results.md"), "w") as f:
        f.write(run.render(results))


if __name__ == "__main__":
    main()
