"""pytest fixtures that run the real memcached-lite binary on free loopback ports."""
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("MEMCACHED_LITE_BIN", os.path.join(ROOT, "target", "debug", "memcached-lite"))


def free_port():
    """A free loopback port below Linux's ephemeral range (32768+), so that
    no client socket of a parallel test takes it before the server binds."""
    while True:
        port = random.randint(10000, 31999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def wait_http(base, limit=20.0):
    """Waits until the server at `base` (http://host:port) answers
    `/readyz` with 200."""
    deadline = time.time() + limit
    while True:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            if time.time() > deadline:
                raise
        time.sleep(0.05)


class Server:
    """A memcached-lite process with its own data dir."""

    def __init__(self, *extra, data_dir=None):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="mcl-")
        self.http = "--no-http" not in extra
        for _attempt in range(5):
            self.port = free_port()
            self.http_port = free_port()
            args = [BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir]
            if self.http:
                args += ["--http-listen", f"127.0.0.1:{self.http_port}"]
            args += list(extra)
            self.proc = subprocess.Popen(args, env={**os.environ, "MEMCACHED_LITE_LOG": "warn"})
            if self._wait_ready():
                return
        raise RuntimeError("memcached-lite did not start after 5 attempts")

    def _wait_ready(self):
        """True once the listeners accept; False if the process exited first
        (a port was taken after all), so the caller retries on new ports."""
        deadline = time.time() + 20
        ports = [self.port] + ([self.http_port] if self.http else [])
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                for p in ports:
                    socket.create_connection(("127.0.0.1", p), timeout=0.2).close()
                return True
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("memcached-lite did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.returncode

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.cleanup()
