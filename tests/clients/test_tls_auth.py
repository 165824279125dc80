"""pymemcache over TLS (an ssl.SSLContext that verifies our self-signed
certificate) against memcached-lite started with --tls-cert/--tls-key."""
import os
import ssl
import subprocess
import tempfile

import pytest
from pymemcache.client.base import Client

from conftest import Server


@pytest.fixture
def tls_server():
    d = tempfile.mkdtemp(prefix="mcl-tls-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    s = Server("--tls-cert", cert, "--tls-key", key)
    s.cert = cert
    yield s
    s.cleanup()


def test_pymemcache_over_tls(tls_server):
    ctx = ssl.create_default_context(cafile=tls_server.cert)
    c = Client(("127.0.0.1", tls_server.port), tls_context=ctx, timeout=10)
    assert c.set("greeting", b"hello over tls", expire=0)
    assert c.get("greeting") == b"hello over tls"
    assert c.incr("n", 1) is None
    c.set("n", b"41")
    assert c.incr("n", 1) == 42
    ok, cas = c.gets("greeting")
    assert ok == b"hello over tls" and cas
    c.close()


def test_tls_refuses_an_untrusted_client_context(tls_server):
    ctx = ssl.create_default_context()  # system roots: our cert is not among them
    c = Client(("127.0.0.1", tls_server.port), tls_context=ctx, timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        c.get("greeting")


def test_large_replies_over_tls(tls_server):
    """Multi-megabyte replies cross the write high-water mark and TLS
    record buffering; every byte must arrive."""
    ctx = ssl.create_default_context(cafile=tls_server.cert)
    c = Client(("127.0.0.1", tls_server.port), tls_context=ctx, timeout=30)
    values = {f"big{i}": bytes([65 + i]) * 1_000_000 for i in range(12)}
    for k, v in values.items():
        assert c.set(k, v)
    assert c.get_many(list(values)) == values
    assert c.get("big3") == values["big3"]
    c.close()
