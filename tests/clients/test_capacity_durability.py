"""Capacity limits and sync durability as a real client (pymemcache) sees them."""
import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheServerError

from conftest import Server


@pytest.fixture
def make_server():
    started = []

    def start(*extra, **kw):
        s = Server(*extra, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.cleanup()


def test_noeviction_raises_server_error_when_full(make_server):
    s = make_server("--max-bytes", "20000", "--eviction", "noeviction")
    c = Client(("127.0.0.1", s.port), default_noreply=False)
    stored = 0
    with pytest.raises(MemcacheServerError, match="out of memory storing object"):
        for i in range(1000):
            c.set(f"k{i}", b"x" * 200)
            stored += 1
    assert 50 < stored < 100
    assert c.get("k0") == b"x" * 200
    assert int(c.stats()[b"evictions"]) == 0


def test_lru_keeps_accepting_and_counts_evictions(make_server):
    s = make_server("--max-bytes", "20000", "--eviction", "lru")
    c = Client(("127.0.0.1", s.port), default_noreply=False)
    for i in range(500):
        assert c.set(f"k{i}", b"x" * 200)
        c.get("k0")  # keep one key hot
    stats = c.stats()
    assert int(stats[b"evictions"]) >= 400
    assert int(stats[b"bytes"]) <= 20000
    assert c.get("k0") == b"x" * 200
    assert c.get("k499") == b"x" * 200


def test_sync_mode_acknowledges_after_disk_and_survives_restart(make_server):
    s = make_server("--durability", "sync")
    c = Client(("127.0.0.1", s.port), default_noreply=False)
    for i in range(50):
        assert c.set(f"d{i}", f"v{i}")
    assert c.incr("n", 1) is None  # NOT_FOUND
    c.set("n", "41")
    assert c.incr("n", 1) == 42
    assert int(c.stats()[b"commit_syncs"]) > 0
    # SIGKILL: no graceful flush; every acknowledged write must still be there.
    s.proc.kill()
    s.proc.wait()
    s2 = make_server("--durability", "sync", data_dir=s.data_dir)
    c2 = Client(("127.0.0.1", s2.port), default_noreply=False)
    assert c2.get_many([f"d{i}" for i in range(50)]) == {f"d{i}": f"v{i}".encode() for i in range(50)}
    assert c2.get("n") == b"42"
