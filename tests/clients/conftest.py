"""pytest fixtures that run the real memcached-lite binary on free loopback ports."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("MEMCACHED_LITE_BIN", os.path.join(ROOT, "target", "debug", "memcached-lite"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A memcached-lite process with its own data dir."""

    def __init__(self, *extra, data_dir=None):
        self.port = free_port()
        self.http_port = free_port()
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="mcl-")
        args = [BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir]
        help_text = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True).stdout
        if "--http-listen" in help_text and "--no-http" not in extra:
            args += ["--http-listen", f"127.0.0.1:{self.http_port}"]
        args += list(extra)
        self.proc = subprocess.Popen(args, env={**os.environ, "MEMCACHED_LITE_LOG": "warn"})
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
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
