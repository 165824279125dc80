"""A scripted meta-protocol session sent to a real memcached 1.6.18 and to
memcached-lite, whose answers must be byte-for-byte identical.

Normalization, applied to both answers alike, and why:
- CAS values (` c<digits>`): each server numbers its own writes; only the
  presence and position of the flag is compared.
- TTLs (` t<digits>`): rounded to the nearest ten (every TTL in the script is
  a multiple of ten), so a clock tick between storing and reading on either
  server does not fail the test.
- Last access (` l<digits>`): memcached refreshes an item's access time only
  on some reads (LRU bumps); memcached-lite at most once a minute. Only the
  flag's presence and position is compared.
`me` (memcached's debug dump of its slab internals) and the `E` flag (added
in memcached 1.6.21, so 1.6.18 refuses it) are left out of the script.
"""
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import free_port

SCRIPT = [
    # storage modes, flags, ttl, opaque, key echo
    b"ms foo 2 T90 F5\r\nhi\r\n",
    b"mg foo s v t f c k O123 h l\r\n",
    b"mg foo h l\r\n",
    b"mg missing v\r\n",
    b"mg missing v q k Oab\r\n",
    b"mg foo q\r\n",
    b"mg foo q v\r\n",
    b"mn\r\n",
    b"ms foo 2 c k O1 q\r\nhi\r\n",
    b"ms foo 2 c b\r\nhi\r\n",
    b"ms Zm9v 2 c k b\r\nhi\r\n",
    b"mg Zm9v b k v\r\n",
    b"mg foo k v\r\n",
    b"mg Zm9v= b k v\r\n",
    b"ms foo 2 MA k\r\n!!\r\n",
    b"ms foo 2 MP\r\n<<\r\n",
    b"mg foo v\r\n",
    b"ms foo 2 ME\r\nxx\r\n",
    b"ms new 2 ME O7\r\nxx\r\n",
    b"ms nope 2 MR\r\nxx\r\n",
    b"ms nope 2 MA\r\nxx\r\n",
    b"ms foo 2 MR T0 F3\r\nzz\r\n",
    b"mg foo v f t\r\n",
    b"ms foo 2 C999999\r\nzz\r\n",
    b"ms nope 2 C1\r\nzz\r\n",
    # delete, invalidation, stale-while-revalidate
    b"md foo C999999 k O2\r\n",
    b"md foo q\r\n",
    b"md foo\r\n",
    b"md foo q\r\n",
    b"ms sw 3 T60\r\nold\r\n",
    b"md sw I T30\r\n",
    b"mg sw v c t\r\n",
    b"mg sw v c t\r\n",
    b"ms sw 3 I C1\r\nnew\r\n",
    b"mg sw v t\r\n",
    b"ms sw 3 T60\r\nnew\r\n",
    b"mg sw R30 v\r\n",
    b"mg sw R100 v t\r\n",
    b"mg sw R100 v t\r\n",
    b"mg viv N30 s t v\r\n",
    b"mg viv N30 s t v\r\n",
    b"mg viv T90 t\r\n",
    # arithmetic
    b"ma cnt\r\n",
    b"ma cnt N0 J10 v\r\n",
    b"ma cnt v D5\r\n",
    b"ma cnt v MD D100\r\n",
    b"ma cnt v M+ D7 T100 t c\r\n",
    b"ma cnt C1 k O3\r\n",
    b"ma cnt q\r\n",
    b"ma foo\r\n",
    b"ma quiet q N0 J4\r\n",
    b"mn\r\n",
    # errors: the connection must keep working after each
    b"mg\r\n",
    b"mx foo\r\n",
    b"mg foo zz\r\n",
    b"mg foo v v\r\n",
    b"mg foo Tabc\r\n",
    b"md foo C1 C2\r\n",
    b"md !!!! b\r\n",
    b"ma foo MX\r\n",
    b"ma foo Dx\r\n",
    b"mg foo O123456789012345678901234567890123\r\n",
    b"mg foo a b c d e f g h i j k l m n o p q r s\r\n",
    b"ms foo\r\n",
    b"ms foo abc\r\n",
    b"ms foo 2 MZ\r\nhi\r\n",
    b"ms foo 2 F-1\r\nhi\r\n",
    b"ms foo 2 zz\r\nhi\r\n",
    b"ms foo 2\r\nhiya\r\n",
    b"ms big 2000000 T0\r\n" + b"a" * 2000000 + b"\r\n",
    b"mg big v\r\n",
    # text and meta on one connection
    b"set t 7 0 2\r\nok\r\n",
    b"mg t v f\r\n",
    b"mn\r\n",
]


def normalize(reply):
    reply = re.sub(rb" c\d+(?=[ \r])", b" c<cas>", reply)
    reply = re.sub(rb" l\d+(?=[ \r])", b" l<secs>", reply)
    return re.sub(rb" t(\d+)(?=[ \r])", lambda m: b" t%d" % (round(int(m.group(1)) / 10) * 10), reply)


def session(port):
    """Sends the script pipelined and reads until the final MN."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"".join(SCRIPT))
        out = b""
        deadline = time.time() + 20
        while not out.endswith(b"STORED\r\nVA 2 f7\r\nok\r\nMN\r\n") and time.time() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


@pytest.fixture
def memcached():
    if not shutil.which("memcached"):
        pytest.skip("memcached is not installed")
    port = free_port()
    proc = subprocess.Popen(["memcached", "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-u", "root"])
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_meta_session_matches_real_memcached_byte_for_byte(memcached, server):
    want = session(memcached)
    assert want.endswith(b"MN\r\n"), want[-200:]
    got = session(server.port)
    want_lines = normalize(want).split(b"\r\n")
    got_lines = normalize(got).split(b"\r\n")
    # Line by line first, for a readable failure; then the whole stream.
    for i, (w, g) in enumerate(zip(want_lines, got_lines)):
        assert g == w, f"line {i}: memcached {w!r}, memcached-lite {g!r}"
    assert normalize(got) == normalize(want)
