"""Scale-out through an existing proxy: three memcached-lite instances behind
twemproxy (Debian's nutcracker) with a ketama pool, driven by pymemcache.

10,000 keys go in through the proxy and come back out; ketama spreads them
evenly; when one instance dies the proxy ejects it and keeps serving every
key of the others."""
import json
import os
import socket
import subprocess
import tempfile
import time

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheError

from conftest import Server, free_port

N_KEYS = 10_000
BATCH = 200


def wait_port(port, proc, deadline_s=20):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        assert proc.poll() is None, "nutcracker exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def client(port):
    return Client(("127.0.0.1", port), connect_timeout=5, timeout=5)


def batches(keys):
    for i in range(0, len(keys), BATCH):
        yield keys[i:i + BATCH]


class Nutcracker:
    def __init__(self, servers):
        self.port, self.stats_port = free_port(), free_port()
        self.dir = tempfile.mkdtemp(prefix="nutcracker-")
        conf = os.path.join(self.dir, "nutcracker.yml")
        lines = [
            "pool:",
            f"  listen: 127.0.0.1:{self.port}",
            # libketama's key hash. fnv1a_64 (truncated to 32 bits by
            # nutcracker) skews short sequential keys: 28/28/44% here.
            "  hash: md5",
            "  distribution: ketama",
            "  timeout: 2000",
            "  auto_eject_hosts: true",
            "  server_failure_limit: 1",
            "  server_retry_timeout: 600000",
            "  servers:",
        ] + [f"    - 127.0.0.1:{s.port}:1 memcached-lite-{i}" for i, s in enumerate(servers)]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = os.path.join(self.dir, "nutcracker.log")
        self.proc = subprocess.Popen([
            "nutcracker", "--conf-file", conf, "--output", self.log,
            "--stats-addr", "127.0.0.1", "--stats-port", str(self.stats_port),
            "--stats-interval", "200",
        ])
        wait_port(self.port, self.proc)

    def stats(self):
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=5) as s:
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return json.loads(data)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def cluster():
    servers = [Server() for _ in range(3)]
    proxy = Nutcracker(servers)
    yield servers, proxy
    proxy.stop()
    for s in servers:
        s.cleanup()


def value_of(key):
    return f"value-of-{key}".encode()


def test_ketama_pool_spreads_keys_and_survives_a_dead_instance(cluster):
    servers, proxy = cluster
    keys = [f"key:{i}" for i in range(N_KEYS)]
    via_proxy = client(proxy.port)

    started = time.time()
    for chunk in batches(keys):
        failed = via_proxy.set_many({k: value_of(k) for k in chunk}, noreply=False)
        assert failed == [], failed[:5]
    for chunk in batches(keys):
        got = via_proxy.get_many(chunk)
        assert got == {k: value_of(k) for k in chunk}
    assert time.time() - started < 60

    # Every instance holds about a third: 33% +- 10% of the keys.
    counts = [int(client(s.port).stats()[b"curr_items"]) for s in servers]
    assert sum(counts) == N_KEYS, counts
    for c in counts:
        assert 0.23 * N_KEYS <= c <= 0.43 * N_KEYS, counts

    # Which keys live where, asked of each instance directly.
    owner = {}
    for i, s in enumerate(servers):
        direct = client(s.port)
        for chunk in batches(keys):
            for k in direct.get_many(chunk):
                assert k not in owner
                owner[k] = i
    assert len(owner) == N_KEYS

    victim = 1
    servers[victim].proc.kill()
    servers[victim].proc.wait(timeout=10)
    victim_keys = [k for k in keys if owner[k] == victim]
    live_keys = [k for k in keys if owner[k] != victim]

    # The first request(s) for the dead instance's keys may fail (unless the
    # proxy saw its connection drop first); one failure ejects it
    # (server_failure_limit: 1), after which its keys hash to the live
    # instances: plain misses, no errors.
    errors = 0
    for k in victim_keys[:5]:
        try:
            assert client(proxy.port).get(k) is None
        except MemcacheError:
            errors += 1
    assert errors < 5, "the proxy kept routing to the dead instance"
    via_proxy = client(proxy.port)
    for chunk in batches(victim_keys[5:]):
        assert via_proxy.get_many(chunk) == {}

    # The proxy reports the ejection.
    deadline = time.time() + 10
    while True:
        ejects = proxy.stats()["pool"]["server_ejects"]
        if ejects >= 1 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert ejects == 1

    # Every key of the live instances is still served, with its value.
    for chunk in batches(live_keys):
        assert via_proxy.get_many(chunk) == {k: value_of(k) for k in chunk}

    # Writes keep working, including for keys that used to be the victim's:
    # they now land on the live instances.
    for k in victim_keys[:100]:
        assert via_proxy.set(k, b"rehomed", noreply=False) is True
        assert via_proxy.get(k) == b"rehomed"
    live_counts = [int(client(s.port).stats()[b"curr_items"]) for i, s in enumerate(servers) if i != victim]
    assert sum(live_counts) == len(live_keys) + 100
