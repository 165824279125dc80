"""pymemcache (PyPI), a client nobody here wrote, against memcached-lite:
every command it offers for the classic text protocol."""
import time

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError, MemcacheIllegalInputError


@pytest.fixture
def client(server):
    c = Client(("127.0.0.1", server.port), timeout=10, connect_timeout=5)
    yield c
    c.close()


def test_set_get_and_get_many(client):
    assert client.set("a", b"alpha") is True
    assert client.set("b", b"beta", noreply=False) is True
    assert client.get("a") == b"alpha"
    assert client.get("missing") is None
    assert client.get("missing", default=b"dflt") == b"dflt"
    assert client.get_many(["a", "b", "missing"]) == {"a": b"alpha", "b": b"beta"}
    # Binary-safe values, including \r\n inside the data.
    blob = bytes(range(256)) * 4
    client.set("blob", blob)
    assert client.get("blob") == blob
    # noreply (pymemcache's default) still stores.
    client.set("quiet", b"q", noreply=True)
    assert client.get("quiet") == b"q"


def test_add_replace_append_prepend(client):
    assert client.add("k", b"v1", noreply=False) is True
    assert client.add("k", b"v2", noreply=False) is False
    assert client.get("k") == b"v1"
    assert client.replace("k", b"v3", noreply=False) is True
    assert client.replace("nope", b"x", noreply=False) is False
    assert client.append("k", b"-tail", noreply=False) is True
    assert client.prepend("k", b"head-", noreply=False) is True
    assert client.get("k") == b"head-v3-tail"
    assert client.append("nope", b"x", noreply=False) is False
    assert client.prepend("nope", b"x", noreply=False) is False
    assert client.get("nope") is None


def test_gets_and_cas(client):
    client.set("c", b"one")
    value, cas = client.gets("c")
    assert value == b"one" and int(cas) > 0
    assert client.cas("c", b"two", cas) is True
    assert client.cas("c", b"three", cas) is False  # EXISTS: stale cas
    assert client.get("c") == b"two"
    assert client.cas("nope", b"x", b"1") is None  # NOT_FOUND
    _, newer = client.gets("c")
    assert int(newer) > int(cas)
    assert client.gets("nope") == (None, None)
    many = client.gets_many(["c", "nope"])
    assert list(many) == ["c"] and many["c"][0] == b"two"


def test_incr_decr(client):
    client.set("n", b"10")
    assert client.incr("n", 5, noreply=False) == 15
    assert client.decr("n", 3, noreply=False) == 12
    assert client.decr("n", 100, noreply=False) == 0
    assert client.incr("missing", 1, noreply=False) is None
    assert client.decr("missing", 1, noreply=False) is None
    client.set("n", b"18446744073709551615")
    assert client.incr("n", 2, noreply=False) == 1  # 64-bit wrap
    client.set("t", b"text")
    with pytest.raises(MemcacheClientError, match="non-numeric"):
        client.incr("t", 1, noreply=False)


def test_delete_touch_and_expiry(client):
    client.set("d", b"x")
    assert client.delete("d", noreply=False) is True
    assert client.delete("d", noreply=False) is False
    assert client.get("d") is None
    client.set("t", b"x", expire=2)
    assert client.touch("t", expire=0, noreply=False) is True
    assert client.touch("missing", expire=10, noreply=False) is False
    client.set("short", b"x", expire=1)
    time.sleep(2.1)
    assert client.get("t") == b"x"  # touch removed its ttl
    assert client.get("short") is None


def test_flush_all(client):
    client.set_many({"f1": b"1", "f2": b"2"})
    assert client.flush_all(noreply=False) is True
    assert client.get_many(["f1", "f2"]) == {}
    client.set("f3", b"3")
    assert client.flush_all(delay=3, noreply=False) is True
    assert client.get("f3") == b"3"
    deadline = time.time() + 5
    while client.get("f3") is not None:
        assert time.time() < deadline, "delayed flush_all never happened"
        time.sleep(0.1)


def test_stats_and_version(client, server):
    client.set("s", b"x")
    client.get("s")
    client.get("nope")
    stats = client.stats()
    assert stats[b"version"] == b"1.6.18"
    assert stats[b"pid"] == server.proc.pid
    assert stats[b"cmd_get"] == 2 and stats[b"get_hits"] == 1 and stats[b"get_misses"] == 1
    assert stats[b"curr_items"] == 1
    assert stats[b"curr_connections"] >= 1
    settings = client.stats("settings")
    assert settings[b"tcpport"] == server.port
    assert client.version() == b"1.6.18"


def test_bad_input_is_an_error_not_a_hang(client):
    # pymemcache refuses over-long keys itself (the server's answer is checked
    # byte for byte in test_side_by_side.py and tests/text_protocol.rs).
    with pytest.raises(MemcacheIllegalInputError):
        client.set("x" * 251, b"v")
    client.set("t", b"text")
    with pytest.raises(MemcacheClientError):
        client.decr("t", 1, noreply=False)
    assert client.get("t") == b"text"
