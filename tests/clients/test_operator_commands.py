"""memcached's operator surface against memcached-lite (issue 13):
memcached-tool display/stats/settings/dump, the stats groups compared in
shape with a live memcached 1.6.18, `stats detail` over text and binary,
and the verbosity / slabs / lru_crawler replies."""
import os
import shutil
import socket
import time
import struct
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import Server  # noqa: E402
from test_side_by_side import Memcached  # noqa: E402

TOOL = "/usr/share/memcached/scripts/memcached-tool"

# Fields only memcached-lite prints, and why.
LITE_ONLY = {
    "memcached_lite_version",  # this server's own release
    "commit_syncs",  # group-commit disk syncs (--durability sync)
    "storage_errors",  # failed flushes/syncs of the store and CSV mirror
    "watchers",  # open GET /v1/watch streams (docs/watch.md)
    "watch_events",  # changes published to the watch feed
    "watch_overflows",  # watchers dropped with resync (queue full)
    "data_dir",  # where the sled store lives
    "flush_interval_ms",  # periodic mode's loss window
    "durability",  # periodic or sync
}


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def until(sock, end):
    buf = b""
    while not buf.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, f"closed early after {buf!r}"
        buf += chunk
    return buf


def ask(port, line, end=b"END\r\n"):
    with connect(port) as s:
        s.sendall(line)
        return until(s, end)


def load(port):
    with connect(port) as s:
        s.sendall(b"set foo 5 0 3\r\nbar\r\nset a:b 0 1000 10\r\n0123456789\r\n"
                  b"set big 0 0 5000\r\n" + b"x" * 5000 + b"\r\nset sp%ace 0 0 1\r\nz\r\n")
        assert until(s, b"STORED\r\n" * 4) == b"STORED\r\n" * 4
        s.sendall(b"get foo\r\n")
        until(s, b"END\r\n")


@pytest.fixture
def lite():
    s = Server("--no-http")
    load(s.port)
    yield s
    s.cleanup()


@pytest.fixture
def mc():
    if not shutil.which("memcached"):
        pytest.fail("memcached is not installed")
    m = Memcached("-o", "track_sizes")
    load(m.port)
    yield m
    m.stop()


