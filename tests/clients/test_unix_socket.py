"""memcached clients over `--unix-socket` (with `--listen none`): pymemcache's
unix-socket client (a path as the server) and libmemcached's tools
(`--servers=/path`), text and binary."""
import os
import socket
import stat
import subprocess
import tempfile
import time

import pytest
from pymemcache.client.base import Client

from conftest import BIN, free_port


@pytest.fixture
def unix_server():
    tmp = tempfile.TemporaryDirectory(prefix="mcl-unix-")
    path = os.path.join(tmp.name, "mc.sock")
    proc = subprocess.Popen(
        [BIN, "serve", "--listen", "none", "--unix-socket", path, "--unix-mask", "0770",
         "--data-dir", os.path.join(tmp.name, "data"),
         "--http-listen", f"127.0.0.1:{free_port()}", "--no-csv-mirror"],
        env={**os.environ, "MEMCACHED_LITE_LOG": "warn"},
    )
    deadline = time.time() + 20
    while True:
        assert proc.poll() is None, "server exited during start-up"
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
            break
        except OSError:
            assert time.time() < deadline, "no socket"
            time.sleep(0.05)
    yield path
    proc.terminate()
    assert proc.wait(timeout=20) == 0
    assert not os.path.exists(path), "socket file left after a clean shutdown"
    tmp.cleanup()


def test_pymemcache_over_the_socket(unix_server):
    assert stat.S_IMODE(os.stat(unix_server).st_mode) == 0o770
    c = Client(unix_server, default_noreply=False)  # a path string: a unix socket
    assert c.set("k", b"v1")
    assert c.get("k") == b"v1"
    assert c.add("k", b"other") is False
    assert c.incr("n", 1) is None
    c.set("n", b"41")
    assert c.incr("n", 1) == 42
    value, cas = c.gets("k")
    assert c.cas("k", b"v2", cas)
    assert c.get_many(["k", "n", "missing"]) == {"k": b"v2", "n": b"42"}
    assert c.delete("k")
    assert c.get("k") is None
    settings = c.stats("settings")
    assert settings[b"domain_socket"] == unix_server.encode()
    assert settings[b"umask"] == 0o770  # pymemcache reads it as octal, as printed
    assert settings[b"tcpport"] == 0
    c.close()


@pytest.mark.parametrize("binary", [[], ["--binary"]])
def test_libmemcached_tools_over_the_socket(unix_server, binary, tmp_path):
    servers = f"--servers={unix_server}"
    src = tmp_path / "file.txt"
    src.write_bytes(b"from memccp\n")
    subprocess.run(["memccp", *binary, servers, str(src)], check=True, timeout=30)
    out = subprocess.run(["memccat", *binary, servers, "file.txt"],
                         capture_output=True, check=True, timeout=30)
    assert out.stdout == b"from memccp\n\n"  # memccat adds a newline
    out = subprocess.run(["memcstat", servers], capture_output=True, text=True, check=True, timeout=30)
    assert f"Server: {unix_server}" in out.stdout, out.stdout
    assert "version: 1.6.18" in out.stdout, out.stdout
