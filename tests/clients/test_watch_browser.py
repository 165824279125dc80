"""GET /v1/watch in a real browser: headless Debian Chromium's EventSource
(tests/browser/watch.mjs, driven by playwright-core) against the real
server. The script asks for a restart half-way: the server is stopped and
started again on the same ports and data directory, and the browser must
reconnect by itself with Last-Event-ID."""
import os
import subprocess

from conftest import BIN, ROOT, Server, wait_http

SCRIPT = os.path.join(ROOT, "tests", "browser", "watch.mjs")


def test_eventsource_sees_every_protocol_and_resumes_after_a_restart():
    server = Server()
    base = f"http://127.0.0.1:{server.http_port}"
    restarted = None
    try:
        wait_http(base)
        node = subprocess.Popen(["node", SCRIPT, base, str(server.port)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = []
        try:
            for line in node.stdout:
                out.append(line)
                if line.strip() == "restart-server":
                    assert server.stop() == 0
                    restarted = subprocess.Popen(
                        [BIN, "serve", "--listen", f"127.0.0.1:{server.port}",
                         "--http-listen", f"127.0.0.1:{server.http_port}",
                         "--data-dir", server.data_dir],
                        env={**os.environ, "MEMCACHED_LITE_LOG": "warn"})
                    wait_http(base)
                    node.stdin.write("go\n")
                    node.stdin.flush()
            assert node.wait(timeout=120) == 0, "".join(out)
        finally:
            if node.poll() is None:
                node.kill()
        assert "browser watch test passed" in "".join(out), "".join(out)
    finally:
        if restarted is not None:
            restarted.terminate()
            restarted.wait(timeout=20)
        server.cleanup()