def tool(port, *mode):
    if not os.path.exists(TOOL):
        pytest.fail("memcached-tool is not installed (Debian's memcached package)")
    out = subprocess.run(["perl", TOOL, f"127.0.0.1:{port}", *mode], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.decode()


def names(reply):
    return [line.split(" ")[1] for line in reply.decode().split("\r\n") if line.startswith("STAT ")]


def test_memcached_tool_display_shows_the_classes_holding_items(lite):
    rows = tool(lite.port, "display").splitlines()
    assert rows[0].split() == "# Item_Size Max_age Pages Count Full? Evicted Evict_Time OOM".split()
    table = {r.split()[0]: r.split() for r in rows[1:]}
    assert sorted(table) == ["1", "19"], rows
    assert table["1"][1] == "96B" and table["1"][4] == "3"
    assert table["19"][1] == "5.5K" and table["19"][4] == "1"


def test_memcached_tool_dump_lists_every_key_and_value(lite):
    out = tool(lite.port, "dump")
    assert "add foo 5 0 3\r\nbar\r\n" in out
    assert "add sp%ace 0 0 1\r\nz\r\n" in out
    assert "add big 0 0 5000\r\n" + "x" * 5000 + "\r\n" in out
    assert "add a:b 0 " in out and "\r\n0123456789\r\n" in out
    assert out.count("add ") == 4


def test_memcached_tool_stats_and_settings(lite):
    stats = tool(lite.port, "stats")
    assert any(l.split() == ["curr_items", "4"] for l in stats.splitlines()), stats
    assert any(l.split() == ["accepting_conns", "1"] for l in stats.splitlines())
    settings = tool(lite.port, "settings")
    assert any(l.split() == ["stat_key_prefix", ":"] for l in settings.splitlines()), settings
    sizes = tool(lite.port, "sizes")
    assert any(l.split() == ["96", "3"] for l in sizes.splitlines()), sizes


@pytest.mark.parametrize("group", [b"", b" settings", b" items", b" slabs", b" sizes", b" conns"])
def test_stats_groups_have_memcacheds_shape(lite, mc, group):
    ref = ask(mc.port, b"stats" + group + b"\r\n")
    got = ask(lite.port, b"stats" + group + b"\r\n")
    ref_names = names(ref)
    got_names = [n for n in names(got) if n not in LITE_ONLY]
    if group == b" conns":
        # memcached numbers rows by fd and may still list connections the
        # test just closed: compare the fields and the listener's block.
        ref_names = sorted(set(n.split(":", 1)[1] for n in ref_names))
        got_names = sorted(set(n.split(":", 1)[1] for n in got_names))
        assert b":state conn_listening\r\n" in got and b":state conn_parse_cmd\r\n" in got
    assert got_names == ref_names
    for line in got.decode().split("\r\n")[:-2]:
        assert line.startswith("STAT ") and len(line.split(" ")) >= 3, line


def test_stats_items_and_slabs_values_match_memcached(lite, mc):
    def table(port, group):
        return {l.split(" ")[1]: l.split(" ")[2] for l in ask(port, group).decode().split("\r\n") if l.startswith("STAT")}
    for group in (b"stats slabs\r\n", b"stats sizes\r\n"):
        ref, got = table(mc.port, group), table(lite.port, group)
        keep = [k for k in ref if not k.endswith(("get_hits", "cmd_set"))]
        assert {k: got[k] for k in keep} == {k: ref[k] for k in keep}
    ref, got = table(mc.port, b"stats items\r\n"), table(lite.port, b"stats items\r\n")
    assert got["items:1:number"] == ref["items:1:number"] == "3"
    assert got["items:19:number"] == ref["items:19:number"] == "1"


def test_metadump_matches_memcacheds_line_format(lite, mc):
    # memcached's crawler can miss an item its LRU maintainer is moving
    # (`load` ends with a `get foo`, which bumps foo): its dump is asked
    # again until it lists the four items loaded.
    deadline = time.monotonic() + 10
    while True:
        ref = ask(mc.port, b"lru_crawler metadump all\r\n").decode()
        if ref.count("key=") == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    got = ask(lite.port, b"lru_crawler metadump all\r\n").decode()
    assert got.endswith("END\r\n")

    def rows(dump):
        out = {}
        for line in dump.split("\n")[:-1]:
            if line.startswith("END"):
                continue
            fields = dict(f.split("=", 1) for f in line.split(" "))
            assert list(fields) == ["key", "exp", "la", "cas", "fetch", "cls", "size"], line
            out[fields["key"]] = (fields["exp"] == "-1", fields["cls"], fields["size"])
        return out
    assert rows(got) == rows(ref)
    assert "key=sp%25ace " in got and "key=a%3Ab " in got
    only_19 = ask(lite.port, b"lru_crawler metadump 19\r\n").decode()
    assert only_19.startswith("key=big ") and only_19.count("key=") == 1


def test_metadump_streams_a_large_store_and_pipelines_after():
    s = Server("--no-http")
    try:
        with connect(s.port) as c:
            c.sendall(b"".join(b"set key%05d 0 0 100 noreply\r\n%s\r\n" % (i, b"v" * 100) for i in range(3000)))
            c.sendall(b"lru_crawler metadump all\r\nmn\r\n")
            out = until(c, b"END\r\nMN\r\n")
        assert out.count(b"key=key") == 3000
    finally:
        s.cleanup()


DETAIL = (b"stats detail on\r\nget a:b\r\nget a:zz\r\nset a:c 0 0 1\r\nx\r\ndelete a:c\r\n"
          b"delete q:r\r\nget nokey\r\nstats detail off\r\nget a:b\r\nstats detail dump\r\n")


def test_stats_detail_matches_memcached(lite, mc):
    ref = ask(mc.port, DETAIL + b"mn\r\n", b"MN\r\n")
    got = ask(lite.port, DETAIL + b"mn\r\n", b"MN\r\n")
    assert got == ref
    assert b"PREFIX a get 2 hit 1 set 1 del 1\r\nPREFIX q get 0 hit 0 set 0 del 1\r\nEND\r\n" in got
    for bad in (b"stats detail\r\n", b"stats detail foo\r\n"):
        assert ask(lite.port, bad, b"\r\n") == ask(mc.port, bad, b"\r\n") == b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"


def binary_stat(sock, key):
    sock.sendall(struct.pack(">BBHBBHIIQ", 0x80, 0x10, len(key), 0, 0, 0, len(key), 7, 0) + key)
    packets = []
    while True:
        header = b""
        while len(header) < 24:
            header += sock.recv(24 - len(header))
        _, _, klen, _, _, status, total, _, _ = struct.unpack(">BBHBBHIIQ", header)
        body = b""
        while len(body) < total:
            body += sock.recv(total - len(body))
        packets.append((status, body[:klen], body[klen:]))
        if status != 0 or klen == 0:
            return packets


def test_binary_stat_detail(lite, mc):
    for port in (lite.port, mc.port):
        with connect(port) as s:
            assert binary_stat(s, b"detail on") == [(0, b"", b"")]
            s.sendall(b"")
        with connect(port) as t:
            t.sendall(b"get k:1\r\n")
            until(t, b"END\r\n")
        with connect(port) as s:
            dump = binary_stat(s, b"detail dump")
            assert dump[0][1] == b"detailed"
            assert b"PREFIX k get 1 hit 0 set 0 del 0\r\n" in dump[0][2]
            assert binary_stat(s, b"detail off") == [(0, b"", b"")]
            assert binary_stat(s, b"detail nonsense")[0][0] == 1  # KEY_ENOENT


COMMANDS = [
    b"verbosity invalid", b"verbosity 1", b"verbosity", b"verbosity 1 2 3",
    b"slabs automove 1", b"slabs automove 3", b"slabs automove x", b"slabs automove",
    b"slabs reassign 1 2", b"slabs reassign 1 1", b"slabs reassign 99 1", b"slabs reassign x y", b"slabs",
    b"lru_crawler crawl all", b"lru_crawler crawl foo", b"lru_crawler metadump foo",
    b"lru_crawler metadump 0", b"lru_crawler metadump", b"lru_crawler sleep x",
    b"lru_crawler sleep 2000000", b"lru_crawler sleep 100", b"lru_crawler tocrawl 5",
    b"lru_crawler enable", b"lru_crawler foo", b"lru_crawler",
    b"stats cachedump 1", b"stats cachedump x 0", b"stats cachedump 99 0", b"stats foo",
]


def test_metadump_while_the_crawler_is_disabled_matches_memcached(lite, mc):
    """memcached refuses `lru_crawler disable` while a crawl still runs (on a
    busy machine one started by an earlier test may), so both servers are
    asked until the disable took; then metadump and enable must match."""
    def replies(port):
        with connect(port) as s:
            deadline = time.monotonic() + 20
            while True:
                s.sendall(b"lru_crawler disable\r\nmn\r\n")
                disabled = until(s, b"MN\r\n")
                if disabled.startswith(b"OK") or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            out = [disabled]
            # memcached answers OK to the disable before its crawler thread
            # has stopped; a metadump meanwhile gets "ERROR an unknown error
            # happened". Asked again until the disable shows.
            while True:
                s.sendall(b"lru_crawler metadump all\r\nmn\r\n")
                dump = until(s, b"MN\r\n")
                if not dump.startswith(b"ERROR an unknown error") or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            out.append(dump)
            s.sendall(b"lru_crawler enable\r\nmn\r\n")
            out.append(until(s, b"MN\r\n"))
            return out
    assert replies(lite.port) == replies(mc.port)


def test_operator_replies_match_memcached(lite, mc):
    def replies(port):
        with connect(port) as s:
            out = []
            for c in COMMANDS:
                s.sendall(c + b"\r\nmn\r\n")
                out.append(until(s, b"MN\r\n"))
            return out
    assert replies(lite.port) == replies(mc.port)
    got = ask(lite.port, b"stats settings\r\n").decode()
    assert "STAT slab_automove 1\r\n" in got and "STAT verbosity 1\r\n" in got


def test_cachedump_lists_a_class(lite):
    # memcached's format; memcached itself lists only its cold LRU, so what
    # it shows right after a set depends on its LRU maintainer's timing.
    got = ask(lite.port, b"stats cachedump 19 0\r\n")
    assert got == b"ITEM big [5000 b; 0 s]\r\nEND\r\n"
    assert ask(lite.port, b"stats cachedump 1 1\r\n").count(b"ITEM ") == 1


def test_prefix_delimiter_flag():
    s = Server("--no-http", "--prefix-delimiter", "/")
    try:
        got = ask(s.port, b"stats detail on\r\nget a/b\r\nget a:b\r\nstats detail dump\r\nmn\r\n", b"MN\r\n")
        assert got.endswith(b"PREFIX a get 1 hit 0 set 0 del 0\r\nEND\r\nMN\r\n")
        assert b"STAT stat_key_prefix /\r\n" in ask(s.port, b"stats settings\r\n")
    finally:
        s.cleanup()
