"""`get_flushed` against a live memcached 1.6.18: the same commands around
`flush_all` (immediate, then delayed) leave the same replies and the same
`get_flushed`, `get_misses`, `get_hits` and `touch_misses`.

memcached counts `get_flushed` when a command finds an item a flush
invalidated, before its background LRU maintainer and crawler reap it
(within tens of milliseconds), so the reference runs with both off
(`-o no_lru_maintainer,no_lru_crawler`) to make its count deterministic.
Even then its allocation reaps up to five flushed items from the LRU tail,
so fillers stored first (the tail) keep the keys the test reads out of
that reach."""
import os
import shutil
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import Server  # noqa: E402
from test_side_by_side import Memcached  # noqa: E402

COUNTERS = ("get_flushed", "get_misses", "get_hits", "touch_misses")


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def ask(self, line, end):
        self.sock.sendall(line)
        buf = b""
        while not buf.endswith(end):
            chunk = self.sock.recv(65536)
            assert chunk, f"closed early after {buf!r}"
            buf += chunk
        return buf

    def stats(self):
        reply = self.ask(b"stats\r\n", b"END\r\n").decode()
        fields = dict(line.split(" ", 2)[1:] for line in reply.split("\r\n") if line.startswith("STAT "))
        return {name: int(fields[name]) for name in COUNTERS}


def session(port):
    """The command sequence; returns every reply and the counters after
    the immediate flush and after the delayed one."""
    c = Conn(port)
    replies = []

    def ask(line, end=b"END\r\n"):
        replies.append(c.ask(line, end))

    for i in range(10):
        ask(b"set fill%d 0 0 1\r\nx\r\n" % i, b"STORED\r\n")
    for key in (b"a", b"b", b"c", b"d", b"w"):
        ask(b"set " + key + b" 0 0 1\r\nx\r\n", b"STORED\r\n")
    ask(b"flush_all\r\n", b"OK\r\n")
    ask(b"get a\r\n")  # flushed: counted
    ask(b"get a\r\n")  # already unlinked: a plain miss
    ask(b"gets b\r\n")
    ask(b"mg c v\r\n", b"EN\r\n")
    ask(b"gat 0 d\r\n")  # a touch miss, still get_flushed
    ask(b"set w 0 0 1\r\ny\r\n", b"STORED\r\n")  # the set's lookup counts it
    ask(b"get w\r\n")  # written after the flush: a hit
    ask(b"get never\r\n")  # never stored: a plain miss
    immediate = c.stats()

    ask(b"set e 0 0 1\r\nx\r\n", b"STORED\r\n")
    ask(b"flush_all 2\r\n", b"OK\r\n")
    ask(b"get e\r\n")  # not due yet: a hit
    time.sleep(2.5)
    ask(b"get e\r\n")
    ask(b"get e\r\n")
    ask(b"get w\r\n")
    delayed = c.stats()
    c.sock.close()
    return replies, immediate, delayed


@pytest.fixture
def memcached():
    if not shutil.which("memcached"):
        pytest.fail("memcached is not installed (tests/run-all.sh installs it)")
    m = Memcached("-o", "no_lru_maintainer,no_lru_crawler")
    yield m
    m.stop()


@pytest.fixture
def lite():
    s = Server("--no-http")
    yield s
    s.cleanup()


def test_get_flushed_and_get_misses_match_memcached(memcached, lite):
    ref = session(memcached.port)
    got = session(lite.port)
    assert got[0] == ref[0], "replies differ"
    assert got[1] == ref[1], "after flush_all"
    assert got[2] == ref[2], "after flush_all 2"
    # And the counts themselves: get_flushed once per flushed key looked up.
    assert ref[1] == {"get_flushed": 5, "get_misses": 5, "get_hits": 1, "touch_misses": 1}
    assert ref[2] == {"get_flushed": 7, "get_misses": 8, "get_hits": 2, "touch_misses": 1}
